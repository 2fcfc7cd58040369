"""Netmiko and ntc-templates against the simulated Cisco IOS switch."""

from __future__ import annotations

from typing import Any

from netfleet.sim.state import Device
from tests.sim.conftest import ntc_parser

PLATFORM = "cisco_ios"
parse = ntc_parser(PLATFORM)


def test_show_version_parses_to_the_devices_identity(conn: Any, device: Device) -> None:
    [parsed] = parse("show version", conn.send_command("show version"))
    assert parsed["hostname"] == device.name
    assert parsed["version"] == device.os_version
    assert parsed["hardware"] == [device.model]
    assert parsed["serial"] == [device.serial]
    assert int(parsed["uptime_days"] or 0) >= 0


def test_config_set_changes_running_config_and_parsed_interfaces(conn: Any) -> None:
    out = conn.send_config_set([
        "interface GigabitEthernet1/0/3",
        "description uplink to core-1",
        "ip address 10.20.30.1 255.255.255.0",
        "no shutdown",
        "vlan 42",
        "name users",
        "ip route 0.0.0.0 0.0.0.0 10.20.30.254",
    ])
    assert "Invalid input" not in out
    running = conn.send_command("show running-config")
    assert " description uplink to core-1" in running
    assert " ip address 10.20.30.1 255.255.255.0" in running
    assert "ip route 0.0.0.0 0.0.0.0 10.20.30.254" in running

    brief = parse("show ip interface brief", conn.send_command("show ip interface brief"))
    row = next(r for r in brief if r["interface"] == "GigabitEthernet1/0/3")
    assert row["ip_address"] == "10.20.30.1"
    assert (row["status"], row["proto"]) == ("up", "up")

    interfaces = parse("show interfaces", conn.send_command("show interfaces"))
    gi3 = next(r for r in interfaces if r["interface"] == "GigabitEthernet1/0/3")
    assert gi3["description"] == "uplink to core-1"
    assert gi3["ip_address"] == "10.20.30.1" and gi3["prefix_length"] == "24"

    vlans = parse("show vlan", conn.send_command("show vlan"))
    assert {"vlan_id": "42", "vlan_name": "users"}.items() <= next(
        v for v in vlans if v["vlan_id"] == "42").items()

    routes = parse("show ip route", conn.send_command("show ip route"))
    default = next(r for r in routes if r["network"] == "0.0.0.0")
    assert default["nexthop_ip"] == "10.20.30.254" and default["protocol"] == "S"


def test_unknown_config_line_gets_the_ios_error(conn: Any) -> None:
    out = conn.send_config_set(["interface Gi1/0/2", "frobnicate the widget"])
    assert "% Invalid input detected at '^' marker." in out
    assert "frobnicate" not in conn.send_command("show running-config")


def test_save_config_copies_running_to_startup(conn: Any) -> None:
    conn.send_config_set(["interface Gi1/0/4", "description saved-by-test"])
    assert "saved-by-test" not in conn.send_command("show startup-config")
    assert "[OK]" in conn.save_config()
    assert "description saved-by-test" in conn.send_command("show startup-config")


def test_counters_grow_and_parse(conn: Any) -> None:
    first = parse("show interfaces", conn.send_command("show interfaces GigabitEthernet1/0/1"))
    second = parse("show interfaces", conn.send_command("show interfaces GigabitEthernet1/0/1"))
    assert int(second[0]["input_packets"]) >= int(first[0]["input_packets"]) > 0
    assert int(first[0]["input_rate"]) > 0


def test_cpu_memory_clock_and_ping_parse(conn: Any) -> None:
    [cpu, *_] = parse("show processes cpu", conn.send_command("show processes cpu"))
    assert 0 < int(cpu["cpu_usage_5_sec"]) < 100
    [mem] = parse("show processes memory sorted",
                  conn.send_command("show processes memory sorted"))
    assert int(mem["memory_used"]) + int(mem["memory_free"]) == int(mem["memory_total"])
    [clock] = parse("show clock", conn.send_command("show clock"))
    assert clock["timezone"] == "UTC"
    [ping] = parse("ping", conn.send_command("ping 192.0.2.1"))
    assert ping["success_pct"] == "100"
    assert 1 <= int(ping["rtt_min"]) <= int(ping["rtt_avg"]) <= int(ping["rtt_max"])
