"""The native driver: an interactive SSH shell over asyncssh, driven by the platform data.

Three layers, as in scrapli: asyncssh moves bytes; `_Channel` reads until a prompt (or a known
question) ends the buffer; `AsyncSSHSession` knows modes (enable, configuration, commit) from
the `Platform`. Every wait is bounded; a session that missed a prompt is closed, never reused,
because the late prompt would be read as the answer to the next command.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from collections.abc import Awaitable, Sequence
from contextlib import suppress
from typing import TypeVar

import asyncssh
import structlog

from netfleet.domain.errors import (
    AuthError,
    CommandRejected,
    CommandTimeout,
    ConnectError,
    DeviceError,
    InvalidInput,
    SessionLost,
)
from netfleet.domain.ports import Session, Target
from netfleet.drivers import text
from netfleet.drivers.platforms import PLATFORMS, Platform, Step, get_platform

__all__ = ["AsyncSSHDriver", "AsyncSSHSession"]

log = structlog.get_logger("netfleet.drivers")

READ_SIZE = 65536
TAIL = 1024  # prompts are short: only this much of the buffer's end is searched for one
TERM_SIZE = (511, 24)
KEEPALIVE_INTERVAL = 15.0  # SSH-level keepalives: a RETURN would desync a slow device
KEEPALIVE_COUNT_MAX = 3
CLOSE_TIMEOUT = 2.0
# asyncssh's default ciphers, AES-GCM first: chacha20-poly1305 builds several cipher contexts
# per packet in Python and cost this client ~1.5x the CPU per command (netfleet bench poll).
# Same set, so the same devices are reachable; OpenSSH servers and IOS-XE/EOS/Junos offer GCM.
ENCRYPTION_ALGS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                   "chacha20-poly1305@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr")
REJECTION_LINES = 3  # a refused command's error follows its echo within this many lines
# What breaks a session mid-command: EOF, a reset, asyncssh's ConnectionLost and friends.
LOST = (EOFError, OSError, asyncssh.Error)

T = TypeVar("T")


class _Channel:
    """Writes lines; reads until the last line received matches one of the given patterns."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self._process = process
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._chunks: list[str] = []
        self._tail = ""

    def write(self, line: str) -> None:
        self._process.stdin.write(line.encode("utf-8") + b"\n")

    async def read_until(self, patterns: Sequence[re.Pattern[str]], *, echo: str = "",
                         after_newline: bool = True) -> tuple[str, int]:
        """Everything received up to a match (cleaned), and the index of the pattern matched.

        The match must be on a line of its own (`after_newline`) and, when `echo` is given,
        come after the device's echo of it: a log message and a redrawn prompt arriving
        before the echo must not end the read early. No timeout here: callers bound it.
        """
        typed = echo.strip()
        keep = max(TAIL, 2 * len(typed))
        if typed in text.normalise(self._tail):  # already buffered
            typed = ""
        while True:
            found = None if typed else self._match(patterns, after_newline)
            if found is not None:
                raw, self._chunks, self._tail = "".join(self._chunks), [], ""
                return text.normalise(raw), found
            data = await self._process.stdout.read(READ_SIZE)
            if not data:
                raise EOFError("the device closed the channel")
            chunk = self._decoder.decode(data)
            self._chunks.append(chunk)
            window = self._tail + chunk
            if typed and typed in text.normalise(window):
                typed = ""
            self._tail = window[-keep:]

    def _match(self, patterns: Sequence[re.Pattern[str]], after_newline: bool) -> int | None:
        tail = text.normalise(self._tail)
        if not tail or (after_newline and "\n" not in tail):
            return None
        line = text.last_line(tail)
        return next((i for i, p in enumerate(patterns) if p.search(line)), None)


