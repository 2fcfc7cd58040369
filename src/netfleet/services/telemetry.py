"""Telemetry: which devices poll which profiles, where samples go, and what is known now.

The engine's actors poll; every outcome comes here (`on_poll`, on the event loop, never
blocking). Samples wait in a bounded buffer that a writer flushes in batches — every second or
every FLUSH_BATCH samples, whichever comes first. When the database is slow or down the buffer
fills; past MAX_BUFFER the oldest samples are dropped and counted, so neither the actors nor
the API ever wait on storage. The newest value of every series is kept in memory (`latest`),
with each device marked stale when its last poll failed or none came for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import Histogram
from sqlalchemy.exc import IntegrityError

from netfleet.analytics import Bottleneck, detect
from netfleet.domain.errors import Conflict, InvalidInput, NotFound
from netfleet.domain.ports import Target
from netfleet.domain.selectors import Selector
from netfleet.domain.telemetry import Profile, Sample
from netfleet.engine import Engine
from netfleet.engine.engine import PollOutcome
from netfleet.engine.profiles import builtin_profiles
from netfleet.services.cluster import ClusterWork
from netfleet.services.webhooks import WebhookSender
from netfleet.store import Store
from netfleet.store.aggregates import window_aggregates
from netfleet.store.telemetry import Point, SeriesKey, labels_key, parse_labels

log = structlog.get_logger("netfleet.telemetry")

DAY_MS = 86_400_000
TARGET_BATCH = 1000  # device targets read by one query


@dataclass(frozen=True, slots=True)
class ProfileView:
    profile: Profile
    where: list[str]
    enabled: bool
    builtin: bool
    devices: int  # how many devices poll it now


@dataclass(frozen=True, slots=True)
class Latest:
    device: str
    metric: str
    labels: dict[str, str]
    unit: str
    ts: float  # epoch seconds
    value: float
    stale: bool
    reason: str | None  # why stale: the last poll's failure, or "no poll for Ns"


@dataclass
class _DeviceState:
    interval: float = 60.0
    assigned_at: float = field(default_factory=time.time)
    last_ok: float = 0.0  # epoch seconds of the last poll that worked
    error: str | None = None  # the last poll's failure, cleared by a poll that works
    series: dict[tuple[str, str], tuple[float, float, str]] = field(default_factory=dict)


@dataclass(slots=True)
class WriterStats:
    written: int = 0
    dropped: int = 0  # oldest samples dropped because the buffer was full
    rejected: int = 0  # samples the database refused on their own (set aside, logged)
    batches: int = 0
    failures: int = 0
    last_batch_seconds: float = 0.0


class TelemetryService:
    FLUSH_INTERVAL = 1.0
    FLUSH_BATCH = 20_000
    MAX_BUFFER = 1_000_000
    REFRESH_INTERVAL = 30.0  # re-read assignments (catches inventory changes from anywhere)
    MAINTENANCE_INTERVAL = 60.0
    WRITE_TIMEOUT = 60.0  # one batch; past it the batch is kept and retried
    LATEST_WINDOW = 3600.0  # in a cluster, `latest` looks this far back in the database

    def __init__(self, store: Store, *, retention_days: float = 7.0,
                 rollup_retention_days: float = 90.0, webhooks: WebhookSender | None = None,
                 alert_webhook: str | None = None, alert_window: float = 600.0,
                 alert_interval: float = 60.0, alert_method: str = "robust",
                 alert_threshold: float = 2.0) -> None:
        self.store = store
        self.webhooks = webhooks
        # Bottleneck alerts: every alert_interval, detect over alert_window; a device newly
        # flagged fires `bottleneck.appeared`, one no longer flagged `bottleneck.cleared`.
        self.alert_webhook = alert_webhook
        self.alert_window = alert_window
        self.alert_interval = alert_interval
        self.alert_method = alert_method
        self.alert_threshold = alert_threshold
        self.flagged: dict[str, Bottleneck] = {}
        self.engine: Engine | None = None  # set by bootstrap once the engine exists
        # In a cluster: assignments (with every device's target) go to the agents instead.
        self.remote: ClusterWork | None = None
        # Every poll comes through this process (embedded, on the memory backend): `latest`
        # answers from memory; a controller of a cluster sees only its partitions' polls.
        self.sees_every_poll = False
        self.retention_days = retention_days
        self.rollup_retention_days = rollup_retention_days
        self.stats = WriterStats()
        # Not registered anywhere: /metrics' collector yields it with the rest.
        self.write_latency = Histogram(
            "netfleet_sample_write_seconds", "Time to write one batch of samples.",
            registry=None, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self._buffer: deque[Sample] = deque()
        self._series: dict[SeriesKey, int] = {}
        self._devices: dict[str, _DeviceState] = {}
        self._assigned: dict[str, list[Profile]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._flush_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.ensure_builtin()
        await self.apply()
        self._tasks = [asyncio.create_task(self._writer(), name="netfleet-telemetry-writer"),
                       # Re-reading assignments catches inventory changes made anywhere.
                       self._every(self.REFRESH_INTERVAL, self.apply, "apply"),
                       self._every(self.MAINTENANCE_INTERVAL, self.maintain, "maintenance"),
                       self._every(self.alert_interval, self.check_alerts, "alerts")]

    def _every(self, seconds: float, work: Callable[[], Awaitable[object]],
               what: str) -> asyncio.Task[None]:
        """A task running `work` every `seconds`; a failure is logged and the next run comes."""
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await work()
                except Exception:
                    log.exception("telemetry background work failed", work=what)

        return asyncio.create_task(loop(), name=f"netfleet-telemetry-{what}")

    async def stop(self) -> None:
        """Stop the background work that changes polling (assignment refresh), and alerts and
        maintenance; the writer keeps going. First step of a shutdown: once the engine is
        closed, nothing may start polls again."""
        for task in [t for t in self._tasks if t.get_name() != "netfleet-telemetry-writer"]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close(self) -> None:
        """Last step of a shutdown, after the engine: the writer ends and what is buffered is
        written."""
        await self.stop()
        self._closing = True
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.flush()

    # -- profiles and assignment -----------------------------------------------------------
    async def ensure_builtin(self) -> None:
        """Store the built-in profiles that are not stored yet (assigned to no device). Each
        in its own transaction: controllers starting together on a new database race to
        store them, and one that loses finds the profile there."""
        async with self.store.transaction(readonly=True) as tx:
            have = {p.name for p in await tx.telemetry.profiles()}
        for name, profile in builtin_profiles().items():
            if name in have:
                continue
            try:
                async with self.store.transaction() as tx:
                    await tx.telemetry.put_profile(name, _body(profile), [], create=True)
            except (Conflict, IntegrityError):
                log.info("built-in profile stored meanwhile by another process", profile=name)

    async def profiles(self) -> list[ProfileView]:
        async with self.store.transaction(readonly=True) as tx:
            stored = await tx.telemetry.profiles()
        counts: dict[str, int] = {}
        for profiles in self._assigned.values():
            for p in profiles:
                counts[p.name] = counts.get(p.name, 0) + 1
        builtin = builtin_profiles()
        return [ProfileView(Profile.model_validate(r.body), r.where, r.enabled,
                            r.name in builtin, counts.get(r.name, 0)) for r in stored]

    async def profile(self, name: str) -> ProfileView:
        for view in await self.profiles():
            if view.profile.name == name:
                return view
        raise NotFound(f"no telemetry profile {name!r}")

    async def put_profile(self, profile: Profile, where: list[str], enabled: bool = True, *,
                          create: bool | None = None) -> ProfileView:
        _selector(where)  # a bad term is a 422 naming `where`, before anything is stored
        async with self.store.transaction() as tx:
            await tx.telemetry.put_profile(profile.name, _body(profile), where, enabled,
                                           create=create)
        await self.apply()
        return await self.profile(profile.name)

    async def assign(self, name: str, where: list[str] | None = None,
                     enabled: bool | None = None) -> ProfileView:
        current = await self.profile(name)
        return await self.put_profile(
            current.profile, current.where if where is None else where,
            current.enabled if enabled is None else enabled, create=False)

    async def delete_profile(self, name: str) -> None:
        async with self.store.transaction() as tx:
            await tx.telemetry.delete_profile(name)
        await self.apply()

    async def apply(self) -> int:
        """Work out which devices poll which profiles, and tell the engine. A profile polls
        the devices its `where` selects that are of its platform, and the running nodes of
        deployments that name it. Returns the device count."""
        async with self.store.transaction(readonly=True) as tx:
            enabled = {r.name: r for r in await tx.telemetry.profiles() if r.enabled}
            assigned: dict[str, list[Profile]] = {}
            for record in enabled.values():
                if not record.where:
                    continue
                profile = Profile.model_validate(record.body)
                for device in await tx.devices.find_all(_selector(record.where)):
                    if device.platform == profile.platform and device.credentials:
                        assigned.setdefault(device.name, []).append(profile)
            # A deployment's running nodes poll the deployment's profile.
            for device_name, platform, name in await tx.deployments.polled_nodes():
                if name not in enabled:
                    continue
                profile = Profile.model_validate(enabled[name].body)
                mine = assigned.setdefault(device_name, [])
                if profile.platform == platform and profile not in mine:
                    mine.append(profile)
        self._assigned = assigned
        for name, profiles in assigned.items():
            state = self._devices.setdefault(name, _DeviceState())
            state.interval = min(p.interval for p in profiles)
        for gone in set(self._devices) - set(assigned):
            del self._devices[gone]
        if self.remote is not None:
            await self.remote.publish(await self._targets(), assigned)
        elif self.engine is not None:
            self.engine.set_polls(assigned)
        return len(assigned)

    async def _targets(self) -> dict[str, Target]:
        """Every device's connection target (those with credentials), for the agents."""
        async with self.store.transaction(readonly=True) as tx:
            names = [d.name for d in await tx.devices.find_all() if d.credentials]
            found: dict[str, Target] = {}
            for start in range(0, len(names), TARGET_BATCH):
                chunk = await tx.devices.targets(names[start:start + TARGET_BATCH])
                found.update({n: t for n, t in chunk.items() if t is not None})
        return found


    # -- ingest ----------------------------------------------------------------------------
    def on_poll(self, outcome: PollOutcome) -> None:
        """Engine callback for every poll: remember the newest values, queue the samples."""
        # A device this service does not know is one assigned (by another controller, in a
        # cluster) since its last `apply`, or unassigned as it was polled: its samples are
        # real measurements and are stored all the same (those of a deleted device are left
        # out when written).
        state = self._devices.get(outcome.device)
        if outcome.category is not None:
            if state is not None:
                state.error = f"{outcome.category}: {outcome.message}"
            return
        if state is not None:
            state.error = None
            state.last_ok = time.time()
            for s in outcome.samples:
                state.series[(s.metric, labels_key(s.labels))] = (s.ts, s.value, s.unit)
        self._buffer.extend(outcome.samples)
        self._trim()
        if len(self._buffer) >= self.FLUSH_BATCH:
            self._wake.set()

    def _trim(self) -> None:
        over = len(self._buffer) - self.MAX_BUFFER
        if over > 0:  # storage is behind: the oldest go, counted, and nothing waits
            for _ in range(over):
                self._buffer.popleft()
            self.stats.dropped += over

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def pressure(self) -> float:
        """How full the buffer is, 0..1: the engine polls less past half full."""
        return len(self._buffer) / self.MAX_BUFFER

    async def _writer(self) -> None:
        backoff = 0.5
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.FLUSH_INTERVAL)
            self._wake.clear()
            try:
                await self.flush()
                backoff = 0.5
            except Exception as exc:
                self.stats.failures += 1
                log.warning("writing samples failed; kept for the next try",
                            error=str(exc)[:200], buffered=len(self._buffer))
                await asyncio.sleep(backoff)
                backoff = min(30.0, backoff * 2)

    async def flush(self) -> int:
        """Write what is buffered (in batches). When the database is unreachable the samples
        go back to the front and this raises. When it answers but refuses a batch, the batch
        is written in halves, down to single samples, and a sample it refuses on its own is
        set aside (counted and logged): one bad sample never holds up the rest."""
        async with self._flush_lock:
            written = 0
            while self._buffer:
                batch = [self._buffer.popleft()
                         for _ in range(min(self.FLUSH_BATCH, len(self._buffer)))]
                written += await self._write_pieces(batch)
            return written

    async def _write_pieces(self, batch: list[Sample]) -> int:
        written = 0
        pieces = [batch]  # a stack: the next piece to write is last
        while pieces:
            piece = pieces.pop()
            try:
                async with asyncio.timeout(self.WRITE_TIMEOUT):  # a hung database too
                    written += await self._write(piece)
                continue
            except BaseException as exc:
                if not isinstance(exc, Exception) or not await self._database_answers():
                    rest = [s for p in (piece, *reversed(pieces)) for s in p]
                    self._buffer.extendleft(reversed(rest))
                    self._trim()
                    raise
                self.stats.failures += 1
                error = exc
            if len(piece) > 1:
                half = len(piece) // 2
                pieces += [piece[half:], piece[:half]]
                continue
            self.stats.rejected += 1
            log.error("the database refused a sample; set aside", device=piece[0].device,
                      metric=piece[0].metric, error=str(error)[:200])
        return written

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(5.0):
                await self.store.ping()
        except Exception:
            return False
        return True

    async def _write(self, batch: Sequence[Sample]) -> int:
        try:
            return await self._write_once(batch)
        except Conflict:
            # A device (and its series) was deleted since its ids were cached: look them up
            # again; samples of devices that are gone have nowhere to go and are left out.
            self._series.clear()
            return await self._write_once(batch)

    async def _write_once(self, batch: Sequence[Sample]) -> int:
        started = time.perf_counter()
        keys = {s: SeriesKey(s.device, s.metric, labels_key(s.labels), s.unit) for s in batch}
        async with self.store.transaction() as tx:
            missing = [k for k in set(keys.values()) if k not in self._series]
            if missing:
                self._series.update(await tx.telemetry.series_ids(missing))
            rows = [(self._series[key], round(s.ts * 1000), s.value)
                    for s, key in keys.items() if key in self._series]
            await tx.telemetry.write(rows)
        seconds = time.perf_counter() - started
        self.stats.written += len(rows)
        self.stats.batches += 1
        self.stats.last_batch_seconds = seconds
        self.write_latency.observe(seconds)
        return len(rows)

    async def reset(self) -> None:
        """Forget everything held in memory and start over from the database (after the
        database was emptied or restored)."""
        self._series.clear()
        self._buffer.clear()
        self._devices.clear()
        await self.ensure_builtin()
        await self.apply()

    # -- maintenance -----------------------------------------------------------------------
    async def maintain(self, now_ms: int | None = None) -> dict[str, int]:
        """Roll up the last few whole minutes and drop what is past retention."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        async with self.store.transaction() as tx:
            rolled = await tx.telemetry.roll_up(now_ms - 5 * 60_000, now_ms)
            dropped = await tx.telemetry.drop_older_than(
                now_ms - int(self.retention_days * DAY_MS),
                now_ms - int(self.rollup_retention_days * DAY_MS))
        return {"rolled_up": rolled, "dropped": dropped}


    # -- reading ---------------------------------------------------------------------------
    async def query(self, *, where: Sequence[str], metric: str | None, start: float,
                    end: float, limit: int, step: float | None,
                    labels: dict[str, str] | None = None) -> list[Point]:
        selector = _selector(where) if where else None
        async with self.store.transaction(readonly=True) as tx:
            return await tx.telemetry.query(
                selector=selector, metric=metric, start_ms=int(start * 1000),
                end_ms=int(end * 1000), limit=limit,
                step_ms=None if step is None else int(step * 1000),
                labels=None if labels is None else labels_key(list(labels.items())))

    async def latest(self, *, where: Sequence[str] = (), metric: str | None = None,
                     now: float | None = None) -> list[Latest]:
        """The newest value of every series of the selected devices. A device is stale when
        its last poll failed, or when no poll has worked for 2.5 intervals."""
        now = now if now is not None else time.time()
        if self.remote is not None and not self.sees_every_poll:
            return await self._latest_stored(where, metric, now)
        names: set[str] | None = None
        if where:
            async with self.store.transaction(readonly=True) as tx:
                names = {d.name for d in await tx.devices.find_all(_selector(where))}
        out = []
        for device in sorted(self._devices):
            if names is not None and device not in names:
                continue
            state = self._devices[device]
            reason = _stale_reason(state, now)
            for (name, labels), (ts, value, unit) in sorted(state.series.items()):
                if metric is not None and name != metric:
                    continue
                out.append(Latest(device, name, parse_labels(labels), unit, ts, value,
                                  reason is not None, reason))
        return out

    async def _latest_stored(self, where: Sequence[str], metric: str | None,
                             now: float) -> list[Latest]:
        """`latest` in a cluster: controllers share the recording, so the newest values come
        from the database (the last LATEST_WINDOW seconds); staleness from each value's age,
        and from the last poll's failure where this controller recorded it."""
        async with self.store.transaction(readonly=True) as tx:
            points = await tx.telemetry.newest(
                selector=_selector(where) if where else None, metric=metric,
                since_ms=int((now - self.LATEST_WINDOW) * 1000))
        out = []
        for p in points:
            state = self._devices.get(p.device)
            interval = state.interval if state is not None else 60.0
            ts = p.ts / 1000
            reason = state.error if state is not None and state.error else (
                f"no poll for {now - ts:.0f}s" if now - ts > 2.5 * interval else None)
            out.append(Latest(p.device, p.metric, p.labels, p.unit, ts, p.value,
                              reason is not None, reason))
        return out

    async def bottlenecks(self, *, where: Sequence[str] = (), window: float = 600.0,
                          method: str = "robust", threshold: float = 2.0,
                          now: float | None = None) -> tuple[list[Bottleneck], int]:
        """Devices deviating from their peers over the last `window` seconds, worst first,
        and how many devices were compared. Per-device means come from SQL
        (store.aggregates); analytics judges them against the peers."""
        now = now if now is not None else time.time()
        selector = _selector(where) if where else None
        async with self.store.transaction(readonly=True) as tx:
            aggregates = await window_aggregates(tx.session, self.store.dialect, selector,
                                                 int((now - window) * 1000), int(now * 1000))
        return detect(aggregates, method, threshold), len(aggregates)

    async def check_alerts(self, now: float | None = None) -> tuple[list[str], list[str]]:
        """One alerting pass: (appeared, cleared) device names, each sent as a webhook event
        when `alert_webhook` is set. The first pass after start reports what is flagged then
        as appeared."""
        found, _ = await self.bottlenecks(window=self.alert_window, method=self.alert_method,
                                          threshold=self.alert_threshold, now=now)
        flagged = {b.device: b for b in found}
        appeared = sorted(set(flagged) - set(self.flagged))
        cleared = sorted(set(self.flagged) - set(flagged))
        self.flagged = flagged
        if self.alert_webhook and self.webhooks is not None:
            for device in appeared:
                b = flagged[device]
                self.webhooks.fire(self.alert_webhook, "bottleneck.appeared", {
                    "device": device, "deviation_score": round(b.score, 3),
                    "reason": b.reason, "window_seconds": self.alert_window,
                    "metrics": {m: {"value": v.value, "baseline": v.baseline,
                                    "z": round(v.z, 3)} for m, v in b.metrics.items()}})
            for device in cleared:
                self.webhooks.fire(self.alert_webhook, "bottleneck.cleared", {
                    "device": device, "window_seconds": self.alert_window})
        if appeared or cleared:
            log.info("bottlenecks changed", appeared=appeared, cleared=cleared)
        return appeared, cleared


    def latest_now(self) -> list[Latest]:
        """`latest` for every device, from memory (no database): for /metrics."""
        states = self.device_states()
        return [Latest(device, name, parse_labels(labels), unit, ts, value, *states[device])
                for device, state in self._devices.items()
                for (name, labels), (ts, value, unit) in state.series.items()]

    def device_states(self) -> dict[str, tuple[bool, str | None]]:
        """Device -> (stale, reason), for /metrics."""
        now = time.time()
        out = {}
        for name, state in self._devices.items():
            reason = _stale_reason(state, now)
            out[name] = (reason is not None, reason)
        return out


def _stale_reason(state: _DeviceState, now: float) -> str | None:
    """Why a device's values are stale, or None: its last poll failed, or no poll has worked
    for 2.5 intervals (counted from the assignment before the first, which its phase may put
    up to an interval away)."""
    if state.error is not None:
        return state.error
    since = state.last_ok or state.assigned_at
    if now - since <= 2.5 * state.interval:
        return None
    return f"no poll for {now - since:.0f}s" if state.last_ok else "no poll yet"


def _selector(where: Sequence[str]) -> Selector:
    try:
        return Selector.parse(list(where))
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="where", fix=exc.fix) from None


def _body(profile: Profile) -> dict[str, Any]:
    body: dict[str, Any] = profile.model_dump(mode="json")
    return body
