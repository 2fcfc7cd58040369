"""The controller's side of a cluster: work and desired state go down, observations come up.

`ClusterWork` sends each device task to its partition's work stream and keeps every
partition's desired state (targets, sealed with the secret key, and telemetry assignments)
published: changed devices at once, the whole snapshot on every telemetry re-plan (every 30 s
and after any profile change), so a lost change can never leave an agent wrong for long.

`Recorder` consumes the observation streams. Partitions are shared out among the live
controllers by rendezvous hashing, each held under a lease, so one controller records a
partition at a time: per-device order holds, partitions go in parallel. A batch is read (at
most READ_BATCH entries per partition: the in-flight bound), applied to the job and telemetry
buffers, written, and only then acknowledged — with the database down nothing is acknowledged
and the entries wait in Redis, back-pressure the agents see as a growing backlog. An entry
that fails to apply goes to the dead-letter stream with the reason, and the rest flow on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import structlog
from cryptography.fernet import Fernet

from netfleet.backends import keys
from netfleet.backends.base import Backend, Body, Message
from netfleet.backends.partitions import owned, partition_of
from netfleet.domain.errors import BackendUnavailable
from netfleet.domain.jobs import DeviceTask
from netfleet.domain.ports import Target
from netfleet.domain.telemetry import Profile
from netfleet.engine import wire
from netfleet.engine.engine import PollOutcome

log = structlog.get_logger("netfleet.cluster")

READ_BATCH = 1000  # observation entries in flight per partition (read, not acknowledged)
LINGER, LINGER_BELOW = 0.05, 100  # after a read of fewer entries, wait this long (seconds)
TRIM_INTERVAL = 10.0  # seconds between trims of the recorded observation streams


class ClusterWork:
    SNAPSHOT_INTERVAL = 120.0  # seconds between whole snapshots (changes go between)

    def __init__(self, backend: Backend, secret: bytes, partitions: int = 64) -> None:
        self.backend = backend
        self.partitions = partitions
        self.key = Fernet(secret)
        self._published: dict[str, tuple[str, dict[str, Any]]] = {}  # device -> (digest, entry)
        self._polls: dict[str, list[Profile]] = {}
        self._targets: dict[str, Target] = {}
        self._snapshot_at = -1e9  # monotonic time of the last whole snapshot
        self.epoch: tuple[str, float] | None = None  # the backend's, as of joining

    async def check_epoch(self) -> float | None:
        """Has the backend lost its data since we joined (Redis restarted without
        persistence)? If so: start a new epoch, make the next publish a whole snapshot, and
        return when the new epoch began (work accepted before it is lost); else None."""
        current = await self.backend.epoch()
        if current is None:
            await self.backend.init_cluster(self.partitions)
            current = await self.backend.epoch()
        if current is None or current == self.epoch:
            return None
        self.epoch = current
        self._published.clear()
        self._snapshot_at = -1e9
        return current[1]

    async def start(self) -> None:
        """Join the cluster (fixing its partition count if this is the first process),
        waiting for Redis with backoff if it is not up yet."""
        backoff = 0.2
        while True:
            try:
                self.partitions = await self.backend.init_cluster(self.partitions)
                self.epoch = await self.backend.epoch()
                return
            except BackendUnavailable as exc:
                log.warning("waiting for the backend", error=exc.message)
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)

    def partition(self, device: str) -> int:
        return partition_of(device, self.partitions)

    # -- work ------------------------------------------------------------------------------
    async def submit(self, tasks: Sequence[DeviceTask], targets: Mapping[str, Target]) -> None:
        """Make sure the agents know these devices' targets, then queue the tasks on their
        partitions' streams (in the order given, per device)."""
        await self.publish_targets({t.device: targets[t.device] for t in tasks
                                    if t.device in targets})
        batches: dict[str, list[Body]] = {}
        for task in tasks:
            batches.setdefault(keys.work(self.partition(task.device)), []).append(
                wire.task(task))
        await self.backend.add(batches)

    async def cancel(self, children: Mapping[str, str]) -> None:
        """Cancel child jobs (child id -> device) wherever their devices' owners hold them."""
        batches: dict[int, list[str]] = {}
        for child, device in children.items():
            batches.setdefault(self.partition(device), []).append(child)
        await self.backend.add({keys.work(p): [wire.cancel(ids)] for p, ids in batches.items()})

    # -- desired state ---------------------------------------------------------------------
    def _entry(self, device: str) -> tuple[str, dict[str, Any]] | None:
        """The device's state entry; unchanged content keeps its sealed target (agents then
        skip decrypting it again)."""
        target = self._targets.get(device)
        if target is None:
            return None
        polls = [p.model_dump(mode="json") for p in self._polls.get(device, [])]
        digest = hashlib.sha256(json.dumps([asdict(target), polls], sort_keys=True,
                                           default=str).encode()).hexdigest()
        known = self._published.get(device)
        if known is not None and known[0] == digest:
            return known
        entry = wire.device_entry(target, self._polls.get(device, []), self.key)
        return digest, entry

    async def publish_targets(self, targets: Mapping[str, Target]) -> None:
        """Publish these devices' entries where they changed (before work for them goes)."""
        self._targets.update(targets)
        changed: dict[int, dict[str, Body | None]] = {}
        fresh: dict[str, tuple[str, dict[str, Any]]] = {}
        for device in targets:
            made = self._entry(device)
            if made is None or self._published.get(device) == made:
                continue
            fresh[device] = made
            changed.setdefault(self.partition(device), {})[device] = made[1]
        for number, entries in changed.items():
            await self.backend.set_state(number, entries)
        self._published.update(fresh)

    async def publish(self, targets: Mapping[str, Target],
                      polls: Mapping[str, Collection[Profile]]) -> int:
        """Publish the whole desired state: these are all the devices agents may reach
        (those with credentials) and what each polls. What changed since the last call goes
        as changes; every SNAPSHOT_INTERVAL every partition's snapshot is replaced whole
        (a change lost, or made by another controller, is then set right). Returns the
        device count."""
        self._targets = dict(targets)
        self._polls = {d: list(p) for d, p in polls.items() if d in targets}
        snapshots: dict[int, dict[str, Body]] = {p: {} for p in range(self.partitions)}
        published: dict[str, tuple[str, dict[str, Any]]] = {}
        changed: dict[int, dict[str, Body | None]] = {}
        for device in targets:
            made = self._entry(device)
            if made is not None:
                published[device] = made
                snapshots[self.partition(device)][device] = made[1]
                if self._published.get(device) != made:
                    changed.setdefault(self.partition(device), {})[device] = made[1]
        for gone in set(self._published) - set(published):
            changed.setdefault(self.partition(gone), {})[gone] = None
        if time.monotonic() - self._snapshot_at > self.SNAPSHOT_INTERVAL:
            for number, entries in snapshots.items():
                await self.backend.replace_state(number, entries)
            self._snapshot_at = time.monotonic()
        else:
            for number, changes in changed.items():
                await self.backend.set_state(number, changes)
        self._published = published
        return len(published)


