"""One SSH channel of a simulated device: terminal line discipline, echo, delays and faults.

The CLI itself lives in `shell.Shell`; this layer turns bytes into lines (or single keys at a
pager), echoes what the user types as a real VTY does, and applies per-command faults.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

import asyncssh
import structlog

from netfleet.sim.shell import NL, Reply, Shell

if TYPE_CHECKING:
    from netfleet.sim.server import SimServer
    from netfleet.sim.state import Device

log = structlog.get_logger("netfleet.sim")

MAX_LINE = 4096  # longer input is dropped with a bell, as a terminal line buffer would
PRINTABLE = frozenset(range(0x20, 0x7F))
BELL = "\a"


class DeviceSession(asyncssh.SSHServerSession[bytes]):
    """An interactive (or exec) session on one device."""

    def __init__(self, server: SimServer, device: Device, username: str) -> None:
        self._server = server
        self._device = device
        self._username = username
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        faults = server.faults_for(device)
        self._rng = random.Random()
        self._shell = Shell(device, username, config_error_rate=faults.config_error_rate or 0.0,
                            rng=self._rng)
        self._line = bytearray()
        self._pending: deque[str] = deque()
        self._busy = False
        self._hung = False
        self._after_cr = False
        self._exec: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._batch: list[str] | None = None

    # -- asyncssh callbacks ----------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan
        self._server.stats.sessions_opened += 1

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Mapping[int, int]) -> bool:
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._exec = command
        return True

    def session_started(self) -> None:
        if self._exec is not None:
            self._run_exec(self._exec)
        else:
            self._write(self._shell.greeting())

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._hung or self._exec is not None:
            return
        # Echo and replies for one read go out as one write: fewer packets, and a peer that
        # has already hung up is not written to once per character.
        self._batch = []
        try:
            for byte in data:
                self._key(byte)
        finally:
            batch, self._batch = self._batch, None
            if batch and self._chan is not None and not self._chan.is_closing():
                self._chan.write("".join(batch).encode("utf-8", "replace"))

    def eof_received(self) -> bool:
        self._close()
        return False

    def break_received(self, msec: int) -> bool:
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._chan = None

    # -- line discipline -------------------------------------------------------------------
    def _key(self, byte: int) -> None:
        if self._shell.paging and not self._busy:
            self._after_cr = byte == 0x0D
            self._reply(self._shell.handle_key(chr(byte)))
            return
        if byte == 0x0A and self._after_cr:  # CR LF is one Enter
            self._after_cr = False
            return
        self._after_cr = byte == 0x0D
        if byte in (0x0D, 0x0A):
            line = self._line.decode("ascii")
            self._line.clear()
            self._write(NL)
            self._pending.append(line)
            self._drain()
        elif byte in (0x08, 0x7F):
            if self._line:
                self._line.pop()
                self._write("\b \b")
        elif byte == 0x03:  # Ctrl-C
            self._line.clear()
            if not self._busy:
                self._reply(self._shell.interrupt())
        elif byte == 0x1A:  # Ctrl-Z leaves config mode, like `end`
            self._line.clear()
            self._pending.append("end" if self._shell.platform.modes[self._shell.mode].config
                                 else "")
            self._drain()
        elif byte in PRINTABLE:
            if len(self._line) >= MAX_LINE:
                self._write(BELL)
                return
            self._line.append(byte)
            if self._shell.echo and not self._busy:
                self._write(chr(byte))
        # Anything else (escape sequences, binary garbage) is ignored, as a VTY does.

    def _drain(self) -> None:
        """Run queued lines one at a time; a delayed command holds the ones typed after it."""
        while self._pending and not self._busy and not self._hung and self._chan is not None:
            line = self._pending.popleft()
            if not line.strip() or self._shell.paging:
                self._reply(self._handle(line))
                continue
            faults = self._server.faults_for(self._device)
            if faults.drop_probability and self._rng.random() < faults.drop_probability:
                self._drop()
                return
            if self._hangs(line, faults.hang_pattern, faults.hang_probability or 0.0):
                self._hung = True
                return
            delay = (faults.command_delay or 0.0) + self._rng.uniform(
                0.0, faults.command_jitter or 0.0)
            if delay > 0:
                self._busy = True
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(delay, self._delayed, line)
                return
            self._reply(self._handle(line))

    def _handle(self, line: str) -> Reply:
        """Run one line; a bug in a platform definition costs a command, never the session."""
        try:
            return self._shell.handle_line(line)
        except Exception:
            # Only the first word: a config line or a typed secret may carry a password.
            log.exception("command failed in the simulator", device=self._device.name,
                          platform=self._device.platform.name,
                          command=line.split(" ", 1)[0][:40] if self._shell.echo else "")
            return Reply("% Internal simulator error" + NL + self._shell.prompt_block())

    def _hangs(self, line: str, pattern: str | None, probability: float) -> bool:
        if pattern and re.search(pattern, line):
            return True
        return bool(probability) and self._rng.random() < probability

    def _delayed(self, line: str) -> None:
        self._busy, self._timer = False, None
        if self._chan is None:
            return
        self._reply(self._handle(line))
        self._drain()

    def _reply(self, reply: Reply) -> None:
        self._server.stats.commands += 1
        if reply.text:
            self._write(reply.text)
        if reply.close:
            self._close()

    def _run_exec(self, command: str) -> None:
        """`ssh device "show version"`: one command in the enabled mode, then close."""
        self._shell.mode = next(
            (m for m in ("privileged", "operational") if m in self._shell.platform.modes),
            self._shell.platform.initial_mode)
        self._shell.length = 0
        reply = self._shell.handle_line(command)
        text = reply.text
        prompt = self._shell.prompt_block()
        if text.endswith(prompt):
            text = text[: -len(prompt)]
        self._write(text)
        self._close()

    # -- output ----------------------------------------------------------------------------
    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch:
            self._write("".join(batch))
        self._batch = [] if batch is not None else None

    def _write(self, text: str) -> None:
        if self._batch is not None:
            self._batch.append(text)
        elif self._chan is not None and not self._chan.is_closing():
            self._chan.write(text.encode("utf-8", "replace"))

    def _close(self) -> None:
        self._flush()
        if self._chan is not None:
            chan, self._chan = self._chan, None
            chan.exit(0)

    def _drop(self) -> None:
        """The device goes away mid-session: the TCP connection is cut, no SSH goodbye."""
        if self._chan is not None:
            conn = self._chan.get_connection()
            self._chan = None
            self._server.stats.drops += 1
            conn.abort()
