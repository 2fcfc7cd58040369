"""The built-in profiles end to end: real SSH to the simulator through netfleet's own driver and
parsers, compared with the simulator's telemetry model; and the same profiles on the formats
real devices print that the simulator does not (logical units, IPv6 counters, older releases,
a ping nobody answers)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

import netfleet.sim.shell
from netfleet.domain.ports import Session, Target
from netfleet.domain.telemetry import Profile, Sample
from netfleet.drivers import driver_for
from netfleet.engine.metrics import DeviceMetrics
from netfleet.engine.profiles import builtin_profiles
from netfleet.parsing import Parsers
from netfleet.sim.state import Device
from netfleet.sim.views import DeviceView, InterfaceView
from tests.conftest import RunningSim

Rows = list[dict[str, Any]]

PING_TARGET = "192.0.2.1"
PING_COUNT = 5  # what every built-in ping sends
GAP = 30.0  # seconds between the two polls

REQUIRED = {"cpu_percent", "memory_used_percent", "latency_ms", "if_in_bps", "if_out_bps",
            "if_in_packets_ps", "if_out_packets_ps", "if_in_errors_ps", "if_out_errors_ps",
            "if_oper_up", "throughput_bps", "error_rate"}
PER_INTERFACE = {m for m in REQUIRED if m.startswith("if_")}
COUNTERS: dict[str, Callable[[InterfaceView], int]] = {
    "if_in_bps": lambda i: i.rx.octets * 8,
    "if_out_bps": lambda i: i.tx.octets * 8,
    "if_in_packets_ps": lambda i: i.rx.packets,
    "if_out_packets_ps": lambda i: i.tx.packets,
    "if_in_errors_ps": lambda i: i.rx.errors,
    "if_out_errors_ps": lambda i: i.tx.errors,
}


@dataclass(frozen=True)
class Case:
    shut: tuple[str, ...]  # config that shuts `port` down
    port: str
    # How far a printed value may sit from the model's, from the platform's own rounding:
    cpu: float  # IOS: whole percent; EOS: top's one decimal; Junos: four whole shares
    memory: float  # IOS: bytes; EOS: MiB with one decimal; Junos: whole percent of whole MB
    latency: float  # IOS: whole milliseconds; EOS and Junos: microseconds


CASES = {
    "cisco_ios": Case(("interface GigabitEthernet1/0/2", "shutdown"), "GigabitEthernet1/0/2",
                      cpu=1.0, memory=0.01, latency=1.0),
    "arista_eos": Case(("interface Ethernet2", "shutdown"), "Ethernet2",
                       cpu=0.1, memory=0.1, latency=0.001),
    "juniper_junos": Case(("set interfaces ge-0/0/2 disable",), "ge-0/0/2",
                          cpu=3.0, memory=1.5, latency=0.001),
}


class SimClock:
    """The simulator's wall clock, held still: its telemetry is a function of time, so pinning
    the time of each poll makes the model's values exact and the test needs no waiting."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimClock:
    pinned = SimClock(float(int(time.time())) + 3600.0)
    monkeypatch.setattr(netfleet.sim.shell, "time", pinned)
    return pinned


@pytest.fixture(scope="module")
def parsers() -> Parsers:
    return Parsers()


@asynccontextmanager
async def session_to(sim: RunningSim, device: Device) -> AsyncIterator[Session]:
    target = Target(name=device.name, host=device.address, port=sim.port,
                    platform=device.platform.name, username=device.username,
                    password=device.password, enable_secret=device.enable_secret,
                    connect_timeout=5.0, command_timeout=5.0)
    session = await driver_for(target.platform, "asyncssh").open(target)
    try:
        yield session
    finally:
        await session.close()


async def poll(session: Session, profile: Profile, parsers: Parsers) -> list[Rows | None]:
    """What the poller does: every command of the profile, parsed as the profile says."""
    parsed: list[Rows | None] = []
    for command in profile.commands:
        output = await session.send_command(command.command)
        parsed.append(parsers.parse(output, platform=profile.platform, command=command.command,
                                    kind=command.parse.kind, template=command.parse.template))
    return parsed