@dataclass(slots=True)
class RecorderStats:
    recorded: int = 0
    dead: int = 0  # sent to the dead-letter stream
    fenced: int = 0  # from an agent whose lease had passed to another: ignored
    batches: int = 0
    failures: int = 0  # batches that could not be written (retried)
    restarts: int = 0


class Recorder:
    """Consumes observations of the partitions this controller records."""

    def __init__(self, backend: Backend, *, name: str, partitions: int,
                 on_result: Callable[[Any], None], on_poll: Callable[[PollOutcome], None],
                 flush: Callable[[], Awaitable[bool]], lease_ttl: float = 10.0,
                 in_process: bool = False) -> None:
        self.backend = backend
        # In-process (the memory backend, embedded): no round trip is saved by lingering, and
        # an entry is acknowledged once applied. The stream dies with the buffers it was
        # applied to, so waiting for the store would keep nothing safer; it would only hold
        # the next observations (a job's final result) behind a write. The services' own
        # writers store the buffers, as they do for an engine in the process.
        self.in_process = in_process
        self.linger = 0.0 if in_process else LINGER
        self.name = name
        self.partitions = partitions
        self.lease_ttl = lease_ttl
        self.on_result = on_result
        self.on_poll = on_poll
        self.flush = flush  # writes what was applied; True once nothing is left buffered
        self.stats = RecorderStats()
        self.owned: dict[int, int] = {}  # partition -> lease token
        self._fresh: set[int] = set()  # acquired; what the last recorder left comes first
        self._batch = asyncio.Lock()  # a partition is released only between batches
        self._trimmed = time.monotonic()
        self._tokens: dict[int, int] = {}  # partition -> highest agent token seen
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._supervise(self._membership, "membership")),
                       asyncio.create_task(self._supervise(self._consume, "consume"))]

    async def stop(self) -> None:
        """Finish the batch in hand (drain), then give the partitions back."""
        self._stopping = True
        for task in self._tasks:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 15)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(BackendUnavailable):
            for number, token in list(self.owned.items()):
                await self.backend.release(keys.record_lease(number), self.name, token)
            await self.backend.leave(keys.RECORDERS, self.name)
        self.owned.clear()

    async def _supervise(self, work: Callable[[], Awaitable[None]], what: str) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                await work()
                return
            except asyncio.CancelledError:
                raise
            except BackendUnavailable as exc:
                log.warning("backend unavailable; retrying", loop=what, error=exc.message)
            except Exception:
                log.exception("recorder crashed; restarting", loop=what)
            self.stats.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(5.0, backoff * 2)

    async def _membership(self) -> None:
        while not self._stopping:
            await self.backend.heartbeat(keys.RECORDERS, self.name, self.lease_ttl)
            held = list(self.owned.items())
            renewed = await asyncio.gather(*(
                self.backend.renew(keys.record_lease(n), self.name, t, self.lease_ttl)
                for n, t in held))
            for (number, token), ok in zip(held, renewed, strict=True):
                if not ok and self.owned.get(number) == token:
                    self.owned.pop(number, None)
            members = await self.backend.members(keys.RECORDERS)
            wanted = owned(self.name, members, self.partitions)
            for number in sorted(set(self.owned) - wanted):
                async with self._batch:  # between batches nothing of it is in hand
                    token = self.owned.pop(number)
                    self._fresh.discard(number)
                await self.backend.release(keys.record_lease(number), self.name, token)
            for number in sorted(wanted - set(self.owned)):
                taken = await self.backend.acquire(keys.record_lease(number), self.name,
                                                   self.lease_ttl)
                if taken is not None:
                    self.owned[number] = taken
                    self._fresh.add(number)
            await asyncio.sleep(self.lease_ttl / 4)

    async def _consume(self) -> None:
        while not self._stopping:
            streams = [keys.observations(n) for n in sorted(self.owned)]
            if not streams:
                await asyncio.sleep(0.2)
                continue
            async with self._batch:
                # What a recorder that stopped had read and not acknowledged comes first.
                messages: list[Message] = []
                for number in sorted(self._fresh & set(self.owned)):
                    messages += await self.backend.takeover(keys.RECORD_GROUP, self.name,
                                                            keys.observations(number))
                    self._fresh.discard(number)
                if not messages:
                    messages = await self.backend.read(keys.RECORD_GROUP, self.name, streams,
                                                       count=READ_BATCH, block=0.5)
                if messages:
                    await self.record(messages)
                if time.monotonic() - self._trimmed > TRIM_INTERVAL:  # recorded: drop them
                    for number in sorted(self.owned):
                        await self.backend.trim_done(keys.RECORD_GROUP,
                                                     keys.observations(number))
                    self._trimmed = time.monotonic()
            if len(messages) < LINGER_BELOW and self.linger:  # let more gather: fewer trips
                await asyncio.sleep(self.linger)

    async def record(self, messages: Sequence[Message]) -> None:
        """Apply, write, acknowledge. Writing is retried until it works (the database may be
        down): nothing is acknowledged before it is stored."""
        observations = 0
        for message in messages:
            try:
                token, items = wire.unbatch(message.body)
            except Exception as exc:
                await self._dead(message, message.body, f"{type(exc).__name__}: {exc}")
                continue
            observations += len(items)
            number = keys.partition_of_stream(message.stream)
            if token < self._tokens.get(number, 0):
                self.stats.fenced += len(items)  # sent under a lease taken over since
                continue
            self._tokens[number] = token
            for item in items:
                try:
                    self._apply(item)
                except Exception as exc:
                    await self._dead(message, item, f"{type(exc).__name__}: {exc}")
        if not self.in_process:
            await self._store(len(messages))
        by_stream: dict[str, list[str]] = {}
        for message in messages:
            by_stream.setdefault(message.stream, []).append(message.id)
        await self.backend.ack_all(keys.RECORD_GROUP, by_stream)
        self.stats.recorded += observations
        self.stats.batches += 1

    async def _store(self, entries: int) -> None:
        backoff = 0.2
        while True:
            try:
                if await self.flush():
                    return
            except Exception as exc:
                self.stats.failures += 1
                log.warning("recording observations failed; not acknowledged, retrying",
                            error=str(exc)[:200], entries=entries)
            await asyncio.sleep(backoff)
            backoff = min(10.0, backoff * 2)

    def _apply(self, body: dict[str, Any]) -> None:
        kind = body.get("t")
        if kind == "result":
            self.on_result(wire.read_result(body))
        elif kind == "poll":
            self.on_poll(PollOutcome(str(body["d"]), str(body["p"]), wire.samples(body),
                                     body.get("c"), body.get("m")))
        else:
            raise ValueError(f"unknown observation type {kind!r}")

    async def _dead(self, message: Message, body: dict[str, Any], reason: str) -> None:
        """One observation (or an entry that could not be read at all) set aside, with
        the reason; the rest flow on."""
        self.stats.dead += 1
        log.error("observation sent to the dead-letter stream", stream=message.stream,
                  entry=message.id, reason=reason)
        await self.backend.add({keys.DEAD_LETTERS: [{
            "stream": message.stream, "id": message.id, "reason": reason, "body": body,
            "at": time.time()}]}, maxlen=100_000)


