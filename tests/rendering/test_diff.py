"""dry_run diffs: the running config + lines to apply → the predicted change, as a unified diff."""

from __future__ import annotations

import pytest

from netfleet.domain.errors import InvalidInput
from netfleet.rendering import config_diff, config_lines, predict_hierarchical, predict_set
from tests.parsing.cli import run, session

IOS_RUNNING = """\
Building configuration...

Current configuration : 420 bytes
!
hostname r1
!
interface GigabitEthernet1/0/1
 description old
 ip address 10.0.0.1 255.255.255.0
 ip address 10.0.1.1 255.255.255.0 secondary
 shutdown
!
interface GigabitEthernet1/0/2
 no ip address
!
router bgp 65000
 neighbor 10.0.0.2 remote-as 65001
 !
 address-family ipv4
  neighbor 10.0.0.2 activate
 exit-address-family
!
end
"""


def changes(diff: str) -> tuple[list[str], list[str]]:
    """The added and removed lines of a unified diff (without the +/- and the file headers)."""
    lines = [line for line in diff.splitlines() if not line.startswith(("+++", "---"))]
    return ([line[1:] for line in lines if line.startswith("+")],
            [line[1:] for line in lines if line.startswith("-")])


def test_ios_added_changed_and_removed_lines() -> None:
    lines = config_lines("""\
hostname r2
!
interface GigabitEthernet1/0/1
 description to core
 no shutdown
 mtu 9000
!
no interface GigabitEthernet1/0/2
""")
    diff = config_diff(IOS_RUNNING, lines, platform="cisco_ios")
    assert diff.startswith("--- running\n+++ candidate\n@@")
    added, removed = changes(diff)
    assert added == ["hostname r2", " description to core", " mtu 9000"]
    assert removed == ["hostname r1", " description old", " shutdown",
                       "interface GigabitEthernet1/0/2", " no ip address"]


def test_ios_lines_already_present_change_nothing() -> None:
    lines = ["hostname r1", "interface GigabitEthernet1/0/1", " shutdown",
             " description   old", "router bgp 65000", " address-family ipv4",
             "  neighbor 10.0.0.2 activate", " exit-address-family", "end"]
    assert config_diff(IOS_RUNNING, lines, platform="cisco_ios") == ""
    assert predict_hierarchical(IOS_RUNNING, lines) == IOS_RUNNING.splitlines()


def test_ios_new_sections_go_before_end_and_nested_lines_into_their_section() -> None:
    lines = ["interface Loopback0", " ip address 1.1.1.1 255.255.255.255",
             "router bgp 65000", " address-family ipv4", "  network 1.1.1.1 mask 255.255.255.255",
             " exit-address-family", "ip route 0.0.0.0 0.0.0.0 10.0.0.254"]
    after = predict_hierarchical(IOS_RUNNING, lines)
    assert after[-4:] == ["interface Loopback0", " ip address 1.1.1.1 255.255.255.255",
                          "ip route 0.0.0.0 0.0.0.0 10.0.0.254", "end"]
    activate = after.index("  neighbor 10.0.0.2 activate")
    assert after[activate + 1] == "  network 1.1.1.1 mask 255.255.255.255"
    assert after[activate + 2] == " exit-address-family"


def test_ios_primary_address_replaces_but_secondary_adds() -> None:
    lines = ["interface GigabitEthernet1/0/1", " ip address 10.9.9.1 255.255.255.0",
             " ip address 10.8.8.1 255.255.255.0 secondary"]
    added, removed = changes(config_diff(IOS_RUNNING, lines, platform="cisco_ios"))
    assert removed == [" ip address 10.0.0.1 255.255.255.0"]
    assert added == [" ip address 10.9.9.1 255.255.255.0",
                     " ip address 10.8.8.1 255.255.255.0 secondary"]


def test_ios_no_of_a_prefix_removes_the_lines_it_names_and_exit_closes_a_section() -> None:
    lines = ["interface GigabitEthernet1/0/1", " no ip address", " exit", "no hostname r1"]
    after = predict_hierarchical(IOS_RUNNING, lines)
    assert not [line for line in after if "ip address 10." in line]
    assert "hostname r1" not in after
    assert config_diff(IOS_RUNNING, ["no logging host 10.1.1.1"], platform="cisco_ios") == ""


EOS_RUNNING = """\
! Command: show running-config
hostname eos1
!
interface Ethernet1
   description uplink
!
interface Ethernet2
!
management api http-commands
   no shutdown
!
end
"""


