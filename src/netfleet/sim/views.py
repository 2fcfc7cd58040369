"""What output templates see: a device's state and telemetry at one instant, precomputed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from netfleet.sim.telemetry import Counters, mix

if TYPE_CHECKING:
    from netfleet.sim.platform import Platform
    from netfleet.sim.state import Device, Interface

_ZERO = Counters(octets=0, packets=0, errors=0, bps=0, pps=0)


@dataclass(frozen=True, slots=True)
class Uptime:
    seconds: int

    @property
    def parts(self) -> dict[str, int]:
        rest = self.seconds
        out = {}
        for name, size in (("years", 31_536_000), ("weeks", 604_800), ("days", 86_400),
                           ("hours", 3_600), ("minutes", 60)):
            out[name], rest = divmod(rest, size)
        out["seconds"] = rest
        return out

    def words(self, conjunction: str = ", ") -> str:
        """`1 year, 2 weeks, 3 days, 4 hours, 5 minutes` (zero parts left out, as IOS does)."""
        items = [f"{v} {k[:-1] if v == 1 else k}" for k, v in self.parts.items()
                 if v and k != "seconds"]
        items = items or ["0 minutes"]
        if conjunction == ", ":
            return ", ".join(items)
        return ", ".join(items[:-1]) + (f"{conjunction}{items[-1]}" if len(items) > 1
                                        else items[-1])

    @property
    def junos(self) -> str:
        """`3w2d 04:05` as Junos prints it."""
        p = self.parts
        weeks = p["years"] * 52 + p["weeks"]
        head = (f"{weeks}w" if weeks else "") + (f"{p['days']}d" if p["days"] or weeks else "")
        return f"{head} {p['hours']:02d}:{p['minutes']:02d}".strip()


@dataclass(frozen=True, slots=True)
class InterfaceView:
    name: str
    description: str
    address: str | None  # "10.0.0.1"
    prefixlen: int | None
    netmask: str | None
    admin_up: bool
    link_up: bool
    mac: str  # 12 hex digits
    mtu: int
    speed_mbps: int
    physical: bool
    access_vlan: int | None
    rx: Counters
    tx: Counters

    @property
    def status(self) -> str:
        """IOS words: up / down / administratively down."""
        if not self.admin_up:
            return "administratively down"
        return "up" if self.link_up else "down"

    @property
    def protocol(self) -> str:
        return "up" if self.admin_up and self.link_up else "down"


def mac_dotted(mac: str) -> str:
    return f"{mac[0:4]}.{mac[4:8]}.{mac[8:12]}"


def mac_colon(mac: str) -> str:
    return ":".join(mac[i:i + 2] for i in range(0, 12, 2))


class DeviceView:
    __slots__ = ("__dict__", "device", "now", "platform")

    def __init__(self, device: Device, platform: Platform, now: float) -> None:
        self.device = device
        self.platform = platform
        self.now = now

    # identity
    @property
    def hostname(self) -> str:
        return self.device.hostname

    @property
    def model(self) -> str:
        return self.device.model

    @property
    def version(self) -> str:
        return self.device.os_version

    @property
    def serial(self) -> str:
        return self.device.serial

    @cached_property
    def hardware(self) -> dict[str, object]:
        for m in self.platform.models:
            if m.name == self.device.model:
                return {"ports": m.ports, "memory_kb": m.memory_kb, "image": m.image}
        return {"ports": 8, "memory_kb": 1_048_576, "image": "unknown"}

    @property
    def base_mac(self) -> str:
        return self.mac(0)

    def mac(self, port: int) -> str:
        # Locally administered (0x02…), unique per device index, consecutive per port.
        raw = mix(self.device.seed, self.device.index, 0x3AC) & 0xFFFFFF
        value = (0x02 << 40) | ((self.device.index & 0xFFFF) << 24) | ((raw + port) & 0xFFFFFF)
        return f"{value:012x}"

    # time
    @cached_property
    def uptime(self) -> Uptime:
        return Uptime(int(self.now - self.device.boot_time))

    @property
    def clock(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now, dt.UTC)

    @property
    def boot(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.device.boot_time, dt.UTC)

    # gauges
    @cached_property
    def cpu(self) -> dict[str, float]:
        tel = self.device.telemetry
        return {
            "five_seconds": tel.cpu_percent(self.now),
            "one_minute": tel.cpu_average(self.now, 60.0),
            "five_minutes": tel.cpu_average(self.now, 300.0),
        }

    @cached_property
    def memory(self) -> dict[str, int | float]:
        total = int(str(self.hardware["memory_kb"]))
        percent = self.device.telemetry.memory_percent(self.now)
        used = int(total * percent / 100.0)
        return {"total_kb": total, "used_kb": used, "free_kb": total - used,
                "percent": percent}

    # interfaces
    def interface(self, intf: Interface) -> InterfaceView:
        tel = self.device.telemetry
        running = intf.physical and not intf.shutdown
        rx = tel.counters(intf.port, 0, self.now) if running else _ZERO
        tx = tel.counters(intf.port, 1, self.now) if running else _ZERO
        return InterfaceView(
            name=intf.name,
            description=intf.description,
            address=str(intf.address.ip) if intf.address else None,
            prefixlen=intf.address.network.prefixlen if intf.address else None,
            netmask=str(intf.address.netmask) if intf.address else None,
            admin_up=not intf.shutdown,
            link_up=not intf.shutdown,
            mac=self.mac(intf.port + 1 if intf.physical else 0),
            mtu=intf.mtu,
            speed_mbps=tel.speed_bps // 1_000_000 if intf.physical else 0,
            physical=intf.physical,
            access_vlan=intf.access_vlan,
            rx=rx,
            tx=tx,
        )

    def interfaces(self, name: str | None = None) -> list[InterfaceView]:
        config = self.device.running
        items = list(config.interfaces.values())
        if name is not None:
            canonical = self.platform.canonical_interface(name)
            items = [i for i in items if i.name == canonical]
        return [self.interface(i) for i in items]
