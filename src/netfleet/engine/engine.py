"""The engine: routes device tasks to their actors, enforces limits, reports results."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from netfleet.domain.errors import Overloaded, ParseError
from netfleet.domain.jobs import CommandOutput, DeviceResult, DeviceTask, ParseSpec
from netfleet.domain.ports import Driver, Parser, Target
from netfleet.domain.telemetry import Profile, Sample
from netfleet.engine.actor import DeviceActor, Entry, now

log = structlog.get_logger("netfleet.engine")


PRESSURE_STEPS = ((0.9, 8), (0.75, 4), (0.5, 2))  # buffer fill -> poll every n-th tick


@dataclass(frozen=True, slots=True)
class Limits:
    global_concurrency: int = 512  # device operations in flight, all devices together
    per_device_sessions: int = 2  # one runs changes in order; another serves reads beside it
    per_device_queue: int = 1_000
    max_pending: int = 100_000
    idle_timeout: float = 300.0  # close sessions unused this long
    reconnect_backoff_max: float = 30.0


@dataclass(frozen=True, slots=True)
class EngineDeps:
    resolve: Callable[[str], Awaitable[Target]]  # device name -> connection target
    driver_for: Callable[[Target], Driver]
    on_result: Callable[[DeviceResult], None]  # every status change of every device result
    parser: Parser | None = None
    differ: Callable[[str, Sequence[str], str], str] | None = None  # running, lines, platform
    # Every poll's outcome: device, profile, samples, and the failure's category and message
    # (None when it worked). Called on the event loop; must not block.
    on_poll: Callable[[PollOutcome], None] | None = None
    # How full the recorder's buffer is, 0..1. Past half full, polls slow down (back-pressure)
    # so storage that is slow or down loses fewer samples to the buffer's drop-oldest bound.
    poll_pressure: Callable[[], float] | None = None


@dataclass(frozen=True, slots=True)
class PollOutcome:
    device: str
    profile: str
    samples: list[Sample]
    category: str | None = None  # None: the poll worked
    message: str | None = None


@dataclass(slots=True)
class PollStats:
    """Counters since start, for /metrics."""

    ok: int = 0
    failed: int = 0
    overruns: int = 0  # ticks skipped because the previous poll had not finished
    throttled: int = 0  # ticks skipped because the recorder is behind (back-pressure)
    samples: int = 0
    seconds: float = 0.0  # wall time spent in polls, summed


class Engine:
    def __init__(self, deps: EngineDeps, limits: Limits | None = None) -> None:
        self.deps = deps
        self.limits = limits or Limits()
        self.gate = asyncio.Semaphore(self.limits.global_concurrency)
        self.actors: dict[str, DeviceActor] = {}
        self.sessions_opened = 0
        self.queued = 0  # entries in every actor's lanes; actors keep it
        self.poll_stats = PollStats()
        self._reaper: asyncio.Task[None] | None = None

    # -- submitting ------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Tasks and polls waiting in actor queues, all devices together (kept as a count:
        summing the actors' queues on every submit cost O(devices) each)."""
        return self.queued

    def submit(self, tasks: Sequence[DeviceTask]) -> list[DeviceResult]:
        """Queue every task or none: a full queue raises Overloaded before anything is taken."""
        self.admit(tasks)
        self._start_reaper()
        results = []
        for task in tasks:
            result = DeviceResult(job_id=task.job_id, device=task.device, queued_at=now())
            self.report(result)
            actor = self.actors.get(task.device)
            if actor is None:
                actor = self.actors[task.device] = DeviceActor(task.device, self)
            actor.submit(Entry(task, result))
            results.append(result)
        return results

    def admit(self, tasks: Sequence[DeviceTask]) -> None:
        """Raise Overloaded if these tasks would not fit the queues right now."""
        per_device: dict[str, int] = {}
        for task in tasks:
            per_device[task.device] = per_device.get(task.device, 0) + 1
        if self.pending + len(tasks) > self.limits.max_pending:
            raise Overloaded(f"{self.pending} device tasks are waiting; the limit is "
                             f"{self.limits.max_pending}", retry_after=5.0)
        for device, count in per_device.items():
            actor = self.actors.get(device)
            queued = actor.pending if actor else 0
            if queued + count > self.limits.per_device_queue:
                raise Overloaded(f"device {device} has {queued} tasks waiting; the limit is "
                                 f"{self.limits.per_device_queue}", retry_after=2.0)

    def cancel(self, job_ids: Collection[str]) -> int:
        """Cancel these (per-device) jobs: queued ones at once, running ones mid-way."""
        return sum(actor.cancel(job_ids) for actor in list(self.actors.values()))

    # -- called by actors ------------------------------------------------------------------
    def report(self, result: DeviceResult) -> None:
        try:
            self.deps.on_result(result.model_copy(deep=True))
        except Exception:
            log.exception("result callback failed", device=result.device, job=result.job_id)

    def actor_settled(self, actor: DeviceActor) -> None:
        if actor.idle and not actor.slots and not actor.polls:
            self.actors.pop(actor.name, None)

    def polled(self, device: str, profile: str, samples: list[Sample], category: str | None,
               message: str | None) -> None:
        stats = self.poll_stats
        if category is None:
            stats.ok += 1
            stats.samples += len(samples)
        else:
            stats.failed += 1
        if self.deps.on_poll is None:
            return
        try:
            self.deps.on_poll(PollOutcome(device, profile, samples, category, message))
        except Exception:
            log.exception("poll callback failed", device=device, profile=profile)

    def poll_stretch(self) -> int:
        """Poll every n-th tick: 1 while the recorder keeps up; 2, 4, then 8 as its buffer
        passes half, three quarters and nine tenths full. Slower polls keep the newest values
        coming (latest and bottlenecks stay true) while the backlog grows at a fraction of the
        rate, instead of stopping or dropping more."""
        if self.deps.poll_pressure is None:
            return 1
        try:
            fill = self.deps.poll_pressure()
        except Exception:
            log.exception("poll pressure callback failed")
            return 1
        if fill < PRESSURE_STEPS[-1][0]:
            return 1
        return next(n for limit, n in PRESSURE_STEPS if fill >= limit)

    def parse_rows(self, platform: str, command: str, raw: str,
                   spec: ParseSpec) -> list[dict[str, Any]] | None:
        """A poll's parse: rows, or None (that command's metrics are skipped this round)."""
        parser = self.deps.parser
        if parser is None or spec.kind == "none":
            return None
        try:
            return parser.parse(raw, platform=platform, command=command, kind=spec.kind,
                                template=spec.template)
        except ParseError:
            return None

    def parsed(self, platform: str, command: str, raw: str,
               spec: ParseSpec | None) -> CommandOutput:
        output = CommandOutput(command=command, output=raw)
        parser = self.deps.parser
        kind = spec.kind if spec else "textfsm"
        if parser is None or kind == "none":
            return output
        try:
            output.parsed = parser.parse(raw, platform=platform, command=command, kind=kind,
                                         template=spec.template if spec else None)
        except ParseError as exc:
            if spec is not None:  # asked for explicitly: say why it failed
                output.parse_error = exc.message
        return output

    def diff(self, running: str, lines: Sequence[str], platform: str) -> str:
        if self.deps.differ is None:
            return ""
        return self.deps.differ(running, lines, platform)

    # -- telemetry -------------------------------------------------------------------------
    def set_polls(self, plan: Mapping[str, Collection[Profile]]) -> None:
        """Poll each device with these profiles from now on; devices left out stop polling."""
        for name, current in list(self.actors.items()):
            if name not in plan and current.polls:
                current.set_polls(())
                self.actor_settled(current)
        for name, profiles in plan.items():
            actor = self.actors.get(name)
            if actor is None:
                if not profiles:
                    continue
                actor = self.actors[name] = DeviceActor(name, self)
            actor.set_polls(profiles)
        self._start_reaper()

    @property
    def polled_devices(self) -> int:
        return sum(1 for a in self.actors.values() if a.polls)

    # -- sessions --------------------------------------------------------------------------
    @property
    def open_sessions(self) -> int:
        return sum(a.open_sessions for a in self.actors.values())

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="netfleet-session-reaper")

    async def _reap(self) -> None:
        interval = max(0.5, min(30.0, self.limits.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            for actor in list(self.actors.values()):
                await actor.close_idle(self.limits.idle_timeout)
                self.actor_settled(actor)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for actor in list(self.actors.values()):
            await actor.close()
        self.actors.clear()  # closed actors take no work; later work gets new ones
        await asyncio.sleep(0)

    def stats(self) -> dict[str, Any]:
        return {"actors": len(self.actors), "pending": self.pending,
                "open_sessions": self.open_sessions, "sessions_opened": self.sessions_opened,
                "running": sum(len(a.running) for a in self.actors.values()),
                "polled_devices": self.polled_devices}

