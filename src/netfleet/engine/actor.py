"""DeviceActor: owns one device's sessions and runs its work.

Changes (config jobs, and reads that ask for `ordered`) run strictly one after another in
submission order; plain reads run beside them on another session, up to the per-device session
limit. Nothing runs while idle: the actor is woken by work and by finished work.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from netfleet.domain.errors import (
    CommandRejected,
    ConnectError,
    DeviceError,
    NetfleetError,
    SessionLost,
)
from netfleet.domain.jobs import CommandOutput, DeviceResult, DeviceTask, JobKind, Status
from netfleet.domain.telemetry import Profile
from netfleet.engine import facts as facts_mod
from netfleet.engine.metrics import DeviceMetrics

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


@dataclass(eq=False)
class Poller:
    """One telemetry profile polled on this device at a fixed rate."""

    profile: Profile
    metrics: DeviceMetrics
    schedule: asyncio.Task[None] | None = None
    in_flight: bool = False  # a poll is queued or running: the next tick is an overrun
    stopped: bool = False  # replaced or removed: the schedule ends after any poll it runs


@dataclass(eq=False)
class PollEntry:
    """A poll waiting in the reads lane: it takes a session slot as a read job does."""

    poller: Poller
    runner: asyncio.Task[None] | None = None


class DeviceActor:
    def __init__(self, name: str, engine: Engine) -> None:
        self.name = name
        self.engine = engine
        self.ordered: deque[Entry] = deque()
        self.reads: deque[Entry | PollEntry] = deque()
        self.running: set[Entry | PollEntry] = set()
        self.polls: dict[str, Poller] = {}  # by profile name
        self.slots: list[Slot] = []
        self._ordered_running = False
        self._closed = False
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
        self.engine.queued += 1
        self._pump()

    def cancel(self, job_ids: Collection[str]) -> int:
        cancelled = 0
        for entry in [e for e in self.ordered if e.task.job_id in job_ids]:
            self.ordered.remove(entry)
            self.engine.queued -= 1
            self._finish(entry, Status.CANCELLED, "cancelled", "cancelled before it ran")
            cancelled += 1
        for read in [e for e in self.reads
                     if isinstance(e, Entry) and e.task.job_id in job_ids]:
            assert isinstance(read, Entry)
            self.reads.remove(read)
            self.engine.queued -= 1
            self._finish(read, Status.CANCELLED, "cancelled", "cancelled before it ran")
            cancelled += 1
        for running in list(self.running):
            if isinstance(running, Entry) and running.task.job_id in job_ids \
                    and running.runner is not None:
                running.runner.cancel()
                cancelled += 1
        return cancelled

    def _pump(self) -> None:
        """Start what can start: the next change if none is running, reads on free slots."""
        while not self._closed:
            slot = self._free_slot()
            if slot is None:
                return
            entry: Entry | PollEntry
            if self.ordered and not self._ordered_running:
                entry, ordered = self.ordered.popleft(), True
            elif self.reads:
                entry, ordered = self.reads.popleft(), False
            else:
                return
            self.engine.queued -= 1
            slot.busy = True
            self._ordered_running |= ordered
            self.running.add(entry)
            if isinstance(entry, PollEntry):
                entry.runner = asyncio.create_task(
                    self._poll(entry, slot),
                    name=f"netfleet-{self.name}-poll-{entry.poller.profile.name}")
            else:
                entry.runner = asyncio.create_task(
                    self._run(entry, slot, ordered),
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
            await self._wait_backoff()  # outside the gate: a failing device holds no slot
            async with self.engine.gate:
                result.status, result.started_at = Status.RUNNING, now()
                result.attempt = task.attempt
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
            # A task taken over from an agent that died with it arrives as attempt 2 or more.
            entry.result.attempt = entry.task.attempt - 1 + attempt
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

    async def _wait_backoff(self) -> None:
        """After failed logins, wait out the backoff before the next attempt."""
        wait = self._next_connect - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

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

    # -- telemetry polling -----------------------------------------------------------------
    def set_polls(self, profiles: Collection[Profile]) -> None:
        """Poll exactly these profiles from now on. An unchanged profile keeps its schedule and
        its counters (so rates carry on); a changed one starts afresh."""
        wanted = {p.name: p for p in profiles}
        for name, poller in list(self.polls.items()):
            if wanted.get(name) != poller.profile:
                self._stop_poller(poller)
                del self.polls[name]
        for name, profile in wanted.items():
            if name not in self.polls:
                poller = Poller(profile, DeviceMetrics(self.name, profile))
                poller.schedule = asyncio.create_task(
                    self._schedule(poller), name=f"netfleet-{self.name}-schedule-{name}")
                self.polls[name] = poller

    def _stop_poller(self, poller: Poller) -> None:
        """End a poller's schedule. A poll it is running right now finishes first: cutting
        it off would close the device's session and cost a login."""
        poller.stopped = True
        for queued in [e for e in self.reads
                       if isinstance(e, PollEntry) and e.poller is poller]:
            self.reads.remove(queued)
            self.engine.queued -= 1
        inline = any(isinstance(e, PollEntry) and e.poller is poller
                     and e.runner is poller.schedule for e in self.running)
        if poller.schedule is not None and not inline:
            poller.schedule.cancel()

    async def _schedule(self, poller: Poller) -> None:
        """Fixed rate on the wall clock: ticks at phase + k·interval, where the phase is a
        stable function of device and profile. Devices spread evenly over the interval (no
        herd at start), a slow poll never shifts the ones after it (no drift), and a tick
        that finds the last poll still queued or running is skipped and counted (an overrun),
        so a slow device never builds a backlog. While the recorder is behind, only every
        n-th tick polls (`Engine.poll_stretch`); the others are counted as throttled."""
        interval = poller.profile.interval
        seed = zlib.crc32(f"{self.name}\0{poller.profile.name}".encode())
        phase = seed / 2**32 * interval
        tick = (math.floor((time.time() - phase) / interval) + 1) * interval + phase
        while not poller.stopped:
            await asyncio.sleep(max(0.0, tick - time.time()))
            if poller.in_flight:
                self.engine.poll_stats.overruns += 1
            elif round((tick - phase) / interval) % self.engine.poll_stretch():
                self.engine.poll_stats.throttled += 1  # the recorder is behind: poll less
            else:
                poller.in_flight = True
                entry = PollEntry(poller)
                slot = self._slot_for_poll()
                if slot is None:  # busy: wait in the reads lane, in turn with jobs
                    self.reads.append(entry)
                    self.engine.queued += 1
                    self._pump()
                else:  # nothing waiting and a session free: poll right here, no extra task
                    slot.busy = True
                    self.running.add(entry)
                    entry.runner = asyncio.current_task()
                    await self._poll(entry, slot)
            tick += interval
            behind = time.time() - tick
            if behind > 0:  # the loop itself fell behind (a suspended laptop, say)
                missed = math.floor(behind / interval) + 1
                self.engine.poll_stats.overruns += missed
                tick += missed * interval

    def _slot_for_poll(self) -> Slot | None:
        """A free slot a poll may take at once: none while work is queued (it goes first)."""
        if self.reads or (self.ordered and not self._ordered_running):
            return None
        return self._free_slot()

    async def _poll(self, entry: PollEntry, slot: Slot) -> None:
        poller = entry.poller
        profile = poller.profile
        engine = self.engine
        started = time.perf_counter()
        try:
            await self._wait_backoff()  # outside the gate: a failing device holds no slot
            async with engine.gate, asyncio.timeout(poll_timeout(profile)):
                target = await engine.deps.resolve(self.name)
                session = await self._session(slot, target)
                at = time.time()
                parsed: list[list[dict[str, Any]] | None] = []
                for command in profile.commands:
                    try:
                        raw = await session.send_command(command.command)
                    except CommandRejected:
                        parsed.append(None)  # that command's metrics are missing this round
                        continue
                    parsed.append(engine.parse_rows(target.platform, command.command, raw,
                                                    command.parse))
            samples = poller.metrics.observe(at, parsed)
        except TimeoutError:
            await self._discard(slot)  # a late prompt would desync the next command
            engine.polled(self.name, profile.name, [], "timeout",
                          f"no answer within {poll_timeout(profile):g}s")
        except asyncio.CancelledError:
            await self._discard(slot)
            raise
        except DeviceError as exc:
            await self._discard(slot)
            engine.polled(self.name, profile.name, [], exc.category, exc.message)
        except NetfleetError as exc:
            engine.polled(self.name, profile.name, [], exc.category, exc.message)
        except Exception as exc:  # a bug must cost one poll, never the actor
            log.exception("poll failed unexpectedly", device=self.name, profile=profile.name)
            await self._discard(slot)
            engine.polled(self.name, profile.name, [], "internal",
                          f"{type(exc).__name__}: {exc}")
        else:
            engine.polled(self.name, profile.name, samples, None, None)
        finally:
            engine.poll_stats.seconds += time.perf_counter() - started
            poller.in_flight = False
            slot.busy, slot.last_used = False, time.monotonic()
            self.running.discard(entry)
            self._pump()
            self.engine.actor_settled(self)

    # -- idle sessions ---------------------------------------------------------------------
    async def close_idle(self, older_than: float) -> None:
        cutoff = time.monotonic() - older_than
        for slot in list(self.slots):
            if not slot.busy and slot.last_used < cutoff:
                await self._discard(slot)
                self.slots.remove(slot)

    async def close(self) -> None:
        """Stop everything and wait until it has stopped: queued jobs end cancelled, running
        ones are cancelled, polls and their schedules end, and every session is closed.
        Nothing starts afterwards (a finishing job's `_pump` finds the actor closed)."""
        self._closed = True
        stopping: list[asyncio.Task[None]] = []
        for poller in self.polls.values():
            if poller.schedule is not None:
                poller.schedule.cancel()
                stopping.append(poller.schedule)
        self.polls.clear()
        for lane in (self.ordered, self.reads):
            for queued in list(lane):
                if isinstance(queued, Entry):
                    self._finish(queued, Status.CANCELLED, "cancelled",
                                 "netfleet stopped before it ran")
            self.engine.queued -= len(lane)
            lane.clear()
        for entry in list(self.running):
            if entry.runner is not None:
                entry.runner.cancel()
                stopping.append(entry.runner)
        current = asyncio.current_task()
        await asyncio.gather(*(t for t in stopping if t is not current), return_exceptions=True)
        for slot in list(self.slots):
            await self._discard(slot)

    @property
    def open_sessions(self) -> int:
        return sum(1 for s in self.slots if s.session is not None and s.session.alive)


def poll_timeout(profile: Profile) -> float:
    """How long one poll may take. Not the interval: a poll slowed by load is better late
    (the ticks it spans are skipped as overruns) than cut off, which would close the session
    and cost a login — under load that turns into a storm of logins."""
    return max(30.0, profile.interval)


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
