"""The simulator process: devices, their listening sockets on loopback, logins and faults."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import structlog

from netfleet.sim.fleet import FleetFactory
from netfleet.sim.platform import get_platform
from netfleet.sim.session import DeviceSession
from netfleet.sim.state import DEFAULT_FAULTS, Device, Faults

log = structlog.get_logger("netfleet.sim")

LISTEN_BACKLOG = 64


@dataclass(slots=True)
class SimStats:
    logins: int = 0
    auth_failures: int = 0
    refused: int = 0
    sessions_opened: int = 0
    commands: int = 0
    drops: int = 0


class _Login(asyncssh.SSHServer):
    """One TCP connection to one device: finds the device by the address dialled, then logs in."""

    def __init__(self, sim: SimServer) -> None:
        self._sim = sim
        self._device: Device | None = None
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        local = conn.get_extra_info("sockname")
        device = self._sim.by_address.get(local[0]) if local else None
        if device is None:
            conn.abort()
            return
        limit = self._sim.faults_for(device).max_sessions
        if limit is not None and device.sessions >= limit:
            # All vty lines busy: the box accepts TCP and hangs up at once.
            self._sim.stats.refused += 1
            conn.abort()
            return
        self._device = device
        device.sessions += 1
        self._sim.connections.setdefault(device.name, set()).add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        device = self._device
        if device is not None:
            device.sessions -= 1
            conns = self._sim.connections.get(device.name)
            if conns is not None:
                if self._conn is not None:
                    conns.discard(self._conn)
                if not conns:
                    del self._sim.connections[device.name]
        self._device = None

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def kbdint_auth_supported(self) -> bool:
        # Real boxes offer keyboard-interactive too; OpenSSH's `ssh` prefers it to password.
        return True

    def get_kbdint_challenge(self, username: str, lang: str,
                             submethods: str) -> tuple[str, str, str, list[tuple[str, bool]]]:
        return "", "", "", [("Password: ", False)]

    async def validate_kbdint_response(self, username: str,
                                       responses: Sequence[str]) -> bool:
        return len(responses) == 1 and await self.validate_password(username, responses[0])

    async def validate_password(self, username: str, password: str) -> bool:
        device = self._device
        if device is None:
            return False
        faults = self._sim.faults_for(device)
        if faults.login_delay:
            await asyncio.sleep(faults.login_delay)
        ok = (not faults.auth_fail and username == device.username
              and password == device.password)
        if ok:
            self._sim.stats.logins += 1
        else:
            self._sim.stats.auth_failures += 1
            log.info("login refused", device=device.name, username=username)
        return ok

    def session_requested(self) -> asyncssh.SSHServerSession[bytes] | bool:
        if self._device is None or self._conn is None:
            return False
        username = self._conn.get_extra_info("username") or self._device.username
        return DeviceSession(self._sim, self._device, username)


class SimServer:
    """Owns the fleet: adds and removes devices (each a listening socket) while running."""

    def __init__(self, factory: FleetFactory, *, port: int = 2222,
                 faults: Faults | None = None, host_key: Path | None = None) -> None:
        self.factory = factory
        self.port = port
        self.fleet_faults = faults or Faults(**DEFAULT_FAULTS.as_dict())
        self.host_key_path = host_key
        self.devices: dict[str, Device] = {}
        self.by_address: dict[str, Device] = {}
        self.connections: dict[str, set[asyncssh.SSHServerConnection]] = {}
        self.stats = SimStats()
        self._listeners: dict[str, asyncio.Server] = {}
        self._options: asyncssh.SSHServerConnectionOptions | None = None
        self._next_index = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        key = self._host_key()
        self._options = asyncssh.SSHServerConnectionOptions(
            server_host_keys=[key],
            server_factory=lambda: _Login(self),
            encoding=None,
            line_editor=False,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            keepalive_interval=0,
            login_timeout=60,
        )

    def _host_key(self) -> asyncssh.SSHKey:
        # One key for the whole fleet: a key per device would cost seconds and memory for
        # 10,000 devices, and clients of a simulator do not pin host keys.
        path = self.host_key_path
        if path is not None and path.exists():
            return asyncssh.read_private_key(str(path))
        key = asyncssh.generate_private_key("ssh-ed25519")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            key.write_private_key(str(path))
            path.chmod(0o600)
        return key

    async def stop(self) -> None:
        for name in list(self.devices):
            await self.remove(name)

    # -- fleet -----------------------------------------------------------------------------
    async def add(self, count: int, platforms: Sequence[str] | None = None) -> list[Device]:
        """Create `count` devices (round-robin over `platforms`) and start listening for them."""
        chosen = [get_platform(p) for p in platforms] if platforms else None
        added: list[Device] = []
        for _ in range(count):
            index = self._next_index
            self._next_index += 1
            platform = chosen[index % len(chosen)] if chosen else None
            device = self.factory.make(index, platform)
            await self._listen(device)
            self.devices[device.name] = device
            self.by_address[device.address] = device
            added.append(device)
        if added:
            log.info("devices added", count=len(added), first=added[0].name,
                     last=added[-1].name)
        return added

    async def _listen(self, device: Device) -> None:
        assert self._options is not None, "start() the server before adding devices"
        options = self._options
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((device.address, self.port))
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
            server = await loop.create_server(
                lambda: asyncssh.SSHServerConnection(loop, options), sock=sock)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {device.address}:{self.port} for "
                          f"{device.name}: {exc.strerror}") from None
        self._listeners[device.name] = server

    async def remove(self, name: str) -> Device:
        device = self.devices.pop(name)
        self.by_address.pop(device.address, None)
        listener = self._listeners.pop(name, None)
        if listener is not None:
            listener.close()
        for conn in list(self.connections.pop(name, ())):
            conn.abort()
        return device

    def get(self, name: str) -> Device:
        return self.devices[name]

    # -- faults and truth ------------------------------------------------------------------
    def faults_for(self, device: Device) -> Faults:
        return device.effective_faults(self.fleet_faults)

    def truth(self) -> dict[str, Any]:
        """Which devices are degraded and how: what bottleneck detection should find."""
        degraded = {d.name: d.degradation.as_dict() for d in self.devices.values()
                    if d.degradation is not None}
        return {
            "seed": self.factory.seed,
            "fraction": self.factory.degraded,
            "devices": len(self.devices),
            "degraded": degraded,
        }