@dataclass(frozen=True)
class Truth:
    """What the simulator's model says at one instant."""

    cpu: float
    memory: float
    rtt: float
    interfaces: dict[str, InterfaceView]


def truth(sim: RunningSim, device: Device, at: float) -> Truth:
    def read() -> Truth:
        view = DeviceView(device, device.platform, at)
        rtts = device.telemetry.rtt_samples(at, int(ipaddress.IPv4Address(PING_TARGET)),
                                            PING_COUNT)
        return Truth(view.cpu["five_seconds"], float(view.memory["percent"]),
                     sum(rtts) / len(rtts), {i.name: i for i in view.interfaces()})

    return sim.run(read)  # device state belongs to the simulator's loop


def by_metric(samples: list[Sample]) -> dict[str, dict[str, float]]:
    """metric -> interface ("" for device-level) -> value."""
    out: dict[str, dict[str, float]] = {}
    for s in samples:
        labels = dict(s.labels)
        assert set(labels) == ({"interface"} if s.metric in PER_INTERFACE else set()), s
        out.setdefault(s.metric, {})[labels.get("interface", "")] = s.value
    return out


@pytest.mark.parametrize("platform", list(CASES))
async def test_default_profile_reports_what_the_device_model_says(
        sim: RunningSim, clock: SimClock, parsers: Parsers, platform: str) -> None:
    case = CASES[platform]
    profile = builtin_profiles()[f"{platform}-default"]
    light = builtin_profiles()[f"{platform}-cpu"]
    device = sim.add(1, platform)[0]
    metrics = DeviceMetrics(device.name, profile)
    async with session_to(sim, device) as session:
        await session.send_config(case.shut)
        t0 = clock.now
        first = metrics.observe(t0, await poll(session, profile, parsers))
        clock.now = t1 = t0 + GAP
        second = metrics.observe(t1, await poll(session, profile, parsers))
        cpu_only = DeviceMetrics(device.name, light).observe(t1, await poll(session, light,
                                                                            parsers))
    before, after = truth(sim, device, t0), truth(sim, device, t1)
    got = by_metric(second)

    # Rates need two polls; everything else is there from the first.
    assert not set(by_metric(first)) & {*COUNTERS, "throughput_bps", "error_rate"}
    assert {"cpu_percent", "memory_used_percent", "latency_ms", "if_oper_up"} <= set(
        by_metric(first))
    assert set(got) >= REQUIRED
    assert all(s.ts == t1 and s.device == device.name for s in second)

    assert got["cpu_percent"][""] == pytest.approx(after.cpu, abs=case.cpu)
    assert got["memory_used_percent"][""] == pytest.approx(after.memory, abs=case.memory)
    assert got["latency_ms"][""] == pytest.approx(after.rtt, abs=case.latency)
    assert got["ping_loss_percent"][""] == 0
    assert cpu_only == [s for s in second if s.metric == "cpu_percent"]

    physical = {name for name, i in after.interfaces.items() if i.physical}
    assert case.port in physical
    for metric, read in COUNTERS.items():
        assert set(got[metric]) >= physical, metric
        for name, value in got[metric].items():
            moved = read(after.interfaces[name]) - read(before.interfaces[name])
            assert value == pytest.approx(moved / GAP, rel=1e-9), (metric, name)
    assert got["if_in_bps"][case.port] == got["if_out_bps"][case.port] == 0
    running = {n for n in physical if after.interfaces[n].admin_up}
    assert running and case.port not in running
    assert min(got["if_in_bps"][n] for n in running) > 0

    assert set(got["if_oper_up"]) >= physical
    assert set(got["if_oper_up"].values()) <= {0, 1}
    for name in physical:
        up = after.interfaces[name].admin_up and after.interfaces[name].link_up
        assert got["if_oper_up"][name] == (1 if up else 0), name
    assert got["if_oper_up"][case.port] == 0

    def device_moved(*metrics: str) -> int:
        return sum(COUNTERS[m](after.interfaces[n]) - COUNTERS[m](before.interfaces[n])
                   for m in metrics for n in physical)

    octets = device_moved("if_in_bps", "if_out_bps")
    errors = device_moved("if_in_errors_ps", "if_out_errors_ps")
    packets = device_moved("if_in_packets_ps", "if_out_packets_ps")
    assert got["throughput_bps"][""] == pytest.approx(octets / GAP, rel=1e-9)
    assert got["error_rate"][""] == pytest.approx(errors / packets * 100, rel=1e-9)
    assert 0 < got["error_rate"][""] < 1