class AsyncSSHSession:
    """One logged-in, privileged, unpaged CLI session. One operation at a time (a lock)."""

    def __init__(self, target: Target, platform: Platform, conn: asyncssh.SSHClientConnection,
                 process: asyncssh.SSHClientProcess[bytes]) -> None:
        self._target = target
        self._platform = platform
        self._conn = conn
        self._process = process
        self._channel = _Channel(process)
        self._lock = asyncio.Lock()
        self._closed = False
        self._broken = False
        self.prompt = ""  # the last prompt seen, e.g. "R1(config-if)#"

    @property
    def alive(self) -> bool:
        return not (self._closed or self._broken or self._conn.is_closed())

    # -- the Session port ------------------------------------------------------------------
    async def send_command(self, command: str, *, timeout: float | None = None) -> str:
        async with self._lock:
            self._check_usable()
            output = await self._exchange(Step(command), self._timeout(timeout))
            self._raise_if_rejected(command, output, first_lines=REJECTION_LINES)
            return output

    async def send_config(self, lines: Sequence[str], *, timeout: float | None = None) -> str:
        """Per-line bounded: `timeout` applies to each line's prompt, not to the whole set."""
        wait = self._timeout(timeout)
        todo = [ln.rstrip() for ln in lines if ln.strip()]
        if not todo:
            return ""
        async with self._lock:
            self._check_usable()
            return await self._configure(todo, wait)

    async def save(self) -> str:
        step = self._platform.save
        if step is None:
            return ""
        async with self._lock:
            self._check_usable()
            output = await self._exchange(step, self._target.command_timeout)
            self._raise_if_rejected(step.command, output)
            return output

    async def running_config(self) -> str:
        return await self.send_command(self._platform.show_running)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._process.close()
        self._conn.close()
        with suppress(TimeoutError, *LOST):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._conn.wait_closed()
        log.debug("session closed", device=self._target.name)

    # -- opening ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Wait for the first prompt, enable, switch paging off."""
        wait = self._target.command_timeout
        await self._read([self._platform.prompt], wait, "the first prompt after login",
                         after_newline=False)
        await self._enable(wait)
        for command in self._platform.on_open:
            output = await self._exchange(Step(command), wait)
            error = self._platform.rejection(output, first_lines=REJECTION_LINES)
            if error:  # an old release without `terminal width` is still usable
                log.warning("session setup command refused", device=self._target.name,
                            command=command, error=error)

    async def _enable(self, wait: float) -> None:
        enable = self._platform.enable
        if enable is None or not enable.unprivileged.search(self.prompt):
            return
        patterns = [self._platform.prompt, enable.password_prompt]
        self._write(enable.command)
        _, asked = await self._read(patterns, wait, enable.command, echo=enable.command)
        if asked:
            secret = self._target.enable_secret
            if not secret:
                raise AuthError(f"{self._target.name}: `{enable.command}` asks for a secret and "
                                "none is configured", device=self._target.name)
            self._write(secret)
            _, asked = await self._read(patterns, wait, enable.command)
        if asked or enable.unprivileged.search(self.prompt):
            raise AuthError(f"{self._target.name}: the enable secret was refused",
                            device=self._target.name)

    # -- configuration ---------------------------------------------------------------------
    async def _configure(self, lines: list[str], wait: float) -> str:
        p = self._platform
        outputs = [await self._exchange(Step(p.config_enter), wait)]
        if not p.config_prompt.search(self.prompt):
            raise CommandRejected(
                f"{self._target.name} did not enter configuration mode: "
                f"{text.last_line(outputs[0]) or self.prompt}", device=self._target.name,
                command=p.config_enter, output=outputs[0])
        for line in lines:
            outputs.append(await self._exchange(Step(line), wait))
            error = p.rejection(outputs[-1])
            if error:
                await self._abandon_config(wait)
                raise self._rejected(line, error, outputs)
        finish = p.commit or p.config_exit
        outputs.append(await self._exchange(finish, wait))
        error = p.rejection(outputs[-1])
        if error or p.config_prompt.search(self.prompt):
            await self._abandon_config(wait)
            raise self._rejected(finish.command, error or "still in configuration mode",
                                 outputs)
        return "\n".join(o for o in outputs if o)

    async def _abandon_config(self, wait: float) -> None:
        """Leave configuration mode after a refusal, dropping what a commit would apply.

        If that fails too, the session is in an unknown mode: it is closed, and the caller
        still learns which line was refused.
        """
        steps = [s for s in (self._platform.discard, self._platform.config_exit) if s]
        try:
            for step in steps:
                await self._exchange(step, wait)
        except DeviceError as exc:
            log.warning("could not leave configuration mode", device=self._target.name,
                        error=exc.message)
        if self.alive and self._platform.config_prompt.search(self.prompt):
            log.warning("still in configuration mode; closing", device=self._target.name)
            await self._discard_session()

    def _rejected(self, command: str, error: str, outputs: list[str]) -> CommandRejected:
        return CommandRejected(f"{self._target.name} rejected {command!r}: {error}",
                               device=self._target.name, command=command,
                               output="\n".join(o for o in outputs if o))

    # -- exchanges -------------------------------------------------------------------------
    async def _exchange(self, step: Step, wait: float) -> str:
        """Type `step.command`, answer its known questions, return the output up to the next
        prompt without echo, prompt or the context lines above the prompt."""
        self._write(step.command)
        output = await self._bounded(self._converse(step), wait, step.command)
        return text.mask(output, self._target.secrets())

    async def _converse(self, step: Step) -> str:
        patterns = [self._platform.prompt, *(a.question for a in step.answers)]
        typed, parts = step.command, []
        while True:
            received, which = await self._channel.read_until(patterns, echo=typed)
            parts.append(self._body(received, typed, ends_with_prompt=which == 0))
            if which == 0:
                self.prompt = text.last_line(received).strip()
                return "\n".join(p for p in parts if p)
            typed = step.answers[which - 1].reply
            self._write(typed)

    async def _read(self, patterns: Sequence[re.Pattern[str]], wait: float, what: str, *,
                    echo: str = "", after_newline: bool = True) -> tuple[str, int]:
        received, which = await self._bounded(
            self._channel.read_until(patterns, echo=echo, after_newline=after_newline),
            wait, what)
        if which == 0:
            self.prompt = text.last_line(received).strip()
        return received, which

    async def _bounded(self, work: Awaitable[T], wait: float, what: str) -> T:
        """`work` within `wait` seconds. A timeout or a dropped connection closes the session
        (a late prompt would answer the next command) and becomes CommandTimeout or
        SessionLost."""
        name = self._target.name
        word = what.split(" ", 1)[0]  # only the first word: a config line may carry a secret
        try:
            async with asyncio.timeout(wait):
                return await work
        except TimeoutError as exc:
            log.warning("no prompt in time; closing the session", device=name, command=word,
                        timeout=wait)
            await self._discard_session()
            raise CommandTimeout(f"{name}: no prompt within {wait:g}s after {word!r}",
                                 device=name) from exc
        except asyncio.CancelledError:
            # The caller gave up mid-exchange: the answer is still coming, so this session
            # can never be trusted again. Closing does not wait; the cancellation goes on.
            self._broken = True
            self._process.close()
            self._conn.close()
            raise
        except LOST as exc:
            reason = "the session was closed" if self._closed else _reason(exc)
            log.warning("session lost", device=name, command=word, error=reason)
            await self._discard_session()
            raise SessionLost(f"{name}: session lost during {word!r} ({reason})",
                              device=name) from exc

    def _body(self, received: str, typed: str, *, ends_with_prompt: bool) -> str:
        lines = received.split("\n")
        if ends_with_prompt:
            lines = lines[:-1]
        lines = text.strip_echo(lines, typed)
        while ends_with_prompt and lines and (not lines[-1].strip()
                                              or self._platform.is_context(lines[-1])):
            lines.pop()
        return "\n".join(text.trim_blank(lines))

    def _write(self, line: str) -> None:
        try:
            self._channel.write(line)
        except LOST as exc:
            self._broken = True
            raise SessionLost(f"{self._target.name}: the session is gone ({_reason(exc)})",
                              device=self._target.name) from exc

    async def _discard_session(self) -> None:
        self._broken = True
        await self.close()

    # -- guards ----------------------------------------------------------------------------
    def _timeout(self, timeout: float | None) -> float:
        return self._target.command_timeout if timeout is None else timeout

    def _check_usable(self) -> None:
        if not self.alive:
            raise SessionLost(f"{self._target.name}: the session is closed",
                              device=self._target.name)

    def _raise_if_rejected(self, command: str, output: str, *,
                           first_lines: int | None = None) -> None:
        error = self._platform.rejection(output, first_lines=first_lines)
        if error:
            raise CommandRejected(f"{self._target.name} rejected {command!r}: {error}",
                                  device=self._target.name, command=command, output=output)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.DisconnectError):
        return exc.reason or type(exc).__name__
    return str(exc) or type(exc).__name__


