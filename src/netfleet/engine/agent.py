"""The agent: owns partitions of devices and runs their work on an Engine.

An agent joins the membership, and owns the partitions that rendezvous hashing gives it over
the live agents, each under a lease (TTL, fencing token). For a partition it owns it

1. loads the partition's desired state (targets, telemetry assignments) and follows its change
   stream, so its actors poll what they should and reach their devices;
2. takes over the work stream's pending entries (work a previous owner had read and not
   finished: re-run as the next attempt, or failed after MAX_ATTEMPTS), in order, and only then
   reads new entries — so a device's changes run in submission order across a handover;
3. sends every result and poll outcome back as observations, and acknowledges a work entry
   once its final result is in Redis.

A new owner acquires a lease only once the old one is gone (released or expired), so no
device is polled or changed by two agents. An agent that must give a partition up (another
agent joined) stops reading it, lets the work it holds finish, then releases the lease.

An agent counts its lease as its own only until its own deadline: when it last sent a
renewal that succeeded, plus the TTL, less a margin (its clock, so never later than Redis's
expiry). Past that deadline it reads, acknowledges and reports nothing more for the
partition, and drops its work, whether or not it has heard from Redis: a stalled or cut-off
agent stops before another can take over. A read blocks only for as long as the deadline
allows, and the new owner takes over twice: at once, and again after any read an old owner
still had in flight must have returned (SETTLE), for what that read got. Then it reads new
work. Agents need Redis and the secret key, never the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import structlog
from cryptography.fernet import Fernet, InvalidToken

from netfleet.backends import keys
from netfleet.backends.base import Backend, Message
from netfleet.backends.partitions import owned, partition_of
from netfleet.domain.errors import BackendUnavailable, InvalidInput, NetfleetError, Overloaded
from netfleet.domain.jobs import DeviceResult, DeviceTask, Status
from netfleet.domain.ports import Target
from netfleet.domain.telemetry import Profile
from netfleet.engine import wire
from netfleet.engine.actor import now
from netfleet.engine.engine import Engine, EngineDeps, PollOutcome

log = structlog.get_logger("netfleet.agent")

MAX_ATTEMPTS = 3  # deliveries of one task before it is failed instead of run again
READ_BATCH = 500  # work entries read per partition per call
FLUSH_INTERVAL = 0.2  # seconds poll outcomes gather before they are sent (results: at once)
MAX_BUFFER = 200_000  # observations held while Redis is unreachable; past it polls are dropped
BACKLOG_LIMIT = 500_000  # observations waiting for recorders, all partitions, before polls stop
STATE_RELOAD = 300.0  # seconds between full reloads of a partition's desired state
BATCH_ITEMS = 500  # observations per stream entry at most
TRIM_INTERVAL = 10.0  # seconds between trims of the owned work streams
READ_BLOCK = 0.5  # seconds a work read waits for new entries, at most
SETTLE = READ_BLOCK + 0.5  # seconds between a new owner's two takeovers
LAG_PROBE = 0.1  # seconds between looks at how late the event loop runs
LAG_WARN_EVERY = 10.0  # seconds: late probes between warnings are counted in the next one
HANDOVER_WAIT = 10.0  # seconds held work may take to finish before a hand-over cancels it

_Out = tuple[int, int, dict[str, Any], str | None]


@dataclass
class _Partition:
    number: int
    token: int
    deadline: float  # monotonic; ours until then at least (renewal sent + TTL)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> state entry
    position: str = "0-0"  # last change applied
    taken: bool = False  # earlier owners' pending work taken over (the first time)
    reading: bool = False  # new work is read (after both takeovers)
    leaving: bool = False  # being handed to another agent: read nothing more
    loaded_at: float = field(default_factory=time.monotonic)
    loading: asyncio.Task[None] | None = None  # a reload of the snapshot under way


@dataclass(slots=True)
class AgentStats:
    tasks: int = 0
    taken_over: int = 0  # tasks re-run after their agent stopped with them
    abandoned: int = 0  # tasks failed after MAX_ATTEMPTS deliveries
    sent: int = 0  # observations added to Redis
    dropped: int = 0  # poll observations dropped: Redis unreachable and the buffer full
    handovers: int = 0  # partitions acquired
    lost: int = 0  # partitions dropped: the lease ran out or another agent holds it
    loop_lag_max: float = 0.0  # the event loop's worst lateness, seconds (a loop late by
    # more than the lease margin loses leases)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("agent task failed", task=task.get_name(),
                  error=f"{type(exc).__name__}: {exc}")


def agent_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Agent:
    def __init__(self, backend: Backend, engine_factory: Callable[[EngineDeps], Engine], *,
                 secret: bytes, partitions: int = 64, lease_ttl: float = 10.0,
                 name: str | None = None, parser: Any = None, driver_for: Any = None,
                 differ: Any = None,
                 lease_backend: Callable[[], Backend] | None = None,
                 downstream: Callable[[], float] | None = None) -> None:
        self.backend = backend
        # In-process, the recorder acknowledges what it has applied: how full the buffers
        # it applied to are (0..1) is then the back-pressure the stream's backlog was.
        self._downstream = downstream
        # Given, leases are renewed by a thread of their own through a backend it makes: an
        # event loop busy with parsing or a login storm then cannot make them run out.
        self._lease_backend = lease_backend
        self._renewer: threading.Thread | None = None
        self.name = name or agent_name()
        self.partitions = partitions
        self.lease_ttl = lease_ttl
        self.key = Fernet(secret)
        self.stats = AgentStats()
        self.engine = engine_factory(EngineDeps(
            resolve=self.resolve, driver_for=driver_for, on_result=self._on_result,
            on_poll=self._on_poll, poll_pressure=self.pressure, parser=parser, differ=differ))
        self.owned: dict[int, _Partition] = {}
        self._targets: dict[str, tuple[str, Target]] = {}  # device -> (sealed, opened)
        # Each task handed to the engine is a run with an id of its own, so that what a run
        # dropped with a lost lease reports later (its partition maybe ours again, the same
        # job taken over and run anew) is told apart and ignored.
        self._runs: dict[str, tuple[str, int, str]] = {}  # run -> (job, partition, entry)
        self._work: dict[str, str] = {}  # child job id -> its run now
        self._run_ids = itertools.count(1)
        # Observations to send: (partition, lease token, observation, work entry to ack).
        self._out: deque[_Out] = deque()
        # Work entries done, to acknowledge: by (partition, lease token) they were read under.
        self._acks: dict[tuple[int, int], list[str]] = {}
        self._reading: set[int] = set()  # partitions a work read in flight asks for
        # Before its deadline less this margin a lease is surely ours (renewals every TTL/4).
        self._margin = min(2.0, lease_ttl * 0.2)
        self._wake = asyncio.Event()  # observations to send
        self._urgent = asyncio.Event()  # among them a result or an acknowledgement
        self._progress = asyncio.Event()  # work finished or observations went out
        self._flushing = asyncio.Lock()
        self._backlog = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._closed = False  # stop's end: every loop ends (cancellation may be swallowed)
        self._muted = False  # stopping: report nothing more
        self._members: list[str] = []
        self._profiles: dict[str, tuple[Any, list[Profile]]] = {}  # device -> (raw, read)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self.partitions = await self._retry(
            lambda: self.backend.init_cluster(self.partitions), "joining the cluster")
        self._tasks = [
            asyncio.create_task(self._supervise(self._membership, "membership")),
            asyncio.create_task(self._supervise(self._expire, "deadlines")),
            asyncio.create_task(self._supervise(self._read_work, "work")),
            asyncio.create_task(self._supervise(self._follow_state, "state")),
            asyncio.create_task(self._supervise(self._send, "observations")),
            asyncio.create_task(self._supervise(self._watch_backlog, "backlog")),
            asyncio.create_task(self._supervise(self._watch_loop, "loop")),
        ]
        if self._lease_backend is None:
            self._tasks.append(asyncio.create_task(self._supervise(self._renew, "leases")))
        else:
            self._renewer = threading.Thread(
                target=asyncio.run, args=(self._renew_apart(asyncio.get_running_loop()),),
                name=f"netfleet-leases-{self.name}", daemon=True)
            self._renewer.start()
        log.info("agent started", agent=self.name, partitions=self.partitions,
                 lease_ttl=self.lease_ttl)

    async def stop(self, drain: float = 30.0) -> None:
        """Stop reading, let held work finish (up to `drain` seconds), send what is left, give
        every lease back and leave. Work not finished stays pending for the next owner."""
        self._stopping = True
        for part in self.owned.values():
            part.leaving = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain):
                await self._until(lambda: not self._runs)
        # What is still held stays pending for the next owner: cancelling it must not
        # report it cancelled (acknowledged, it would never run).
        self._muted = True
        self.engine.set_polls({})
        await self.engine.close()
        with contextlib.suppress(TimeoutError, BackendUnavailable):
            async with asyncio.timeout(10):
                while self._out:
                    await self._flush()
        await self._cancel_all()
        with contextlib.suppress(BackendUnavailable):
            for part in list(self.owned.values()):
                await self.backend.release(keys.work_lease(part.number), self.name, part.token)
            await self.backend.leave(keys.AGENTS, self.name)
        self.owned.clear()
        log.info("agent stopped", agent=self.name)

    async def abort(self) -> None:
        """Stop at once, as a crash would: nothing drained, sent, released or left; the
        leases run out and the next owners take the pending work over. For tests and drills."""
        self._stopping = self._muted = True
        await self._cancel_all()
        await self.engine.close()
        self.owned.clear()

    async def _cancel_all(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: a library may swallow a cancellation
            await asyncio.wait(self._tasks, timeout=5)
        if self._renewer is not None:  # ends within TTL/4 of _closed
            await asyncio.to_thread(self._renewer.join, self.lease_ttl + 5)

    async def _supervise(self, work: Callable[[], Any], what: str) -> None:
        """Run a loop; a crash is logged and the loop starts again after a backoff (until the
        loop returns, or the agent is closed)."""
        backoff = 0.2
        while not self._closed:
            started = time.monotonic()
            try:
                await work()
                return
            except asyncio.CancelledError:
                raise
            except BackendUnavailable as exc:
                log.warning("backend unavailable; retrying", loop=what, error=exc.message)
            except Exception:
                log.exception("agent loop crashed; restarting", loop=what)
            if time.monotonic() - started > 10:
                backoff = 0.2
            await asyncio.sleep(backoff)
            backoff = min(5.0, backoff * 2)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """A task of the agent's own (cancelled on stop); finished ones are forgotten."""
        self._tasks = [t for t in self._tasks if not t.done()]
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(_log_failure)
        self._tasks.append(task)

    async def _retry(self, call: Callable[[], Any], what: str) -> Any:
        backoff = 0.2
        while True:
            try:
                return await call()
            except BackendUnavailable as exc:
                log.warning("backend unavailable; retrying", doing=what, error=exc.message)
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)

    # -- membership and partitions ---------------------------------------------------------
    async def _renew(self) -> None:
        """Renew every lease we hold, every TTL/4, all at once: a loop of its own, one round
        trip per turn (behind the membership's steps, a busy event loop delayed renewals
        past their deadline)."""
        while not self._closed:
            await self._renew_once(self.backend, lambda call: call())
            await asyncio.sleep(self.lease_ttl / 4)

    async def _renew_apart(self, loop: asyncio.AbstractEventLoop) -> None:
        """`_renew` in the lease thread, with a backend of its own. What it finds lost is
        dropped on the agent's loop."""
        backend = cast(Callable[[], Backend], self._lease_backend)()
        try:
            while not self._closed:
                try:
                    await self._renew_once(backend, loop.call_soon_threadsafe)
                except BackendUnavailable as exc:
                    log.warning("backend unavailable; retrying", loop="leases",
                                error=exc.message)
                except Exception:
                    log.exception("renewing leases failed; retrying")
                until = time.monotonic() + self.lease_ttl / 4
                # A flag set from the other thread: no asyncio.Event is shared across loops.
                while not self._closed and time.monotonic() < until:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            await backend.close()

    async def _renew_once(self, backend: Backend,
                          on_loop: Callable[[Callable[[], Any]], Any]) -> None:
        held = list(self.owned.values())  # (one C call: safe from the lease thread)
        sent = time.monotonic()
        renewed = await asyncio.gather(*(
            backend.renew(keys.work_lease(p.number), self.name, p.token, self.lease_ttl)
            for p in held))
        for part, ok in zip(held, renewed, strict=True):
            mine = self.owned.get(part.number) is part
            if ok and mine and self.alive(part):
                part.deadline = sent + self.lease_ttl
            elif ok and not mine:  # dropped at its deadline meanwhile: for the next owner
                await backend.release(keys.work_lease(part.number), self.name, part.token)
            elif ok:  # past its deadline: dropped now (released at the next turn)
                on_loop(partial(self._holding, part))
            elif mine:
                on_loop(partial(self._lost_if_mine, part, "another agent holds it"))

    async def _membership(self) -> None:
        """Heartbeat, and move towards owning what rendezvous gives us. Stopping, it takes
        nothing more (the leases held are renewed on: held work finishes under them)."""
        while not self._closed:
            await self.backend.heartbeat(keys.AGENTS, self.name, self.lease_ttl)
            self._members = await self.backend.members(keys.AGENTS)
            if not self._stopping:
                wanted = owned(self.name, self._members, self.partitions)
                leaving = [self.owned[n] for n in sorted(set(self.owned) - wanted)
                           if not self.owned[n].leaving]
                for part in leaving:
                    part.leaving = True
                    self._spawn(self._hand_over(part), f"netfleet-handover-{part.number}")
                if leaving:
                    self._replan()  # its devices are polled by the next owner from now on
                await asyncio.gather(*(self._acquire(number)
                                       for number in sorted(wanted - set(self.owned))))
            await asyncio.sleep(self.lease_ttl / 4)

    async def _acquire(self, number: int) -> None:
        sent = time.monotonic()
        token = await self.backend.acquire(keys.work_lease(number), self.name, self.lease_ttl)
        if token is None or self._stopping or number in self.owned:
            if token is not None:
                await self.backend.release(keys.work_lease(number), self.name, token)
            return
        part = _Partition(number, token, sent + self.lease_ttl)
        self.owned[number] = part  # renewed from now on, while it is taken
        self.stats.handovers += 1
        self._spawn(self._take(part), f"netfleet-take-{number}")

    async def _take(self, part: _Partition) -> None:
        """A partition is ours: load its state, re-run what its last owner left, read on."""
        number = part.number
        try:
            await self._load(part)
            stream = keys.work(number)
            left = await self.backend.takeover(keys.WORK_GROUP, self.name, stream)
            if self.owned.get(number) is not part:
                return
            self._handle(part, left)
            part.taken = True
            # A read the old owner (or we, under an earlier lease) had in flight may have got
            # entries since: once it must have returned, take those over too, then read on.
            await asyncio.sleep(SETTLE)
            if self.owned.get(number) is not part:
                return
            late = await self.backend.takeover(keys.WORK_GROUP, self.name, stream,
                                               skip={m.id for m in left})
        except Exception as exc:
            if self.owned.get(number) is part:
                self._lost(part, f"taking it failed: {type(exc).__name__}: {exc}")
                with contextlib.suppress(BackendUnavailable):
                    await self.backend.release(keys.work_lease(number), self.name, part.token)
            return
        if self.owned.get(number) is not part:
            return
        self._handle(part, late)
        part.reading = True
        # In one process (the memory backend) the agent owns every partition from the start:
        # 64 lines that say nothing at every `netfleet up`.
        say = log.debug if self.backend.name == "memory" else log.info
        say("partition acquired", agent=self.name, partition=number, token=part.token,
            devices=len(part.devices), taken_over=len(left) + len(late))

    async def _hand_over(self, part: _Partition) -> None:
        """Another agent should own this partition: finish what we hold (for HANDOVER_WAIT
        at most), then let go. New work for it waits unread meanwhile, so held work that
        takes longer is cancelled: it stays pending, and the new owner runs it again (the
        next attempt) before what followed it."""
        # A read in flight may still bring work for it: that work is ours to finish too.
        await self._until(lambda: part.number not in self._reading)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HANDOVER_WAIT):
                await self._until(lambda: not self._work_of(part.number))
        if self.owned.get(part.number) is not part:
            return
        if runs := self._drop_work(part.number):
            log.info("held work cancelled to hand a partition over; its next owner runs it",
                     agent=self.name, partition=part.number, runs=len(runs))
        await self._until(lambda: (part.number, part.token) not in self._acks
                          and not any(o[0] == part.number for o in self._out))
        if self.owned.get(part.number) is not part:  # lost while its results went out
            return
        del self.owned[part.number]
        self._replan()
        with contextlib.suppress(BackendUnavailable):  # unreleased, it runs out in a TTL
            await self.backend.release(keys.work_lease(part.number), self.name, part.token)
        log.info("partition handed over", agent=self.name, partition=part.number)

    async def _until(self, done: Callable[[], bool]) -> None:
        """Wait until `done()`, checked whenever work finishes or observations go out."""
        while not done():
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), 0.5)

    def _work_of(self, number: int) -> list[str]:
        """The runs held for a partition."""
        return [run for run, (_, p, _) in self._runs.items() if p == number]

    def _forget(self, run: str) -> None:
        job, _, _ = self._runs.pop(run)
        if self._work.get(job) == run:
            del self._work[job]

    def alive(self, part: _Partition, ahead: float = 0.0) -> bool:
        """Is the lease surely still ours (`ahead` seconds from now)?"""
        return time.monotonic() + ahead < part.deadline - self._margin

    def _holding(self, part: _Partition) -> bool:
        """Is `part` still ours? One found past its deadline is dropped there and then, by
        whoever finds it: a renewal that comes back later must not revive it, or a result
        dropped for it would leave its entry pending behind work run after it (an older
        change run again after a newer one, by the next owner)."""
        if self.owned.get(part.number) is not part:
            return False
        if not self.alive(part):
            self._lost(part, "not renewed in time")
            return False
        return True

    async def _expire(self) -> None:
        """Drop a partition whose lease was not renewed in time, without waiting to hear from
        Redis: past its deadline another agent may own it."""
        while not self._closed:
            for part in list(self.owned.values()):
                self._holding(part)
            await asyncio.sleep(min(0.25, self.lease_ttl / 8))

    def _lost_if_mine(self, part: _Partition, why: str) -> None:
        if self.owned.get(part.number) is part:
            self._lost(part, why)

    def _lost(self, part: _Partition, why: str) -> None:
        """Our lease ran out (we stalled, or Redis was away): another agent may own the
        partition already. Drop its work without reporting anything more for it; the work
        stays pending for whoever owns the partition next (maybe us again)."""
        log.warning("partition lease lost; dropping its work", agent=self.name,
                    partition=part.number, reason=why)
        self.stats.lost += 1
        self.owned.pop(part.number, None)
        self._drop_work(part.number)
        self._replan()

    def _drop_work(self, number: int) -> list[str]:
        """Cancel the runs held for a partition, unreported: their entries stay pending for
        its next owner. Returns them."""
        runs = self._work_of(number)
        for run in runs:
            self._forget(run)  # what they report from now on is ignored
        self.engine.cancel(set(runs))
        return runs

    # -- desired state ---------------------------------------------------------------------
    async def _load(self, part: _Partition) -> None:
        devices, position = await self.backend.load_state(part.number)
        part.devices, part.position, part.loaded_at = devices, position, time.monotonic()
        self._replan()

    async def _follow_state(self) -> None:
        while not self._stopping:
            parts = {keys.state_changes(p.number): p for p in self.owned.values()}
            if not parts:
                await asyncio.sleep(0.2)
                continue
            changes = await self.backend.follow(
                {stream: p.position for stream, p in parts.items()}, count=1000, block=0.5)
            touched = False
            for change in changes:
                part = parts[change.stream]
                if self.owned.get(part.number) is not part:
                    continue
                part.position = change.id
                if change.body.get("snapshot"):
                    await self._load(part)
                    continue
                device, entry = change.body["device"], change.body.get("entry")
                if entry is None:
                    part.devices.pop(device, None)
                else:
                    part.devices[device] = entry
                touched = True
            for part in list(self.owned.values()):
                if time.monotonic() - part.loaded_at > STATE_RELOAD:
                    await self._load(part)
            if touched:
                self._replan()

    def _replan(self) -> None:
        """Poll what the owned partitions' state says (an unchanged assignment keeps its
        schedule)."""
        plan: dict[str, list[Profile]] = {}
        for part in self.owned.values():
            if part.leaving and not self._stopping:  # (stopping: polled while it drains)
                continue
            for device, entry in part.devices.items():
                raw = entry.get("polls")
                if not raw:
                    continue
                known = self._profiles.get(device)
                if known is None or known[0] != raw:  # read (validated) once per change
                    known = self._profiles[device] = (raw, wire.read_polls(entry))
                plan[device] = known[1]
        for device in self._profiles.keys() - plan.keys():
            del self._profiles[device]
        self.engine.set_polls(plan)

    async def resolve(self, name: str) -> Target:
        """A device's target from its partition's desired state (decrypted once per change)."""
        part = self.owned.get(partition_of(name, self.partitions))
        entry = part.devices.get(name) if part is not None else None
        if entry is None and part is not None:
            # Controllers publish a device's state before its first work, but the change may
            # not have been followed yet: read the partition's snapshot now.
            if part.loading is None or part.loading.done():
                part.loading = asyncio.create_task(self._load(part))
            await asyncio.shield(part.loading)
            entry = part.devices.get(name)
        if entry is None:
            raise InvalidInput(f"device {name} has no credentials or no longer exists",
                               field="device", fix="give it a credentials profile")
        sealed = entry["target"]
        known = self._targets.get(name)
        if known is not None and known[0] == sealed:
            return known[1]
        try:
            target = wire.open_target(entry, self.key)
        except InvalidToken:
            raise InvalidInput(
                "the agent cannot decrypt device targets: its secret key differs from the "
                "controllers'", field="NETFLEET_SECRET_KEY",
                fix="give every controller and agent the same NETFLEET_SECRET_KEY") from None
        self._targets[name] = (sealed, target)
        return target

    # -- work ------------------------------------------------------------------------------
    async def _read_work(self) -> None:
        while not self._stopping:
            # A read must be over before the lease could pass to another agent: it waits no
            # longer than the nearest deadline allows, and a partition near its deadline
            # (its renewal late) is not read until it is renewed.
            now = time.monotonic()
            parts = {keys.work(p.number): p for p in self.owned.values()
                     if p.reading and not p.leaving and self.alive(p, 0.1)}
            room = self.engine.limits.max_pending - self.engine.pending
            if not parts or room < READ_BATCH:
                await asyncio.sleep(0.1)
                continue
            block = min([READ_BLOCK] + [p.deadline - self._margin - now - 0.05
                                        for p in parts.values()])
            self._reading = {p.number for p in parts.values()}
            try:
                messages = await self.backend.read(keys.WORK_GROUP, self.name, list(parts),
                                                   count=READ_BATCH, block=max(0.0, block))
            finally:
                self._reading = set()
                self._progress.set()
            for stream in {m.stream for m in messages}:
                part = parts[stream]
                mine = [m for m in messages if m.stream == stream]
                if self.owned.get(part.number) is part:
                    self._handle(part, mine)
                else:  # lost meanwhile: pending for us, the next owner's 2nd takeover gets it
                    log.info("work read for a partition lost meanwhile left to its next owner",
                             agent=self.name, partition=part.number, entries=len(mine))

    def _handle(self, part: _Partition, messages: list[Message]) -> None:
        """Hand work entries to the engine in stream order."""
        done: list[str] = []
        for message in messages:
            try:
                if message.body.get("t") == "cancel":
                    self.engine.cancel({self._work[job] for job in message.body["jobs"]
                                        if job in self._work})
                    done.append(message.id)
                    continue
                task = wire.read_task(message.body)
            except Exception as exc:  # unreadable: acknowledged so it cannot block the rest
                log.error("unreadable work entry skipped", partition=part.number,
                          entry=message.id, error=f"{type(exc).__name__}: {exc}")
                done.append(message.id)
                continue
            self.stats.tasks += 1
            attempt = max(task.attempt, message.deliveries)
            if message.deliveries > 1:
                self.stats.taken_over += 1
            run = f"{task.job_id}#{next(self._run_ids)}"
            self._runs[run] = (task.job_id, part.number, message.id)
            self._work[task.job_id] = run
            if attempt > MAX_ATTEMPTS:
                self.stats.abandoned += 1
                self._abandon(run, task, attempt)
                continue
            try:
                self.engine.submit([task.model_copy(update={"job_id": run, "attempt": attempt})])
            except Overloaded as exc:
                self._on_result(DeviceResult(
                    job_id=run, device=task.device, status=Status.FAILED,
                    category=exc.category, message=exc.message, queued_at=now(),
                    finished_at=now(), attempt=attempt))
        if done:
            self._acks.setdefault((part.number, part.token), []).extend(done)
            self._wake.set()
            self._urgent.set()

    def _abandon(self, run: str, task: DeviceTask, attempt: int) -> None:
        self._on_result(DeviceResult(
            job_id=run, device=task.device, status=Status.FAILED,
            category="agent_lost",
            message=f"the agents running it stopped {attempt - 1} times; not tried again",
            queued_at=now(), finished_at=now(), attempt=attempt - 1))

    # -- observations ----------------------------------------------------------------------
    def _on_result(self, result: DeviceResult) -> None:
        """The engine reports on a run: sent as its job's result (the final one with the
        work entry to acknowledge once it is in Redis)."""
        held = self._runs.get(result.job_id)
        if held is None:  # a run dropped with a lost lease: the partition's owner reports
            return
        job, number, entry = held
        part = self.owned.get(number)
        if part is None or self._muted or not self._holding(part):
            return  # lost the partition: the next owner runs it (and what follows) and reports
        if result.status == Status.QUEUED:  # the controller stored it queued already
            return
        ack = None
        if Status(result.status).final:
            self._forget(result.job_id)
            ack = entry
        self._out.append((number, part.token,
                          wire.result(result.model_copy(update={"job_id": job})), ack))
        self._wake.set()
        self._urgent.set()
        if ack is not None:
            self._progress.set()

    def _on_poll(self, outcome: PollOutcome) -> None:
        number = partition_of(outcome.device, self.partitions)
        part = self.owned.get(number)
        if part is None or self._muted or not self.alive(part):
            return  # (dropping the partition is left to the others: a sample has no order)
        self._out.append((number, part.token, wire.poll(
            outcome.device, outcome.profile, outcome.samples, outcome.category,
            outcome.message), None))
        if len(self._out) > MAX_BUFFER:
            self._drop_polls()
        self._wake.set()

    def _drop_polls(self) -> None:
        """Redis has been unreachable long enough to fill the buffer: the oldest poll
        outcomes go, counted; results never do."""
        kept: deque[_Out] = deque()
        over = len(self._out) - MAX_BUFFER * 9 // 10
        for item in self._out:
            if over > 0 and item[2]["t"] == "poll":
                over -= 1
                self.stats.dropped += 1
            else:
                kept.append(item)
        self._out = kept

    def pressure(self) -> float:
        """0..1: how far behind the recorders (and Redis) are; polls slow past one half."""
        return max(len(self._out) / MAX_BUFFER, self._backlog / BACKLOG_LIMIT,
                   self._downstream() if self._downstream is not None else 0.0)

    async def _send(self) -> None:
        """Results and acknowledgements go at once (someone waits for a job); poll outcomes
        gather for FLUSH_INTERVAL unless a result comes meanwhile: fewer, bigger batches,
        fewer round trips to Redis and fewer reads for the recorders."""
        while True:
            await self._wake.wait()
            if not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), FLUSH_INTERVAL)
            self._wake.clear()
            self._urgent.clear()
            while self._out or self._acks:
                await self._flush()

    async def _flush(self) -> None:
        """Add buffered observations to their streams, then acknowledge the work entries
        whose final results they carry. On failure nothing is lost: observations not added
        stay buffered, acknowledgements not made are tried again. One flush at a time (the
        sender's and stop's), or the same observations would go twice."""
        async with self._flushing:
            await self._flush_once()

    async def _flush_once(self) -> None:
        count = min(len(self._out), 5000)
        items = [self._out[i] for i in range(count)]
        grouped: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for number, token, body, _ in items:
            grouped.setdefault((number, token), []).append(body)
        entries: dict[str, list[dict[str, Any]]] = {}
        for (number, token), bodies in grouped.items():
            for start in range(0, len(bodies), BATCH_ITEMS):
                entries.setdefault(keys.observations(number), []).append(
                    wire.batch(bodies[start:start + BATCH_ITEMS], self.name, token))
        if entries:
            await self.backend.add(entries)
        for _ in range(count):
            self._out.popleft()
        self.stats.sent += count
        for number, token, _, ack in items:
            if ack is not None:
                self._acks.setdefault((number, token), []).append(ack)
        if self._acks:
            # Only under a lease surely still ours: past it, the next owner may have taken
            # the entry over already and must find it pending (it runs it again).
            done = {key: ids for key, ids in self._acks.items() if self._holds(*key)}
            self._acks = {}
            try:
                await self.backend.ack_all(keys.WORK_GROUP, {
                    keys.work(n): ids for (n, _), ids in done.items()})
            except BaseException:  # tried again with the next flush
                for key, ids in done.items():
                    self._acks.setdefault(key, []).extend(ids)
                raise
        self._progress.set()

    def _holds(self, number: int, token: int) -> bool:
        part = self.owned.get(number)
        return part is not None and part.token == token and self._holding(part)

    async def _watch_backlog(self) -> None:
        """Every few seconds: how many observations wait for the recorders (all controllers
        down, or the database): the engine polls less as it grows."""
        trimmed = time.monotonic()
        while not self._stopping:
            total = 0
            for number in list(self.owned):
                total += await self.backend.backlog(keys.RECORD_GROUP, keys.observations(number))
            self._backlog = total
            await self.backend.put_status(keys.AGENTS, self.name, self.status(),
                                          self.lease_ttl)
            if time.monotonic() - trimmed > TRIM_INTERVAL:  # work done leaves the streams
                for number in list(self.owned):
                    await self.backend.trim_done(keys.WORK_GROUP, keys.work(number))
                trimmed = time.monotonic()
            await asyncio.sleep(2.0)

    async def _watch_loop(self) -> None:
        """How late the event loop runs. Later than the lease margin, renewals miss their
        deadline and leases are lost: the agent has more devices than its CPU can serve."""
        warned, late, worst = 0.0, 0, 0.0  # a warning at most every LAG_WARN_EVERY seconds
        while not self._closed:
            start = time.monotonic()
            await asyncio.sleep(LAG_PROBE)
            lag = time.monotonic() - start - LAG_PROBE
            self.stats.loop_lag_max = max(self.stats.loop_lag_max, lag)
            if lag > self._margin / 2:
                late, worst = late + 1, max(worst, lag)
                if time.monotonic() - warned >= LAG_WARN_EVERY:
                    log.warning("event loop running late; leases at risk", agent=self.name,
                                lag_s=round(worst, 3), late_probes=late,
                                margin_s=self._margin)
                    warned, late, worst = time.monotonic(), 0, 0.0

    # -- reporting -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Counters since start, published every 2 s (controllers show them in /ready)."""
        polls = self.engine.poll_stats
        return {"partitions": sorted(self.owned), "buffered": len(self._out),
                "backlog": self._backlog, **self.engine.stats(),
                "polls_ok": polls.ok, "polls_failed": polls.failed,
                "poll_overruns": polls.overruns, "polls_throttled": polls.throttled,
                "tasks": self.stats.tasks, "taken_over": self.stats.taken_over,
                "abandoned": self.stats.abandoned, "sent": self.stats.sent,
                "dropped": self.stats.dropped, "handovers": self.stats.handovers,
                "leases_lost": self.stats.lost,
                "loop_lag_max_s": round(self.stats.loop_lag_max, 3)}


__all__ = ["Agent", "AgentStats", "NetfleetError", "agent_name"]