def test_every_platform_has_a_default_and_a_cpu_only_profile() -> None:
    profiles = builtin_profiles()
    assert set(profiles) == {f"{p}-{kind}" for p in CASES for kind in ("default", "cpu")}
    for platform in CASES:
        assert set(profiles[f"{platform}-default"].metric_names) >= REQUIRED
        light = profiles[f"{platform}-cpu"]
        assert (len(light.commands), light.metric_names) == (1, ["cpu_percent"])
        assert {p.platform for n, p in profiles.items() if n.startswith(platform)} == {platform}


def test_builtin_profiles_are_read_once_and_a_caller_cannot_change_them() -> None:
    first = builtin_profiles()
    first.clear()
    assert builtin_profiles()["cisco_ios-default"] is builtin_profiles()["cisco_ios-default"]


# -- formats real devices print ----------------------------------------------------------------

def observe_twice(platform: str, command: str, first: str, second: str,
                  parsers: Parsers, gap: float = 10.0) -> dict[str, dict[str, float]]:
    """Run one command of `platform`'s default profile through its parser and metrics."""
    profile = builtin_profiles()[f"{platform}-default"]
    index = [c.command for c in profile.commands].index(command)
    spec = profile.commands[index]
    metrics = DeviceMetrics("r1", profile)
    rounds = []
    for at, output in ((0.0, first), (gap, second)):
        rows = parsers.parse(output, platform=platform, command=command,
                             kind=spec.parse.kind, template=spec.parse.template)
        parsed: list[Rows | None] = [None] * len(profile.commands)
        parsed[index] = rows
        rounds.append(metrics.observe(at, parsed))
    return by_metric(rounds[1])


JUNOS_EXTENSIVE = """\
Physical interface: ge-0/0/0, Enabled, Physical link is Up
  Interface index: 148, SNMP ifIndex: 526, Generation: 151
  Link-level type: Ethernet, MTU: 1514, LAN-PHY mode, Speed: 1000mbps, BPDU Error: None,
  Device flags   : Present Running
  Interface flags: SNMP-Traps Internal: 0x4000
  Current address: 54:e0:32:30:87:33, Hardware address: 54:e0:32:30:87:33
  Last flapped   : 2017-04-11 02:36:59 CEST (8w4d 03:05 ago)
  Statistics last cleared: Never
  Traffic statistics:
   Input  bytes  :             {ib}                    0 bps
   Output bytes  :            {ob}                    0 bps
   Input  packets:               {ip}                    0 pps
   Output packets:              {op}                    0 pps
   IPv6 transit statistics:
    Input  bytes  :                 {v6}
    Output bytes  :                 {v6}
    Input  packets:                  {v6}
    Output packets:                  {v6}
  Ingress traffic statistics at Packet Forwarding Engine:
   Input  bytes  :             {v6}                 3700 bps
   Input  packets:               {v6}                    2 pps
  Input errors:
    Errors: {ie}, Drops: 0, Framing errors: 3, Runts: 0, Policed discards: 0, L3 incompletes: 0
  Output errors:
    Carrier transitions: 1, Errors: {oe}, Drops: 0, Collisions: 0, Aged packets: 0, FIFO errors: 0
  MAC statistics:                      Receive         Transmit
    Total octets                      {v6}        {v6}

  Logical interface ge-0/0/0.0 (Index 332) (SNMP ifIndex 527) (Generation 141)
    Flags: Up SNMP-Traps 0x4000 Encapsulation: ENET2
    Traffic statistics:
     Input  bytes  :             {v6}
     Output bytes  :             {v6}
     Input  packets:                {v6}
     Output packets:                {v6}
    Protocol inet, MTU: 1500

Physical interface: ge-0/0/1, Administratively down, Physical link is Down
  Interface index: 149, SNMP ifIndex: 528, Generation: 152
  Traffic statistics:
   Input  bytes  :                    0                    0 bps
   Output bytes  :                    0                    0 bps
   Input  packets:                    0                    0 pps
   Output packets:                    0                    0 pps
  Input errors:
    Errors: 0, Drops: 0, Framing errors: 0, Runts: 0
  Output errors:
    Carrier transitions: 0, Errors: 0, Drops: 0, Collisions: 0
"""


