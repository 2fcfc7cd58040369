"""The CLI interpreter on its own (no SSH): modes, abbreviations, errors, pager, config."""

from __future__ import annotations

import pytest

from netfleet.sim.fleet import FleetFactory
from netfleet.sim.shell import Shell
from netfleet.sim.state import Device
from netfleet.sim.views import DeviceView


@pytest.fixture
def device() -> Device:
    return FleetFactory(seed=3, base_ip="127.200.0.1", degraded=0.0,
                        platforms=["cisco_ios"]).make(0)


@pytest.fixture
def shell(device: Device) -> Shell:
    return Shell(device, device.username)


def run(shell: Shell, line: str) -> str:
    return shell.handle_line(line).text


def enable(shell: Shell) -> None:
    run(shell, "enable")
    run(shell, str(shell.device.enable_secret))


def test_enable_needs_the_secret(shell: Shell, device: Device) -> None:
    assert shell.prompt() == f"{device.name}>"
    assert run(shell, "enable") == "Password: "
    assert not shell.echo  # the secret is not echoed
    run(shell, "wrong")
    run(shell, "wrong")
    assert "% Bad secrets" in run(shell, "wrong")
    assert shell.prompt().endswith(">")
    enable(shell)
    assert shell.prompt() == f"{device.name}#"


def test_abbreviations_are_accepted(shell: Shell, device: Device) -> None:
    enable(shell)
    assert "uptime is" in run(shell, "sh ver")
    assert "IP-Address" in run(shell, "sh ip int br")
    run(shell, "conf t")
    assert shell.prompt() == f"{device.name}(config)#"
    run(shell, "int gi1/0/2")
    assert shell.prompt() == f"{device.name}(config-if)#"
    run(shell, "desc to-firewall")
    run(shell, "end")
    assert device.running.interfaces["GigabitEthernet1/0/2"].description == "to-firewall"


def test_invalid_input_marks_the_bad_word(shell: Shell) -> None:
    enable(shell)
    out = run(shell, "show bogus")
    marker, message = out.split("\r\n")[:2]
    assert message == "% Invalid input detected at '^' marker."
    assert marker.index("^") == len(shell.prompt()) + len("show ")
    assert "% Incomplete command." in run(shell, "show")
    run(shell, "configure terminal")
    assert "% Incomplete command." in run(shell, "interface")
    assert run(shell, "ip frobnicate").split("\r\n")[0].index("^") == len(shell.prompt()) + 3


def test_privileged_commands_are_refused_in_user_mode(shell: Shell) -> None:
    assert "% Invalid input" in run(shell, "show running-config")


def test_pager_pages_until_disabled(shell: Shell) -> None:
    enable(shell)
    first = run(shell, "show interfaces")
    assert first.endswith(" --More-- ") and shell.paging
    assert first.count("\r\n") == shell.length - 1
    assert shell.handle_key(" ").text.count("\r\n") >= shell.length - 1
    assert shell.handle_key("q").text.endswith(shell.prompt())
    assert not shell.paging
    run(shell, "terminal length 0")
    assert "--More--" not in run(shell, "show interfaces")


def test_config_mode_in_user_mode_is_rejected(shell: Shell) -> None:
    assert "Invalid input" in run(shell, "configure terminal")


def test_global_commands_in_a_submode_and_exit_walks_up(shell: Shell, device: Device) -> None:
    enable(shell)
    run(shell, "configure terminal")
    run(shell, "interface Loopback7")
    run(shell, "ip address 192.0.2.7 255.255.255.255")
    run(shell, "exit")
    assert shell.prompt().endswith("(config)#")
    run(shell, "exit")
    assert shell.prompt() == f"{device.name}#"
    assert str(device.running.interfaces["Loopback7"].address) == "192.0.2.7/32"


def test_config_failure_injection_rejects_and_does_not_apply(device: Device) -> None:
    shell = Shell(device, device.username, config_error_rate=1.0)
    enable(shell)
    run(shell, "configure terminal")
    assert "% Invalid input" in run(shell, "hostname never-applied")
    assert device.hostname == device.name


def test_pipes_filter_output(shell: Shell) -> None:
    enable(shell)
    run(shell, "terminal length 0")
    assert run(shell, "show running-config | include ^hostname").startswith("hostname ")
    assert "Count: " in run(shell, "show ip interface brief | count Gigabit")
    section = run(shell, "show running-config | section interface GigabitEthernet1/0/1$")
    assert section.startswith("interface GigabitEthernet1/0/1\r\n")


def test_exit_in_exec_mode_ends_the_session(shell: Shell) -> None:
    assert shell.handle_line("exit").close
    assert shell.closed


def test_every_port_has_its_own_mac(device: Device) -> None:
    macs = [i.mac for i in DeviceView(device, device.platform, 0.0).interfaces() if i.physical]
    assert len(macs) == len(set(macs)) > 1