def test_eos_new_lines_take_the_configs_own_indentation() -> None:
    lines = ["interface Ethernet2", "  description server", " shutdown",
             "management api http-commands", " shutdown"]
    added, removed = changes(config_diff(EOS_RUNNING, lines, platform="arista_eos"))
    assert added == ["   description server", "   shutdown", "   shutdown"]
    assert removed == ["   no shutdown"]


@pytest.mark.parametrize(("platform", "interface"), [("cisco_ios", "GigabitEthernet1/0/2"),
                                                     ("arista_eos", "Ethernet2")])
def test_the_prediction_matches_what_the_simulated_device_does(platform: str,
                                                                interface: str) -> None:
    _, shell = session(platform)
    before = run(shell, "show running-config")
    last = [line for line in before.splitlines() if line.startswith("interface ")][-1]
    lines = [f"interface {interface}", " description to-firewall", " shutdown",
             last, " description spare", " no shutdown"]
    predicted = predict_hierarchical(before, lines)
    for line in ["configure terminal", *(line.strip() for line in lines), "end"]:
        shell.handle_line(line)
    after = run(shell, "show running-config")

    def comparable(text_lines: list[str]) -> list[str]:
        return [line.rstrip() for line in text_lines
                if line.strip() and not line.startswith("Current configuration")]

    assert comparable(predicted) == comparable(after.splitlines())
    added, _ = changes(config_diff(before, lines, platform=platform))
    assert [line.strip() for line in added][:2] == ["description to-firewall", "shutdown"]


# -- Junos ----------------------------------------------------------------------------------------

JUNOS_RUNNING = """\
set version 22.4R2.8
set system host-name junos-1
set system ntp server 10.0.0.1
set system services ssh
set interfaces ge-0/0/1 description "to core"
set interfaces ge-0/0/1 unit 0 family inet address 10.1.1.1/24
set interfaces ge-0/0/14 disable
set vlans default vlan-id 1

"""


def test_junos_set_and_delete() -> None:
    lines = ["set system host-name edge-1", "set system ntp server 10.0.0.2",
             "delete interfaces ge-0/0/1 unit 0", 'set interfaces ge-0/0/1 description "to edge"',
             "set interfaces ge-0/0/2 description uplink", "set snmp community public",
             "commit and-quit"]
    diff = config_diff(JUNOS_RUNNING, lines, platform="juniper_junos")
    added, removed = changes(diff)
    assert added == ["set system host-name edge-1", "set system ntp server 10.0.0.2",
                     'set interfaces ge-0/0/1 description "to edge"',
                     "set interfaces ge-0/0/2 description uplink", "set snmp community public"]
    assert removed == ["set system host-name junos-1",
                       'set interfaces ge-0/0/1 description "to core"',
                       "set interfaces ge-0/0/1 unit 0 family inet address 10.1.1.1/24"]
    after = predict_set(JUNOS_RUNNING, lines)
    # New statements sit beside their relatives, where `display set` would show them.
    assert after.index("set system ntp server 10.0.0.2") == after.index(
        "set system ntp server 10.0.0.1") + 1
    assert after[-1] == "set snmp community public"


def test_junos_statements_already_present_change_nothing() -> None:
    lines = ["set system services ssh", "set  vlans default vlan-id 1",
             "delete system syslog", "commit"]
    assert config_diff(JUNOS_RUNNING, lines, platform="juniper_junos") == ""


def test_junos_delete_removes_a_whole_subtree() -> None:
    after = predict_set(JUNOS_RUNNING, ["delete interfaces"])
    assert not [line for line in after if line.startswith("set interfaces")]
    assert "set system host-name junos-1" in after


def test_junos_statements_the_diff_cannot_predict_are_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        predict_set(JUNOS_RUNNING, ["edit system", "set host-name x"])
    assert caught.value.field == "lines" and "'edit system'" in str(caught.value)


def test_junos_running_config_must_be_display_set() -> None:
    with pytest.raises(InvalidInput, match="display set"):
        predict_set("system {\n    host-name r1;\n}\n", ["set system host-name r2"])


def test_junos_prediction_matches_what_the_simulated_device_does() -> None:
    _, shell = session("juniper_junos")
    before = run(shell, "show configuration | display set")
    lines = ["set system host-name edge-1", "set system ntp server 10.0.0.9",
             "set interfaces ge-0/0/3 description uplink", "delete interfaces ge-0/0/14 disable"]
    predicted = predict_set(before, lines)
    for line in ["configure", *lines, "commit and-quit"]:
        shell.handle_line(line)
    after = run(shell, "show configuration | display set")
    assert sorted(predicted) == sorted(line for line in after.splitlines() if line.strip())