def test_junos_counters_come_from_the_physical_interface_only(parsers: Parsers) -> None:
    # IPv6 transit, PFE and logical-unit sections repeat the same labels with other numbers.
    def output(k: int, v6: int) -> str:
        return JUNOS_EXTENSIVE.format(ib=1000 * k, ob=2000 * k, ip=10 * k, op=20 * k, ie=k,
                                      oe=2 * k, v6=v6)

    got = observe_twice("juniper_junos", "show interfaces extensive", output(1, 7777),
                        output(11, 99999), parsers)
    assert got["if_in_bps"] == {"ge-0/0/0": 10000 * 8 / 10, "ge-0/0/1": 0}
    assert got["if_out_bps"]["ge-0/0/0"] == 20000 * 8 / 10
    assert (got["if_in_packets_ps"]["ge-0/0/0"], got["if_out_packets_ps"]["ge-0/0/0"]) == (10, 20)
    assert (got["if_in_errors_ps"]["ge-0/0/0"], got["if_out_errors_ps"]["ge-0/0/0"]) == (1, 2)
    assert got["if_oper_up"] == {"ge-0/0/0": 1, "ge-0/0/1": 0}
    assert got["error_rate"][""] == pytest.approx(3 / 30 * 100)


IOS_XE_INTERFACES = """\
Vlan1 is up, line protocol is up , Autostate Enabled
  Hardware is Ethernet SVI, address is 0c4b.5c8e.8000 (bia 0c4b.5c8e.8000)
  MTU 1500 bytes, BW 1000000 Kbit/sec, DLY 10 usec,
  5 minute input rate 1000 bits/sec, 1 packets/sec
     {k}00 packets input, {k}0000 bytes, 0 no buffer
     Received 0 broadcasts (0 IP multicasts)
     0 input errors, 0 CRC, 0 frame, 0 overrun, 0 ignored
     {k}00 packets output, {k}0000 bytes, 0 underruns
     Output 0 broadcasts (0 IP multicasts)
     0 output errors, 0 interface resets
GigabitEthernet1/0/1 is up, line protocol is up (connected)
  Hardware is Gigabit Ethernet, address is 0c4b.5c8e.8081 (bia 0c4b.5c8e.8081)
     {k}000 packets input, {k}00000 bytes, 0 no buffer
     {k} input errors, 0 CRC, 0 frame, 0 overrun, 0 ignored
     0 input packets with dribble condition detected
     {k}000 packets output, {k}00000 bytes, 0 underruns
     {k} output errors, 0 collisions, 1 interface resets
GigabitEthernet1/0/2 is down, line protocol is down (notconnect)
  Hardware is Gigabit Ethernet, address is 0c4b.5c8e.8082 (bia 0c4b.5c8e.8082)
GigabitEthernet1/0/3 is administratively down, line protocol is down (disabled)
  Hardware is Gigabit Ethernet, address is 0c4b.5c8e.8083 (bia 0c4b.5c8e.8083)
"""


def test_ios_xe_interface_headers_and_oper_states(parsers: Parsers) -> None:
    got = observe_twice("cisco_ios", "show interfaces", IOS_XE_INTERFACES.format(k=1),
                        IOS_XE_INTERFACES.format(k=3), parsers)
    assert got["if_oper_up"] == {"Vlan1": 1, "GigabitEthernet1/0/1": 1,
                                 "GigabitEthernet1/0/2": 0, "GigabitEthernet1/0/3": 0}
    assert got["if_in_bps"] == {"Vlan1": 20000 * 8 / 10, "GigabitEthernet1/0/1": 200000 * 8 / 10}
    assert got["if_in_errors_ps"]["GigabitEthernet1/0/1"] == 0.2