class Leadership:
    """One controller at a time holds a named lease and does a singleton's work (the
    deployment planners): `gained` when it takes the lease, `tick` while it holds it, `lost`
    when it lets go or the lease runs out."""

    def __init__(self, backend: Backend, *, name: str, holder: str, ttl: float,
                 gained: Callable[[], Awaitable[object]], lost: Callable[[], Awaitable[object]],
                 tick: Callable[[], Awaitable[object]]) -> None:
        self.backend, self.lease_name, self.holder, self.ttl = backend, name, holder, ttl
        self.gained, self.lost, self.tick = gained, lost, tick
        self.token: int | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self.token is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"netfleet-lead-{self.lease_name}")

    async def _run(self) -> None:
        while True:
            try:
                if self.token is None:
                    self.token = await self.backend.acquire(
                        keys.lease_name(self.lease_name), self.holder, self.ttl)
                    if self.token is not None:
                        log.info("leading", lease=self.lease_name, holder=self.holder)
                        await self.gained()
                elif not await self.backend.renew(keys.lease_name(self.lease_name),
                                                  self.holder, self.token, self.ttl):
                    await self._step_down("lease lost")
                else:
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except BackendUnavailable as exc:
                log.warning("backend unavailable; retrying", lease=self.lease_name,
                            error=exc.message)
            except Exception:
                log.exception("leader work failed", lease=self.lease_name)
            await asyncio.sleep(self.ttl / 4)

    async def _step_down(self, why: str) -> None:
        self.token = None
        log.warning("no longer leading", lease=self.lease_name, reason=why)
        await self.lost()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.token is not None:
            token, self.token = self.token, None
            await self.lost()
            with contextlib.suppress(BackendUnavailable):
                await self.backend.release(keys.lease_name(self.lease_name), self.holder,
                                           token)