class AsyncSSHDriver:
    """Opens `AsyncSSHSession`s for the platforms in `platforms.PLATFORMS`."""

    name = "asyncssh"

    def __init__(self, *, keepalive_interval: float = KEEPALIVE_INTERVAL,
                 keepalive_count_max: int = KEEPALIVE_COUNT_MAX) -> None:
        self.keepalive_interval = keepalive_interval
        self.keepalive_count_max = keepalive_count_max

    def supports(self, platform: str) -> bool:
        return platform.removesuffix("_ssh") in PLATFORMS

    def platforms(self) -> list[str]:
        return sorted(PLATFORMS)

    async def open(self, target: Target) -> Session:
        platform = get_platform(target.platform)
        conn = await self._connect(target)
        try:
            async with asyncio.timeout(target.connect_timeout):
                process = await conn.create_process(term_type="vt100", term_size=TERM_SIZE,
                                                    encoding=None)
        except BaseException as exc:
            conn.abort()
            if isinstance(exc, TimeoutError | asyncssh.Error | OSError):
                raise ConnectError(f"{target.name}: the device did not open a shell "
                                   f"({_reason(exc)})", device=target.name) from exc
            raise
        session = AsyncSSHSession(target, platform, conn, process)
        try:
            await session.start()
        except BaseException:
            await session.close()
            raise
        log.debug("session opened", device=target.name, platform=platform.name,
                  prompt=session.prompt)
        return session

    async def _connect(self, target: Target) -> asyncssh.SSHClientConnection:
        where = f"{target.name} ({target.host}:{target.port})"
        keys = _client_keys(target)
        if keys is None and not target.password:
            raise InvalidInput(f"{target.name}: no password and no ssh_key", field="password",
                               fix="give the target a password or an ssh_key")
        try:
            async with asyncio.timeout(target.connect_timeout):
                return await asyncssh.connect(
                    target.host, target.port, username=target.username,
                    password=target.password, client_keys=keys, known_hosts=None,
                    agent_path=None, config=None, connect_timeout=target.connect_timeout,
                    keepalive_interval=self.keepalive_interval,
                    keepalive_count_max=self.keepalive_count_max,
                    encryption_algs=ENCRYPTION_ALGS,
                )
        except asyncssh.PermissionDenied as exc:
            raise AuthError(f"{where} refused the credentials of {target.username!r}",
                            device=target.name) from exc
        except TimeoutError as exc:
            raise ConnectError(f"{where}: no SSH session within {target.connect_timeout:g}s",
                               device=target.name) from exc
        except asyncssh.Error as exc:  # lost or refused during the handshake, no common kex
            raise ConnectError(f"{where}: SSH failed: {_reason(exc)}",
                               device=target.name) from exc
        except OSError as exc:  # refused, unreachable, unknown host
            raise ConnectError(f"{where}: {exc.strerror or exc}", device=target.name) from exc


def _client_keys(target: Target) -> list[asyncssh.SSHKey] | None:
    if not target.ssh_key:
        return None
    try:
        return [asyncssh.import_private_key(target.ssh_key)]
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise InvalidInput(f"{target.name}: ssh_key is not a private key asyncssh can read",
                           field="ssh_key", fix="an unencrypted OpenSSH or PEM private key"
                           ) from exc