JUNOS_OLDER_RE = """\
Routing Engine status:
  Slot 0:
    Current state                  Master
    DRAM                      3584 MB (4096 MB installed)
    Memory utilization          23 percent
    CPU utilization:
      User                       1 percent
      Background                 0 percent
      Kernel                     4 percent
      Interrupt                  0 percent
      Idle                      95 percent
    Model                          RE-S-1800x4
  Slot 1:
    Current state                  Backup
    Memory utilization          11 percent
    CPU utilization:
      Idle                      99 percent
"""
JUNOS_NEWER_RE = """\
Routing Engine status:
    Total memory              2048 MB Max   635 MB used ( 31 percent)
      Control plane memory    1024 MB Max   420 MB used ( 41 percent)
    5 sec CPU utilization:
      User                       7 percent
      Idle                      88 percent
    1 min CPU utilization:
      User                       3 percent
      Idle                      96 percent
"""


@pytest.mark.parametrize("output, cpu, memory", [(JUNOS_OLDER_RE, 5, 23),
                                                 (JUNOS_NEWER_RE, 12, 31)])
def test_junos_routing_engine_of_older_and_newer_releases(
        parsers: Parsers, output: str, cpu: float, memory: float) -> None:
    got = observe_twice("juniper_junos", "show chassis routing-engine", output, output, parsers)
    assert (got["cpu_percent"][""], got["memory_used_percent"][""]) == (cpu, memory)
    [light] = DeviceMetrics("r1", builtin_profiles()["juniper_junos-cpu"]).observe(
        0.0, [parsers.parse(output, platform="juniper_junos", command="", kind="regex",
                            template=builtin_profiles()["juniper_junos-cpu"].commands[0]
                            .parse.template)])
    assert light.value == cpu


@pytest.mark.parametrize("platform, command, output", [
    ("arista_eos", "ping 192.0.2.1",
     "PING 192.0.2.1 (192.0.2.1) 72(100) bytes of data.\n\n--- 192.0.2.1 ping statistics ---\n"
     "5 packets transmitted, 0 received, 100% packet loss, time 4086ms\n"),
    ("juniper_junos", "ping 192.0.2.1 count 5",
     "PING 192.0.2.1 (192.0.2.1): 56 data bytes\n\n--- 192.0.2.1 ping statistics ---\n"
     "5 packets transmitted, 0 packets received, 100% packet loss\n"),
    ("cisco_ios", "ping 192.0.2.1",
     "Type escape sequence to abort.\nSending 5, 100-byte ICMP Echos to 192.0.2.1, timeout is "
     "2 seconds:\n.....\nSuccess rate is 0 percent (0/5)\n"),
])
def test_an_unanswered_ping_is_full_loss_and_no_latency(
        parsers: Parsers, platform: str, command: str, output: str) -> None:
    got = observe_twice(platform, command, output, output, parsers)
    assert got == {"ping_loss_percent": {"": 100}}


@pytest.mark.parametrize("line", [
    "%Cpu(s):  2.7 us,  1.6 sy,  0.0 ni, 95.4 id,  0.2 wa,  0.0 hi,  0.1 si,  0.0 st",
    "Cpu(s):  2.7%us,  1.6%sy,  0.0%ni, 95.4%id,  0.2%wa,  0.0%hi,  0.1%si,  0.0%st",
])
def test_eos_cpu_only_profile_reads_both_top_formats(parsers: Parsers, line: str) -> None:
    profile = builtin_profiles()["arista_eos-cpu"]
    spec = profile.commands[0].parse
    output = f"top - 10:00:00 up 3 days,  1 user,  load average: 0.1, 0.1, 0.1\n{line}\n"
    rows = parsers.parse(output, platform="arista_eos", command=profile.commands[0].command,
                         kind=spec.kind, template=spec.template)
    [sample] = DeviceMetrics("r1", profile).observe(0.0, [rows])
    assert sample.value == pytest.approx(4.6)
