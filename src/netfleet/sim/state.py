"""A simulated device's state: identity, faults, and the configuration it runs."""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from netfleet.sim.telemetry import Degradation, DeviceTelemetry

if TYPE_CHECKING:
    from netfleet.sim.platform import Platform


@dataclass(slots=True)
class Faults:
    """Misbehaviour on purpose. Unset fields (None) fall back to the fleet-wide faults."""

    login_delay: float | None = None  # seconds before authentication completes
    command_delay: float | None = None  # seconds added to every command
    command_jitter: float | None = None  # up to this many seconds more, at random
    auth_fail: bool | None = None  # every login is rejected
    drop_probability: float | None = None  # per command: the connection is dropped instead
    hang_pattern: str | None = None  # a command matching this regex never returns a prompt
    hang_probability: float | None = None  # per command: no prompt comes back
    config_error_rate: float | None = None  # per config line: rejected with the platform error
    max_sessions: int | None = None  # vty lines

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def merged(self, fallback: Faults) -> Faults:
        """These faults where set, `fallback` elsewhere."""
        return Faults(**{
            name: getattr(self, name) if getattr(self, name) is not None
            else getattr(fallback, name)
            for name in self.names()
        })

    def update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.names()}


DEFAULT_FAULTS = Faults(
    login_delay=0.0, command_delay=0.0, command_jitter=0.0, auth_fail=False,
    drop_probability=0.0, hang_pattern=None, hang_probability=0.0, config_error_rate=0.0,
    max_sessions=16,
)


@dataclass(slots=True)
class Interface:
    name: str
    port: int  # index into the telemetry model; -1 for logical interfaces
    description: str = ""
    address: ipaddress.IPv4Interface | None = None
    shutdown: bool = False
    access_vlan: int | None = None
    mtu: int = 1500

    @property
    def physical(self) -> bool:
        return self.port >= 0


@dataclass(slots=True)
class StaticRoute:
    prefix: ipaddress.IPv4Network
    next_hop: str


@dataclass(slots=True)
class DeviceConfig:
    """The part of a configuration the simulator models; what `show running-config` shows."""

    hostname: str
    interfaces: dict[str, Interface] = field(default_factory=dict)
    vlans: dict[int, str] = field(default_factory=dict)
    routes: list[StaticRoute] = field(default_factory=list)
    domain_name: str = ""
    ntp_servers: list[str] = field(default_factory=list)

    def clone(self) -> DeviceConfig:
        return copy.deepcopy(self)


@dataclass(slots=True, eq=False)
class Device:
    """One simulated box. Idle devices stay small: the config is built on first login."""

    index: int
    name: str
    address: str
    platform: Platform
    model: str
    os_version: str
    serial: str
    username: str
    password: str
    enable_secret: str | None
    boot_time: float
    seed: int
    degradation: Degradation | None = None
    faults: Faults | None = None
    sessions: int = 0
    commands: int = 0
    _running: DeviceConfig | None = None
    _startup: DeviceConfig | None = None
    _telemetry: DeviceTelemetry | None = None
    candidate: DeviceConfig | None = None  # uncommitted changes kept between sessions

    @property
    def running(self) -> DeviceConfig:
        if self._running is None:
            self._running = self.platform.initial_config(self)
            self._startup = self._running.clone()
        return self._running

    @running.setter
    def running(self, value: DeviceConfig) -> None:
        self._running = value

    @property
    def startup(self) -> DeviceConfig:
        if self._startup is None:
            self._startup = self.running.clone()
        return self._startup

    def save(self) -> None:
        self._startup = self.running.clone()

    @property
    def hostname(self) -> str:
        return self._running.hostname if self._running is not None else self.name

    @property
    def telemetry(self) -> DeviceTelemetry:
        if self._telemetry is None:
            self._telemetry = DeviceTelemetry(self.seed, self.index, self.boot_time,
                                              self.degradation)
        return self._telemetry

    def effective_faults(self, fleet: Faults) -> Faults:
        return self.faults.merged(fleet) if self.faults is not None else fleet

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hostname": self.hostname,
            "host": self.address,
            "platform": self.platform.name,
            "model": self.model,
            "os_version": self.os_version,
            "serial": self.serial,
            "username": self.username,
            "sessions": self.sessions,
            "commands": self.commands,
            "degraded": self.degradation is not None,
            "faults": self.faults.as_dict() if self.faults is not None else {},
        }
