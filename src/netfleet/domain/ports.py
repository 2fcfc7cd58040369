"""Ports: the Protocols the engine and services code against; drivers and parsers implement them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Target:
    """Everything a driver needs to open a session to one device. Holds secrets: never log it."""

    name: str
    host: str
    port: int
    platform: str
    username: str
    password: str | None = field(default=None, repr=False)
    enable_secret: str | None = field(default=None, repr=False)
    ssh_key: str | None = field(default=None, repr=False)  # private key, OpenSSH PEM text
    driver: str | None = None  # None: the first driver that supports the platform
    connect_timeout: float = 15.0
    command_timeout: float = 30.0

    def secrets(self) -> list[str]:
        """The secret strings a device might echo back, for masking output."""
        return [s for s in (self.password, self.enable_secret) if s]


@runtime_checkable
class Session(Protocol):
    """An open, logged-in CLI session (enabled, paging off) on one device."""

    @property
    def alive(self) -> bool: ...

    async def send_command(self, command: str, *, timeout: float | None = None) -> str:
        """Run one operational command; return its output without echo and prompt.

        Raises CommandTimeout, CommandRejected (the device printed an error) or SessionLost.
        """
        ...

    async def send_config(self, lines: Sequence[str], *, timeout: float | None = None) -> str:
        """Enter config mode, send the lines, leave (committing where the platform commits).

        Raises CommandRejected naming the first line the device refused.
        """
        ...

    async def save(self) -> str:
        """Persist the running configuration (write memory; a no-op where commit saves)."""
        ...

    async def running_config(self) -> str:
        """The device's running configuration as text."""
        ...

    async def close(self) -> None: ...


class Driver(Protocol):
    """Opens sessions for the platforms it supports. Registered by name (entry points)."""

    name: str

    def supports(self, platform: str) -> bool: ...

    async def open(self, target: Target) -> Session:
        """Connect, authenticate, enable, disable paging.

        Raises ConnectError, AuthError, CommandTimeout (no prompt after login) or SessionLost
        (dropped during setup)."""
        ...


class Parser(Protocol):
    """Turns raw CLI output into records."""

    def parse(self, output: str, *, platform: str, command: str, kind: str = "textfsm",
              template: str | None = None) -> list[dict[str, Any]]:
        """kind: "textfsm" (ntc-templates by platform+command, or `template` text), "ttp"
        (`template` text) or "regex" (`template` a pattern with named groups).
        Raises ParseError."""
        ...
