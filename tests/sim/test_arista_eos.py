"""Netmiko and ntc-templates against the simulated Arista EOS switch."""

from __future__ import annotations

import re
from typing import Any

import pytest

from netfleet.sim.fleet import FleetFactory
from netfleet.sim.shell import Shell
from netfleet.sim.state import Device
from tests.sim.conftest import ntc_parser

PLATFORM = "arista_eos"
parse = ntc_parser(PLATFORM)


def memory_kb(device: Device) -> int:
    return next(m.memory_kb for m in device.platform.models if m.name == device.model)


# -- over SSH, with Netmiko ----------------------------------------------------------------

def test_show_version_parses_to_the_devices_identity(conn: Any, device: Device) -> None:
    [parsed] = parse("show version", conn.send_command("show version"))
    assert parsed["model"] == device.model
    assert parsed["image"] == device.os_version
    assert parsed["serial_number"] == device.serial
    assert int(parsed["total_memory"]) == memory_kb(device)
    assert 0 < int(parsed["free_memory"]) < int(parsed["total_memory"])
    assert "minutes" in parsed["uptime"]


def test_config_set_changes_running_config_and_parsed_views(conn: Any) -> None:
    out = conn.send_config_set([
        "interface Ethernet3",
        "description uplink to core-1",
        "no switchport",
        "ip address 10.20.30.1/24",
        "no shutdown",
        "vlan 42",
        "name users",
        "interface et5",
        "switchport access vlan 42",
        "ip route 0.0.0.0/0 10.20.30.254",
    ])
    assert "% " not in out
    running = conn.send_command("show running-config")
    assert "interface Ethernet3\n   description uplink to core-1\n   no switchport\n" \
           "   ip address 10.20.30.1/24\n" in running
    assert "vlan 42\n   name users\n" in running
    assert "ip route 0.0.0.0/0 10.20.30.254" in running

    brief = parse("show ip interface brief", conn.send_command("show ip interface brief"))
    row = next(r for r in brief if r["interface"] == "Ethernet3")
    assert (row["ip_address"], row["status"], row["protocol"]) == ("10.20.30.1/24", "up", "up")
    assert "Ethernet1" not in {r["interface"] for r in brief}  # a switchport has no IP

    interfaces = parse("show interfaces", conn.send_command("show interfaces"))
    et3 = next(r for r in interfaces if r["interface"] == "Ethernet3")
    assert et3["description"] == "uplink to core-1"
    assert et3["ip_address"] == "10.20.30.1/24"
    assert et3["link_status"] == "up"

    vlans = parse("show vlan", conn.send_command("show vlan"))
    users = next(v for v in vlans if v["vlan_id"] == "42")
    assert (users["vlan_name"], users["interfaces"]) == ("users", ["Et5"])
    assert "Et3" not in next(v for v in vlans if v["vlan_id"] == "1")["interfaces"]

    routes = parse("show ip route", conn.send_command("show ip route"))
    default = next(r for r in routes if r["network"] == "0.0.0.0")
    assert (default["protocol"], default["next_hop"], default["interface"]) == (
        "S", ["10.20.30.254"], ["Ethernet3"])
    connected = next(r for r in routes if r["network"] == "10.20.30.0")
    assert (connected["protocol"], connected["prefix_length"]) == ("C", "24")


def test_unknown_config_line_gets_the_eos_error(conn: Any) -> None:
    out = conn.send_config_set(["interface Et2", "frobnicate the widget"])
    assert "% Invalid input (at token 0: 'frobnicate')" in out
    assert "frobnicate" not in conn.send_command("show running-config")


def test_save_config_copies_running_to_startup(conn: Any) -> None:
    conn.send_config_set(["interface Et4", "description saved-by-test"])
    assert "saved-by-test" not in conn.send_command("show startup-config")
    assert "Copy completed successfully." in conn.save_config()
    assert "   description saved-by-test" in conn.send_command("show startup-config")


def test_counters_grow_and_parse(conn: Any) -> None:
    first = conn.send_command("show interfaces Ethernet1")
    second = conn.send_command("show interfaces et1")
    [parsed] = parse("show interfaces", first)
    assert parsed["interface"] == "Ethernet1" and parsed["mtu"] == "9214"
    packets = [int(re.findall(r"(\d+) packets input", out)[0]) for out in (first, second)]
    assert packets[1] >= packets[0] > 0
    assert re.search(r"5 minutes input rate [1-9][\d.]* [kMG]?bps", first)


