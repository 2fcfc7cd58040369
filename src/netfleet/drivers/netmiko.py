"""Netmiko adapter: any Netmiko device type behind the Session port.

Netmiko blocks, so every call runs on one bounded, module-wide thread pool; a fleet of
thousands of sessions never means thousands of threads. Netmiko's exceptions are mapped to
ours at this edge, and rejected configuration lines are found with the native driver's
platform data where we have it.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any, TypeVar

import netmiko
import paramiko  # type: ignore[import-untyped]
import structlog
from netmiko.exceptions import (
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
    ReadTimeout,
    WriteException,
)

from netfleet.domain.errors import (
    AuthError,
    CommandRejected,
    CommandTimeout,
    ConnectError,
    InvalidInput,
    SessionLost,
)
from netfleet.domain.ports import Session, Target
from netfleet.drivers import text
from netfleet.drivers.platforms import PLATFORMS, Platform

__all__ = ["NetmikoDriver", "NetmikoSession", "configure_executor", "executor"]

log = structlog.get_logger("netfleet.drivers")

T = TypeVar("T")

DEFAULT_MAX_WORKERS = int(os.environ.get("NETFLEET_NETMIKO_WORKERS", "32"))
# Netmiko bounds each read itself; this margin only catches a call stuck outside a read.
GUARD_MARGIN = 30.0
REJECTION_LINES = 3
KEEPALIVE_INTERVAL = 15  # paramiko transport keepalives (SSH level)
# What a session dying mid-call looks like from Netmiko and paramiko.
LOST = (OSError, EOFError, paramiko.SSHException, ReadException, WriteException)

WATCH_INTERVAL = 0.2  # how often a running call checks that the connection is still up

_executor: ThreadPoolExecutor | None = None


class _Dropped(Exception):
    """The SSH transport died while a Netmiko call was running."""


def configure_executor(max_workers: int) -> None:
    """Size the pool every Netmiko call runs on (default 32, or NETFLEET_NETMIKO_WORKERS)."""
    global _executor
    old, _executor = _executor, ThreadPoolExecutor(max_workers, thread_name_prefix="netmiko")
    if old is not None:
        old.shutdown(wait=False)


def executor() -> ThreadPoolExecutor:
    if _executor is None:
        configure_executor(DEFAULT_MAX_WORKERS)
    assert _executor is not None
    return _executor


async def _in_thread(fn: Callable[[], T], guard: float) -> T:
    """Run `fn` on the pool. Past `guard` seconds the caller gets TimeoutError; the thread
    finishes on its own (Netmiko's read timeouts end it)."""
    future = asyncio.get_running_loop().run_in_executor(executor(), fn)
    async with asyncio.timeout(guard):
        return await asyncio.shield(future)


class NetmikoDriver:
    """Opens `NetmikoSession`s for every Netmiko device type."""

    name = "netmiko"

    def supports(self, platform: str) -> bool:
        return platform in netmiko.platforms

    def platforms(self) -> list[str]:
        return list(netmiko.platforms)

    async def open(self, target: Target) -> Session:
        if not self.supports(target.platform):
            raise InvalidInput(f"netmiko has no device type {target.platform!r}",
                               field="platform", fix="see netmiko.platforms")
        params = _connect_params(target)
        guard = 3 * target.connect_timeout + target.command_timeout + GUARD_MARGIN
        future = asyncio.get_running_loop().run_in_executor(
            executor(), lambda: _connect(target, params))
        try:
            async with asyncio.timeout(guard):
                conn = await asyncio.shield(future)
        except (TimeoutError, asyncio.CancelledError) as exc:
            # The thread may still log in later: hang up on it when it does.
            future.add_done_callback(_disconnect_late)
            if isinstance(exc, TimeoutError):
                raise ConnectError(f"{target.name}: no session within {guard:g}s",
                                   device=target.name) from exc
            raise
        log.debug("session opened", device=target.name, platform=target.platform,
                  driver=self.name)
        return NetmikoSession(target, conn)


def _connect_params(target: Target) -> dict[str, Any]:
    params: dict[str, Any] = {
        "device_type": target.platform, "host": target.host, "port": target.port,
        "username": target.username, "password": target.password or "",
        "secret": target.enable_secret or "",
        "conn_timeout": target.connect_timeout, "auth_timeout": target.connect_timeout,
        "banner_timeout": target.connect_timeout, "keepalive": KEEPALIVE_INTERVAL,
        "fast_cli": False, "ssh_strict": False, "system_host_keys": False,
        "alt_host_keys": False, "allow_agent": False, "use_keys": False,
        "ssh_config_file": None,
    }
    if target.ssh_key:
        params.update(use_keys=True, pkey=_private_key(target))
    return params


def _private_key(target: Target) -> Any:
    assert target.ssh_key is not None
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        with suppress(paramiko.SSHException, ValueError):
            return kind.from_private_key(io.StringIO(target.ssh_key))
    raise InvalidInput(f"{target.name}: ssh_key is not a private key paramiko can read",
                       field="ssh_key", fix="an unencrypted OpenSSH or PEM private key")


def _connect(target: Target, params: dict[str, Any]) -> Any:
    """Runs on the pool: log in, enable, and let Netmiko switch paging off."""
    name = target.name
    try:
        conn = netmiko.ConnectHandler(**params)
    except NetmikoAuthenticationException as exc:
        raise AuthError(f"{name} refused the credentials of {target.username!r}",
                        device=name) from exc
    except NetmikoTimeoutException as exc:  # refused, unreachable, no SSH banner
        raise ConnectError(f"{name} ({target.host}:{target.port}): "
                           f"{_first_line(exc)}", device=name) from exc
    except ReadTimeout as exc:
        raise CommandTimeout(f"{name}: no prompt after login", device=name) from exc
    except LOST as exc:
        raise SessionLost(f"{name}: session lost while logging in ({_first_line(exc)})",
                          device=name) from exc
    try:
        if not conn.check_enable_mode():
            _enable(conn, target)
    except (ValueError, ReadTimeout) as exc:  # Netmiko: "Failed to enter enable mode"
        _hang_up(conn)
        raise AuthError(f"{name}: the enable secret was refused", device=name) from exc
    except BaseException:
        _hang_up(conn)
        raise
    return conn


def _enable(conn: Any, target: Target) -> None:
    """Netmiko's `enable()` waits out its read timeout when a refused secret is asked for
    again; with our platform data a second "Password:" is seen at once."""
    platform = PLATFORMS.get(target.platform.removesuffix("_ssh"))
    if platform is None or platform.enable is None:
        conn.enable()
        return
    enable = platform.enable
    either = f"(?:{enable.password_prompt.pattern})|(?:{platform.prompt.pattern})"
    conn.write_channel(conn.normalize_cmd(enable.command))
    reply = conn.read_until_pattern(pattern=either, re_flags=re.I | re.M,
                                    read_timeout=target.command_timeout)
    if enable.password_prompt.search(text.last_line(text.normalise(reply))):
        conn.write_channel(conn.normalize_cmd(target.enable_secret or ""))
        reply = conn.read_until_pattern(pattern=either, re_flags=re.I | re.M,
                                        read_timeout=target.command_timeout)
    if enable.password_prompt.search(text.last_line(text.normalise(reply))) \
            or not conn.check_enable_mode():
        raise ValueError("enable refused")


class NetmikoSession:
    """One Netmiko connection; one call at a time (a lock), each on the thread pool."""

    def __init__(self, target: Target, conn: Any) -> None:
        self._target = target
        self._conn = conn
        self._platform: Platform | None = PLATFORMS.get(target.platform.removesuffix("_ssh"))
        self._lock = asyncio.Lock()
        self._closed = False
        self._broken = False

    @property
    def alive(self) -> bool:
        return not (self._closed or self._broken or _dropped(self._conn))

    async def send_command(self, command: str, *, timeout: float | None = None) -> str:
        wait = self._timeout(timeout)

        def run() -> str:
            return str(self._conn.send_command(command, read_timeout=wait))

        output = await self._call(run, wait, command)
        error = self._platform.rejection(output, first_lines=REJECTION_LINES) \
            if self._platform else None
        if error:
            raise self._rejected(command, error, output)
        return output

    async def send_config(self, lines: Sequence[str], *, timeout: float | None = None) -> str:
        wait = self._timeout(timeout)
        todo = [ln.rstrip() for ln in lines if ln.strip()]
        if not todo:
            return ""
        return await self._call(lambda: self._configure(todo, wait), wait * (len(todo) + 4),
                                "configure")

    async def save(self) -> str:
        return await self._call(self._save, self._target.command_timeout, "save")

    async def running_config(self) -> str:
        command = self._platform.show_running if self._platform else "show running-config"
        return await self.send_command(command)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        leave = _hang_up if self._broken else _quiet_disconnect
        with suppress(TimeoutError):
            await _in_thread(lambda: leave(self._conn), GUARD_MARGIN)
        log.debug("session closed", device=self._target.name)

    # -- on the pool -----------------------------------------------------------------------
    def _configure(self, lines: list[str], wait: float) -> str:
        conn = self._conn
        try:
            output = str(conn.config_mode())
        except ValueError as exc:  # Netmiko: "Failed to enter configuration mode"
            raise self._rejected("configure", _first_line(exc), "") from exc
        for line in lines:
            reply = str(conn.send_config_set([line], enter_config_mode=False,
                                             exit_config_mode=False, read_timeout=wait))
            output += reply
            error = self._refusal(reply, line)
            if error:
                self._abandon_config()
                raise self._rejected(line, error, output)
        if _commits(conn):
            try:
                output += str(conn.commit(read_timeout=wait))
            except ValueError as exc:  # Netmiko: "Commit failed with the following errors"
                self._abandon_config()
                raise self._rejected("commit", _first_line(exc), output) from exc
        try:
            output += str(conn.exit_config_mode())
        except ValueError as exc:  # Netmiko: "Failed to exit configuration mode"
            self._abandon_config()
            raise self._rejected("exit configuration mode", _first_line(exc), output) from exc
        return output

    def _refusal(self, reply: str, line: str) -> str | None:
        if self._platform is None:
            return None
        body = "\n".join(text.strip_echo(text.normalise(reply).split("\n"), line))
        return self._platform.rejection(body)

    def _abandon_config(self) -> None:
        discard = self._platform.discard if self._platform else None
        try:
            if discard is not None:
                self._conn.send_config_set([discard.command], enter_config_mode=False,
                                           exit_config_mode=False)
            self._conn.exit_config_mode()
        except Exception as exc:  # the session is then in an unknown mode: never reuse it
            self._broken = True
            log.warning("could not leave configuration mode", device=self._target.name,
                        error=_first_line(exc))
            _hang_up(self._conn)

    def _save(self) -> str:
        try:
            return str(self._conn.save_config())
        except NotImplementedError:  # Junos and other commit platforms: commit saves
            if not _commits(self._conn):
                raise
            return str(self._conn.commit()) + str(self._conn.exit_config_mode())

    # -- mapping ---------------------------------------------------------------------------
    async def _call(self, fn: Callable[[], str], wait: float, what: str) -> str:
        """Run `fn` on the pool under the session lock; map Netmiko's failures to ours."""
        name = self._target.name
        word = what.split(" ", 1)[0]  # only the first word: a config line may carry a secret
        async with self._lock:
            if not self.alive:
                raise SessionLost(f"{name}: the session is closed", device=name)
            try:
                output = await self._watch(fn, wait + GUARD_MARGIN)
            except asyncio.CancelledError:
                # The caller gave up while Netmiko still reads: never reuse this session.
                self._broken = True
                executor().submit(_hang_up, self._conn)
                raise
            except _Dropped as exc:
                await self._discard()
                raise SessionLost(f"{name}: session lost during {word!r}",
                                  device=name) from exc
            except (ReadTimeout, TimeoutError) as exc:
                lost = _dropped(self._conn)
                await self._discard()
                if lost:
                    raise SessionLost(f"{name}: session lost during {word!r}",
                                      device=name) from exc
                raise CommandTimeout(f"{name}: no prompt within {wait:g}s after {word!r}",
                                     device=name) from exc
            except LOST as exc:
                await self._discard()
                raise SessionLost(f"{name}: session lost during {word!r} "
                                  f"({_first_line(exc)})", device=name) from exc
        return text.mask(text.normalise(output).strip("\n"), self._target.secrets())

    async def _watch(self, fn: Callable[[], str], guard: float) -> str:
        """`fn` on the pool, watched: Netmiko does not notice a dropped connection until its
        read timeout ends, so the transport is checked while it runs. A thread left behind
        ends at that read timeout; the session is not used again."""
        future = asyncio.get_running_loop().run_in_executor(executor(), fn)
        async with asyncio.timeout(guard):
            while True:
                done, _ = await asyncio.wait({future}, timeout=WATCH_INTERVAL)
                if done:
                    return future.result()
                if _dropped(self._conn):
                    raise _Dropped

    async def _discard(self) -> None:
        """A session that missed a prompt is out of step with the device: never reuse it."""
        self._broken = True
        log.warning("closing the session after a failure", device=self._target.name)
        await self.close()

    def _rejected(self, command: str, error: str, output: str) -> CommandRejected:
        return CommandRejected(f"{self._target.name} rejected {command!r}: {error}",
                               device=self._target.name, command=command,
                               output=text.mask(text.normalise(output), self._target.secrets()))

    def _timeout(self, timeout: float | None) -> float:
        return self._target.command_timeout if timeout is None else timeout


def _commits(conn: Any) -> bool:
    """Candidate-config platforms override Netmiko's `commit` (the base one only raises)."""
    return type(conn).commit is not netmiko.BaseConnection.commit


def _dropped(conn: Any) -> bool:
    """The SSH connection is known to be down (telnet and serial cannot be checked)."""
    if getattr(conn, "protocol", "ssh") != "ssh":
        return False
    transport = getattr(getattr(conn, "remote_conn", None), "transport", None)
    return transport is None or not transport.is_active()


def _quiet_disconnect(conn: Any) -> None:
    """Log out politely (Netmiko leaves config mode and types `exit`): healthy sessions only."""
    with suppress(Exception):
        conn.disconnect()


def _hang_up(conn: Any) -> None:
    """Close the SSH connection without a word: a broken session would only wait out its
    read timeouts answering Netmiko's polite logout."""
    with suppress(Exception):
        conn.paramiko_cleanup()


def _disconnect_late(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None:
        executor().submit(_hang_up, future.result())


def _first_line(exc: BaseException) -> str:
    message = str(exc).strip()
    return message.split("\n", 1)[0] if message else type(exc).__name__
