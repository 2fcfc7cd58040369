"""Netmiko and ntc-templates against the simulated Juniper SRX (Junos)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from netfleet.sim.state import Device
from tests.conftest import RunningSim
from tests.sim.conftest import ntc_parser

CHANGES = [
    'set interfaces ge-0/0/3 description "uplink to core-1"',
    "set interfaces ge-0/0/3 unit 0 family inet address 10.20.30.1/24",
    "set interfaces ge-0/0/4 unit 0 family ethernet-switching vlan members 42",
    "set vlans users vlan-id 42",
    "set routing-options static route 0.0.0.0/0 next-hop 10.20.30.254",
    "set system domain-name example.net",
    "set system ntp server 192.0.2.123",
]




PLATFORM = "juniper_junos"
parse = ntc_parser(PLATFORM)


def commit(conn: Any, lines: list[str]) -> None:
    assert "error" not in conn.send_config_set(lines, exit_config_mode=False)
    assert "commit complete" in conn.commit()
    conn.exit_config_mode()


def test_identity_parses_from_version_and_chassis(conn: Any, device: Device) -> None:
    assert conn.base_prompt == f"netops@{device.name}"
    [version] = parse("show version", conn.send_command("show version"))
    assert (version["hostname"], version["model"]) == (device.name, device.model)
    assert version["junos_version"] == device.os_version
    chassis = parse("show chassis hardware", conn.send_command("show chassis hardware"))
    assert chassis[0]["chassis_serial_number"] == device.serial
    assert chassis[0]["chassis_description"] == device.model.upper()


def test_commit_applies_changes_and_show_configuration_tracks_only_commits(conn: Any) -> None:
    out = conn.send_config_set(CHANGES)  # leaves configuration mode: "Exit with uncommitted..."
    assert "Exit with uncommitted changes? [yes,no] (yes)" in out
    assert "error" not in out
    assert "users" not in conn.send_command("show configuration")  # candidate only

    # Shared `configure`: the next session's commit applies what was left uncommitted.
    assert "commit complete" in conn.commit()
    conn.exit_config_mode()
    running = conn.send_command("show configuration")
    assert 'description "uplink to core-1";' in running
    assert re.search(r"unit 0 \{\s+family inet \{\s+address 10\.20\.30\.1/24;", running)
    assert "route 0.0.0.0/0 next-hop 10.20.30.254;" in running
    as_set = conn.send_command("show configuration | display set").splitlines()
    assert set(CHANGES) <= set(as_set)
    assert conn.send_command("show configuration system ntp").strip() == "server 192.0.2.123;"

    [ge3, unit] = parse("show interfaces", conn.send_command("show interfaces ge-0/0/3"))
    assert (ge3["interface"], ge3["admin_state"], ge3["link_status"]) == (
        "ge-0/0/3", "Enabled", "Up")
    assert ge3["description"] == "uplink to core-1"
    assert (unit["interface"], unit["local"], unit["destination"]) == (
        "ge-0/0/3.0", "10.20.30.1", "10.20.30/24")

    vlans = parse("show vlans", conn.send_command("show vlans"))
    users = next(v for v in vlans if v["vlan_name"] == "users")
    assert (users["tag"], users["interfaces"]) == ("42", ["ge-0/0/4.0*"])

    summary = parse("show route summary", conn.send_command("show route summary"))
    assert {r["route_src"]: r["active_routes"] for r in summary} == {
        "Direct": "1", "Local": "1", "Static": "1"}
    assert summary[0]["router_id"] == "10.20.30.1"
    routes = conn.send_command("show route")
    assert re.search(r"^0\.0\.0\.0/0 +\*\[Static/5\].*\n +> +to 10\.20\.30\.254 via ge-0/0/3\.0",
                     routes, re.M)

    [uptime] = parse("show system uptime", conn.send_command("show system uptime"))
    assert uptime["time_source"] == "NTP CLOCK"


def test_rollback_and_declined_exit_keep_running_config(conn: Any) -> None:
    conn.config_mode()
    conn.send_command("set system host-name renamed", expect_string=r"#")
    compare = conn.send_command("show | compare", expect_string=r"#")
    assert "-   host-name" in compare and "+   host-name renamed;" in compare
    out = conn.send_command("exit", expect_string=r"\(yes\)")
    assert "Exit with uncommitted changes? [yes,no] (yes)" in out
    conn.send_command("no", expect_string=r"#")
    assert conn.check_config_mode()  # declined: still configuring
    assert "configuration check succeeds" in conn.commit(check=True)  # checks, applies nothing
    assert "load complete" in conn.send_command("rollback", expect_string=r"#")
    assert conn.send_command("show | compare", expect_string=r"#").strip() == ""
    assert "commit complete" in conn.commit()
    conn.exit_config_mode()
    assert "renamed" not in conn.send_command("show configuration")


def test_hostname_changes_the_prompt_after_commit(conn: Any) -> None:
    commit(conn, ["set system host-name edge-fw-1"])
    assert conn.set_base_prompt() == "netops@edge-fw-1"
    [version] = parse("show version", conn.send_command("show version"))
    assert version["hostname"] == "edge-fw-1"


def test_unknown_input_gets_the_junos_errors(conn: Any) -> None:
    out = conn.send_config_set(["set frobnicate the widget"], exit_config_mode=False)
    column = len(f"{conn.base_prompt}# set ")
    assert re.search(rf"\n {{{column}}}\^\nsyntax error\.", out)  # caret under "frobnicate"
    assert conn.send_command("show | compare", expect_string=r"#").strip() == ""
    conn.exit_config_mode()
    column = len(f"{conn.base_prompt}> show ")
    assert conn.send_command("show frobnicate").rstrip() == (
        f"{' ' * column}^\nsyntax error, expecting <command>.")
    assert conn.send_command("frobnicate").rstrip().endswith("^\nunknown command.")
    assert "frobnicate" not in conn.send_command("show configuration")


def test_disabled_ports_report_admin_down_until_enabled(conn: Any, device: Device,
                                                        sim: RunningSim) -> None:
    ports = sim.run(lambda: [i.name for i in device.running.interfaces.values() if i.physical])
    commit(conn, ["set interfaces ge-0/0/1 disable"])
    terse = conn.send_command("show interfaces terse")
    assert re.search(r"^ge-0/0/1 +down +down$", terse, re.M)
    assert "ge-0/0/1, Administratively down, Physical link is Down" in conn.send_command(
        "show interfaces ge-0/0/1")

    disabled = sim.run(lambda: [i.name for i in device.running.interfaces.values()
                                if i.shutdown])
    assert "ge-0/0/1" in disabled and len(disabled) > 1
    commit(conn, [f"delete interfaces {name} disable" for name in disabled])
    parsed = parse("show interfaces", conn.send_command("show interfaces"))
    assert [r["interface"] for r in parsed] == ports
    assert {(r["admin_state"], r["link_status"]) for r in parsed} == {("Enabled", "Up")}


def test_counters_grow_between_reads(conn: Any) -> None:
    def input_packets() -> int:
        out = conn.send_command("show interfaces ge-0/0/0 extensive")
        found = re.search(r"Input  packets: +(\d+) +(\d+) pps", out)
        assert found is not None
        return int(found.group(1))

    first, second = input_packets(), input_packets()
    assert second >= first > 0
    rate = re.search(r"Input rate +: (\d+) bps", conn.send_command("show interfaces ge-0/0/0"))
    assert rate is not None and int(rate.group(1)) > 0


def test_cpu_memory_uptime_and_ping(conn: Any, device: Device) -> None:
    [brief] = parse("show system processes brief",
                    conn.send_command("show system processes brief"))
    busy = float(brief["cpu_user"]) + float(brief["cpu_system"]) + float(brief["cpu_hw_irq"])
    assert 0 < busy < 100
    assert busy + float(brief["cpu_idle"]) == pytest.approx(100, abs=0.2)

    [summary] = parse("show system processes summary",
                      conn.send_command("show system processes summary"))
    memory_mb = sum(int(summary[k].rstrip("M")) for k in (
        "memory_active", "memory_inactive", "memory_wired", "memory_buffer", "memory_free"))
    model_kb = next(m.memory_kb for m in device.platform.models if m.name == device.model)
    assert memory_mb == pytest.approx(model_kb // 1024, abs=4)

    [uptime] = parse("show system uptime", conn.send_command("show system uptime"))
    booted = datetime.fromtimestamp(device.boot_time, UTC)
    assert (uptime["boot_year"], uptime["boot_month"], uptime["boot_day"]) == (
        f"{booted:%Y}", f"{booted:%m}", f"{booted:%d}")
    assert uptime["boot_time"] == f"{booted:%H:%M:%S}"
    assert uptime["time_source"] == "LOCAL CLOCK"

    ping = conn.send_command("ping 192.0.2.1 count 3")
    assert len(re.findall(r"^64 bytes from 192\.0\.2\.1: icmp_seq=\d ttl=64 time=", ping,
                          re.M)) == 3
    assert "3 packets transmitted, 3 packets received, 0% packet loss" in ping
    stats = re.search(r"round-trip min/avg/max/stddev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms",
                      ping)
    assert stats is not None
    low, avg, high, _ = (float(v) for v in stats.groups())
    assert 0 < low <= avg <= high
    assert "5 packets transmitted" in conn.send_command("ping 192.0.2.1")  # as if count 5