def test_cpu_memory_clock_and_ping_parse(conn: Any, device: Device) -> None:
    top = parse("show processes top once", conn.send_command("show processes top once"))
    first = top[0]
    assert float(first["global_mem_total"]) == pytest.approx(memory_kb(device) / 1024, abs=0.1)
    busy = float(first["global_cpu_percent_user"]) + float(first["global_cpu_percent_system"])
    assert 0 < busy < 100
    shares = ("user", "system", "nice", "idle", "iowait", "hi", "si", "stolen")
    total = sum(float(first[f"global_cpu_percent_{share}"]) for share in shares)
    assert total == pytest.approx(100, abs=0.5)  # the CPU's time adds up, whatever the load
    assert {"Sysdb", "ConfigAgent"} <= {p["command"] for p in top}

    [clock] = parse("show clock", conn.send_command("show clock"))
    assert clock["timezone"] == "UTC"

    ping = conn.send_command("ping 192.0.2.1")
    assert ping.startswith("PING 192.0.2.1 (192.0.2.1) 72(100) bytes of data.")
    assert "5 packets transmitted, 5 received, 0% packet loss" in ping
    found = re.search(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", ping)
    assert found is not None
    low, avg, high, _ = (float(x) for x in found.groups())
    assert 0 < low <= avg <= high


def test_interface_status_and_description_tables_parse(conn: Any, device: Device) -> None:
    conn.send_config_set(["interface Et2", "description to-firewall", "shutdown"])
    status = parse("show interfaces status", conn.send_command("show interfaces status"))
    et2 = next(r for r in status if r["port"] == "Et2")
    assert (et2["name"], et2["status"]) == ("to-firewall", "disabled")
    assert len([r for r in status if r["port"].startswith("Et")]) == next(
        m.ports for m in device.platform.models if m.name == device.model)
    described = parse("show interfaces description",
                      conn.send_command("show interfaces description"))
    et2_row = next(r for r in described if r["port"] == "Et2")
    assert (et2_row["status"], et2_row["description"]) == ("admin down", "to-firewall")


# -- the CLI on its own (no SSH) ---------------------------------------------------------

@pytest.fixture
def shell() -> Shell:
    eos = FleetFactory(seed=5, base_ip="127.201.0.1", degraded=0.0,
                       platforms=["arista_eos"]).make(0)
    return Shell(eos, eos.username)


def run(shell: Shell, line: str) -> str:
    return shell.handle_line(line).text.replace("\r\n", "\n")


def enable(shell: Shell) -> None:
    assert run(shell, "enable") == "Password: "
    run(shell, str(shell.device.enable_secret))


def test_prompts_name_the_interface_or_vlan_being_edited(shell: Shell) -> None:
    host = shell.device.hostname
    assert shell.prompt() == f"{host}>"
    enable(shell)
    assert shell.prompt() == f"{host}#"
    run(shell, "configure")
    assert shell.prompt() == f"{host}(config)#"
    run(shell, "interface eth1")
    assert shell.prompt() == f"{host}(config-if-Et1)#"
    run(shell, "int ma1")
    assert shell.prompt() == f"{host}(config-if-Ma1)#"
    run(shell, "vlan 10")
    assert shell.prompt() == f"{host}(config-vlan-10)#"
    run(shell, "exit")
    assert shell.prompt() == f"{host}(config)#"
    run(shell, "end")
    assert shell.prompt() == f"{host}#"


def test_errors_count_tokens_from_zero(shell: Shell) -> None:
    enable(shell)
    assert run(shell, "show bogus").startswith("% Invalid input (at token 1: 'bogus')\n")
    assert run(shell, "show").startswith("% Incomplete command\n")
    run(shell, "configure terminal")
    run(shell, "interface Ethernet1")
    assert run(shell, "description").startswith("% Incomplete command\n")
    assert run(shell, "ip address 10.0.0.1/33").startswith(
        "% Invalid input (at token 2: '10.0.0.1/33')\n")


def test_abbreviations_prefer_a_keyword_to_an_interface_name(shell: Shell) -> None:
    assert run(shell, "sh int st").startswith("Port       Name")
    assert run(shell, "sh int desc").startswith("Interface                      Status")
    assert run(shell, "sh int et1").startswith("Ethernet1 is up")
    assert run(shell, "sh ip int br").split("\n")[1].startswith("Interface        IP Address")


def test_privileged_commands_are_refused_before_enable(shell: Shell) -> None:
    assert run(shell, "show running-config").startswith(
        "% Invalid input (privileged mode required)\n")
    assert run(shell, "conf t").startswith("% Invalid input (privileged mode required)\n")
    assert shell.prompt().endswith(">")
    assert "Software image version" in run(shell, "show version")


def test_exec_commands_and_saving_work_in_config_mode(shell: Shell) -> None:
    enable(shell)
    run(shell, "configure")
    run(shell, "interface Ethernet2")
    assert "Ethernet2 is up, line protocol is up (connected)" in run(
        shell, "show interfaces Ethernet2")
    assert run(shell, "write").startswith("Copy completed successfully.\n")


def test_static_route_is_installed_only_once_its_next_hop_resolves(shell: Shell) -> None:
    enable(shell)
    run(shell, "configure")
    run(shell, "ip route 10.99.0.0/16 192.0.2.1")
    assert "10.99.0.0/16" not in run(shell, "show ip route")
    run(shell, "interface Loopback1")
    run(shell, "ip address 192.0.2.2/24")
    run(shell, "end")
    routes = parse("show ip route", run(shell, "show ip route").rsplit("\n", 1)[0])
    static = next(r for r in routes if r["network"] == "10.99.0.0")
    assert (static["next_hop"], static["interface"]) == (["192.0.2.1"], ["Loopback1"])


def test_domain_name_is_stored_as_dns_domain(shell: Shell) -> None:
    enable(shell)
    run(shell, "configure")
    run(shell, "ip domain-name lab.example.net")
    run(shell, "end")
    assert "\ndns domain lab.example.net\n" in run(shell, "show running-config")
    [host] = parse("show hostname", run(shell, "show hostname").rsplit("\n", 1)[0])
    assert host["fqdn"] == f"{shell.device.hostname}.lab.example.net"
