"""DeviceActor: owns one device's sessions and runs its work.

Changes (config jobs, and reads that ask for `ordered`) run strictly one after another in
submission order; plain reads run beside them on another session, up to the per-device session
limit. Nothing runs while idle: the actor is woken by work and by finished work.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from netfleet.domain.errors import (
    CommandRejected,
    ConnectError,
    DeviceError,
    NetfleetError,
    SessionLost,
)
from netfleet.domain.jobs import CommandOutput, DeviceResult, DeviceTask, JobKind, Status
from netfleet.engine import facts as facts_mod

if TYPE_CHECKING:
    from netfleet.domain.ports import Session, Target
    from netfleet.engine.engine import Engine

log = structlog.get_logger("netfleet.engine")

MASK = "********"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Slot:
    """One session to the device, open or not yet opened."""

    session: Session | None = None
    target: Target | None = None  # what the session was opened with
    busy: bool = False
    last_used: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class Entry:
    task: DeviceTask
    result: DeviceResult
    runner: asyncio.Task[None] | None = None


class DeviceActor:
    def __init__(self, name: str, engine: Engine) -> None:
        self.name = name
        self.engine = engine
        self.ordered: deque[Entry] = deque()
        self.reads: deque[Entry] = deque()
        self.running: set[Entry] = set()
        self.slots: list[Slot] = []
        self._ordered_running = False
        self._connect_failures = 0
        self._next_connect = 0.0

    # -- queueing --------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self.ordered) + len(self.reads)

    @property
    def idle(self) -> bool:
        return not self.pending and not self.running

    def submit(self, entry: Entry) -> None:
        (self.ordered if entry.task.is_change or entry.task.ordered else self.reads).append(entry)
        self._pump()

    def cancel(self, job_ids: Collection[str]) -> int:
        cancelled = 0
        for lane in (self.ordered, self.reads):
            for entry in [e for e in lane if e.task.job_id in job_ids]:
                lane.remove(entry)
                self._finish(entry, Status.CANCELLED, "cancelled", "cancelled before it ran")
                cancelled += 1
        for entry in list(self.running):
            if entry.task.job_id in job_ids and entry.runner is not None:
                entry.runner.cancel()
                cancelled += 1
        return cancelled

    def _pump(self) -> None:
        """Start what can start: the next change if none is running, reads on free slots."""
        while True:
            slot = self._free_slot()
            if slot is None:
                return
            if self.ordered and not self._ordered_running:
                entry, ordered = self.ordered.popleft(), True
            elif self.reads:
                entry, ordered = self.reads.popleft(), False
            else:
                return
            slot.busy = True
            self._ordered_running |= ordered
            self.running.add(entry)
            entry.runner = asyncio.create_task(self._run(entry, slot, ordered),
                                               name=f"netfleet-{self.name}-{entry.task.job_id}")

    def _free_slot(self) -> Slot | None:
        for slot in self.slots:
            if not slot.busy:
                return slot
        if len(self.slots) < self.engine.limits.per_device_sessions:
            slot = Slot()
            self.slots.append(slot)
            return slot
        return None

    # -- running ---------------------------------------------------------------------------
    async def _run(self, entry: Entry, slot: Slot, ordered: bool) -> None:
        task, result = entry.task, entry.result
        try:
            async with self.engine.gate:
                result.status, result.started_at = Status.RUNNING, now()
                self.engine.report(result)
                async with asyncio.timeout(task.timeout):
                    await self._attempt(entry, slot)
        except TimeoutError:
            await self._discard(slot)  # a late prompt would desync the next command
            self._finish(entry, Status.TIMED_OUT, "timeout",
                         f"no result within the job timeout of {task.timeout:g}s")
        except asyncio.CancelledError:
            await self._discard(slot)
            self._finish(entry, Status.CANCELLED, "cancelled", "cancelled while running")
        except DeviceError as exc:
            if not isinstance(exc, CommandRejected):
                await self._discard(slot)
            self._finish(entry, Status.FAILED, exc.category, exc.message)
        except NetfleetError as exc:
            self._finish(entry, Status.FAILED, exc.category, exc.message)
        except Exception as exc:  # a bug must cost one result, never the actor
            log.exception("device task failed unexpectedly", device=self.name,
                          job=task.job_id)
            await self._discard(slot)
            self._finish(entry, Status.FAILED, "internal", f"{type(exc).__name__}: {exc}")
        else:
            self._finish(entry, Status.SUCCEEDED)
        finally:
            slot.busy, slot.last_used = False, time.monotonic()
            self.running.discard(entry)
            if ordered:
                self._ordered_running = False
            self._pump()
            self.engine.actor_settled(self)

    async def _attempt(self, entry: Entry, slot: Slot) -> None:
        """Run the task; a reused session that turns out dead is reopened once (attempt 2)."""
        target = await self.engine.deps.resolve(self.name)
        for attempt in (1, 2):
            entry.result.attempt = attempt
            reused = _usable(slot, target)
            session = await self._session(slot, target)
            entry.result.session_reused = reused
            try:
                await self._perform(entry, session, target)
                return
            except (SessionLost, ConnectError):
                await self._discard(slot)
                if not reused or attempt == 2 or entry.result.outputs:
                    raise
                log.info("stale session; reconnecting", device=self.name)

    async def _session(self, slot: Slot, target: Target) -> Session:
        if _usable(slot, target):
            assert slot.session is not None
            return slot.session
        if slot.session is not None:  # dead, or opened with an address or login since changed
            await self._discard(slot)
        wait = self._next_connect - time.monotonic()
        if wait > 0:  # back off after failed connects instead of hammering the device
            await asyncio.sleep(wait)
        driver = self.engine.deps.driver_for(target)
        try:
            slot.session = await driver.open(target)
            slot.target = target
        except DeviceError:
            self._connect_failures += 1
            backoff = min(self.engine.limits.reconnect_backoff_max,
                          0.5 * 2 ** (self._connect_failures - 1))
            self._next_connect = time.monotonic() + backoff
            raise
        self._connect_failures, self._next_connect = 0, 0.0
        self.engine.sessions_opened += 1
        return slot.session

    async def _discard(self, slot: Slot) -> None:
        session, slot.session = slot.session, None
        if session is not None:
            try:
                await asyncio.wait_for(session.close(), 5)
            except Exception:
                log.debug("session close failed", device=self.name)

    async def _perform(self, entry: Entry, session: Session, target: Target) -> None:
        task, result = entry.task, entry.result
        secrets = target.secrets()
        if task.kind is JobKind.COMMAND:
            for command in task.commands:
                raw = _mask(await session.send_command(command), secrets)
                result.outputs.append(self.engine.parsed(target.platform, command, raw,
                                                         task.parse))
        elif task.kind is JobKind.FACTS:
            command = facts_mod.facts_command(target.platform)
            raw = _mask(await session.send_command(command), secrets)
            output = self.engine.parsed(target.platform, command, raw, None)
            result.outputs.append(output)
            result.facts = facts_mod.extract(target.platform, output.parsed or [])
        elif task.dry_run:
            running = await session.running_config()
            result.diff = self.engine.diff(running, task.lines, target.platform)
        else:
            try:
                out = await session.send_config(task.lines)
            except CommandRejected as exc:
                result.outputs.append(CommandOutput(command=_mask(exc.command, secrets),
                                                    output=_mask(exc.output, secrets)))
                raise
            result.outputs.append(CommandOutput(command=_mask("\n".join(task.lines), secrets),
                                                output=_mask(out, secrets)))
            if task.save:
                result.outputs.append(CommandOutput(command="save", output=_mask(
                    await session.save(), secrets)))

    def _finish(self, entry: Entry, status: Status, category: str | None = None,
                message: str | None = None) -> None:
        result = entry.result
        result.status, result.category, result.message = status, category, message
        result.finished_at = now()
        self.engine.report(result)

    # -- idle sessions ---------------------------------------------------------------------
    async def close_idle(self, older_than: float) -> None:
        cutoff = time.monotonic() - older_than
        for slot in list(self.slots):
            if not slot.busy and slot.last_used < cutoff:
                await self._discard(slot)
                self.slots.remove(slot)

    async def close(self) -> None:
        for entry in list(self.running):
            if entry.runner is not None:
                entry.runner.cancel()
        for slot in list(self.slots):
            if not slot.busy:
                await self._discard(slot)

    @property
    def open_sessions(self) -> int:
        return sum(1 for s in self.slots if s.session is not None and s.session.alive)


def _usable(slot: Slot, target: Target) -> bool:
    """The slot's session is alive and logged in the way the inventory now says: a changed
    host, port, driver or credential closes it and the next job logs in anew."""
    return slot.session is not None and slot.session.alive and slot.target == target


def _mask(text: str, secrets: list[str]) -> str:
    """A device that echoes a password (some do, in config) must not leak it into results."""
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text
