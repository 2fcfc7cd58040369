"""Jobs: turn a request into per-device tasks, run them on the engine, record the results.

A job answers at once with its id. The store keeps a child job per device; the engine's task
for a device carries that child id. Result updates are buffered and written in batches (the
recorder); when every device of a job is final, its webhook fires and long-polls wake.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import structlog
from sqlalchemy.exc import IntegrityError

from netfleet.domain.errors import (
    BackendUnavailable,
    InvalidInput,
    NotFound,
    Overloaded,
    RenderError,
)
from netfleet.domain.jobs import (
    DeviceResult,
    DeviceTask,
    JobKind,
    JobRequest,
    JobView,
    Status,
)
from netfleet.domain.ports import Target
from netfleet.domain.selectors import Selector, is_glob
from netfleet.engine import Engine
from netfleet.services.cluster import ClusterWork
from netfleet.services.webhooks import WebhookSender
from netfleet.store import Store
from netfleet.store.batch import WriteBatcher
from netfleet.store.db import Tx
from netfleet.store.records import Device, Facts, JobDetail, JobResult, ResultUpdate

log = structlog.get_logger("netfleet.jobs")

TARGET_TTL = 60.0  # seconds a resolved target (credentials) is used before it is re-read
TARGET_BATCH = 1000  # targets read by one query


@dataclass
class _Running:
    view: JobView  # as submitted; results fill in as devices finish
    children: dict[str, str]  # child job id -> device
    remaining: set[str]
    webhook: str | None
    results: dict[str, DeviceResult] = field(default_factory=dict)  # by device
    done: asyncio.Event = field(default_factory=asyncio.Event)
    since: float = field(default_factory=time.monotonic)

    def finished(self) -> JobView:
        """The job's final view, from memory: the same as the store will hold once recorded
        (the store derives status and counts by the same rule)."""
        results = [self.results[d] for d in sorted(self.results)]
        succeeded = sum(r.status == Status.SUCCEEDED for r in results)
        cancelled = sum(r.status == Status.CANCELLED for r in results)
        failed = len(results) - succeeded - cancelled
        status = (Status.SUCCEEDED if succeeded == len(results)
                  else Status.CANCELLED if cancelled else Status.FAILED)
        return self.view.model_copy(update={
            "status": status, "results": results,
            "finished_at": max((r.finished_at for r in results if r.finished_at), default=None),
            "counts": {"succeeded": succeeded, "failed": failed, "cancelled": cancelled,
                       "pending": 0}})


def selector_for(request: JobRequest) -> Selector:
    terms = list(request.where)
    if request.device:
        terms.append(f"name={request.device}")
    try:
        return Selector.parse(terms)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="device" if request.device and not request.where
                           else "where", fix=exc.fix) from None


def view(detail: JobDetail, *, with_results: bool = True) -> JobView:
    job = detail.job
    counts = {"succeeded": job.succeeded, "failed": job.failed, "cancelled": job.cancelled,
              "pending": job.total - job.done}
    return JobView(
        id=job.id, kind=JobKind(job.kind), status=Status(job.status),
        created_at=job.created_at, finished_at=job.finished_at, devices=job.total,
        counts=counts, request=dict(job.spec),
        results=[_result(job.id, r) for r in detail.results] if with_results else [],
    )


def _result(job_id: str, r: JobResult) -> DeviceResult:
    return DeviceResult.model_validate({
        "job_id": job_id, "device": r.device, "status": r.status, "category": r.category,
        "message": r.message, "outputs": r.outputs, "diff": r.diff, "queued_at": r.queued_at,
        "started_at": r.started_at, "finished_at": r.finished_at,
        "session_reused": r.session_reused, "attempt": r.attempt,
    })


class JobService:
    FLUSH_INTERVAL = 0.05
    FLUSH_BATCH = 500
    CLUSTER_POLL = 0.5  # in a cluster: seconds between looks for jobs recorded elsewhere

    def __init__(self, *, store: Store, engine_factory: Callable[[JobService], Engine],
                 render: Callable[[str, dict[str, Any]], str],
                 config_lines: Callable[[str], list[str]],
                 webhooks: WebhookSender | None = None,
                 remote: ClusterWork | None = None) -> None:
        self.store = store
        # In a cluster, tasks go to the agents through Redis instead of the local engine.
        self.remote = remote
        self.render = render
        self.config_lines = config_lines
        self.webhooks = webhooks
        self.engine = engine_factory(self)
        self._running: dict[str, _Running] = {}
        self._parent_of: dict[str, str] = {}  # child job id -> job, until the child ends
        # In a cluster the queues are the agents': what this controller has in flight per
        # device, bounded by the same limits as an engine's queues (admission, 429).
        self._in_flight: Counter[str] = Counter()
        self._unrecorded: dict[str, str] = {}  # ended children not yet in the store -> job
        self._unrecorded_per_job: Counter[str] = Counter()
        self._buffer: dict[str, DeviceResult] = {}
        self._wake = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None
        self._closing = False
        # Jobs that just ended, served from memory while their results are being recorded.
        self._recent: OrderedDict[str, JobView] = OrderedDict()
        self._recording: dict[str, _Running] = {}  # ended facts jobs, until recorded
        self._targets: dict[str, tuple[float, Target | None]] = {}
        self._wanted: dict[str, asyncio.Future[None]] = {}  # targets the loader is to read
        self._loader: asyncio.Task[None] | None = None
        self._devices_known: dict[str, tuple[float, Device]] = {}  # by name, as last read
        self._watch: asyncio.Task[None] | None = None  # in a cluster: see _watch_store

    async def recover(self) -> int:
        """At start: results left queued or running by a netfleet that stopped are failed
        (`interrupted`), so their jobs end; returns how many. Queued work is not re-run: a
        change submitted before a crash may no longer be wanted, and the user is told."""
        async with self.store.transaction() as tx:
            count = await tx.jobs.interrupt_unfinished()
        if count:
            log.warning("jobs interrupted by the last stop marked failed", results=count)
        return count

    # -- submit ----------------------------------------------------------------------------
    async def submit(self, request: JobRequest, requested_by: str = "", *,
                     writes: WriteBatcher | None = None) -> JobView:
        """Accept the job: stored, queued on its devices' actors, answered with its id. With
        `writes`, it is stored in that batcher's next group commit, beside other writers'
        (deployment planners submit a config job per node: on SQLite, a transaction each
        queued behind one another)."""
        _check(request)
        selector = selector_for(request)
        try:
            return await self._submit(request, selector, requested_by, writes)
        except IntegrityError:
            # A device was deleted since we cached it (another controller, say): look again.
            self.forget(list(self._devices_known))
            return await self._submit(request, selector, requested_by, writes)

    async def _submit(self, request: JobRequest, selector: Selector, requested_by: str,
                      writes: WriteBatcher | None = None) -> JobView:
        if writes is None:
            async with self.store.transaction() as tx:
                detail, tasks = await self._create(tx, request, selector, requested_by)
        else:
            detail, tasks = await writes.write(
                partial(self._create, request=request, selector=selector,
                        requested_by=requested_by))
        children = {r.job_id: r.device for r in detail.results if r.device in tasks}
        submitted = view(detail)
        self._running[detail.job.id] = _Running(submitted, children, set(children),
                                                request.webhook)
        for child, device in children.items():
            self._parent_of[child] = detail.job.id
            if self.remote is not None:
                self._in_flight[device] += 1
        if self.remote is not None:  # another controller may record it: watch the store
            self._start_watch()
        self._start_recorder()
        queued = [tasks[device].model_copy(update={"job_id": child})
                  for child, device in children.items()]
        if self.remote is None:
            self.engine.submit(queued)
        else:
            targets = {t.device: target for t in queued
                       if (target := self._targets.get(t.device, (0, None))[1]) is not None}
            try:
                await self.remote.submit(queued, targets)
            except BackendUnavailable:
                await self._not_queued(detail.job.id, children)
                raise  # 503: nothing was queued; the job is stored as failed
        return submitted

    def _end_child(self, child: str, device: str) -> None:
        if self._parent_of.pop(child, None) is None or self.remote is None:
            return
        self._in_flight[device] -= 1
        if self._in_flight[device] <= 0:
            del self._in_flight[device]

    def _admit_remote(self, tasks: Sequence[DeviceTask]) -> None:
        """Overloaded (429) if these tasks would overfill this controller's share of the
        queues: per device, what it has in flight less the one that may be running."""
        limits = self.engine.limits
        total = sum(self._in_flight.values())
        if total + len(tasks) > limits.max_pending:
            raise Overloaded(f"{total} device tasks are waiting; the limit is "
                             f"{limits.max_pending}", retry_after=5.0)
        for device, count in Counter(t.device for t in tasks).items():
            waiting = max(0, self._in_flight[device] - 1)
            if waiting + count > limits.per_device_queue:
                raise Overloaded(f"device {device} has {waiting} tasks waiting; the limit is "
                                 f"{limits.per_device_queue}", retry_after=2.0)

    async def _not_queued(self, job: str, children: Mapping[str, str]) -> None:
        """Redis could not take the job's work: end the stored job (failed, category
        `backend`) so that nothing waits for it, and forget it here."""
        self._running.pop(job, None)
        for child, device in children.items():
            self._end_child(child, device)
        updates = [ResultUpdate(job_id=child, status="failed", category="backend",
                                message="Redis was unreachable: the job was not queued; "
                                        "submit it again") for child in children]
        with contextlib.suppress(Exception):
            async with self.store.transaction() as tx:
                await tx.jobs.record_results(updates)

    async def _create(self, tx: Tx, request: JobRequest, selector: Selector,
                      requested_by: str) -> tuple[JobDetail, dict[str, DeviceTask]]:
        """Store the job (or raise before writing anything). Devices and credentials come
        from a short-lived cache when the job names one device, the common interactive case;
        selectors are resolved in the same transaction."""
        devices = self._cached_device(request) or await self._devices(tx, selector)
        if not devices:
            raise InvalidInput("no device matches",
                               field="where" if request.where else "device",
                               fix="check the names with `netfleet devices list`")
        names = [d.name for d in devices]
        await self._cache_targets(names, tx)
        missing = [n for n in names if self._targets.get(n, (0, None))[1] is None]
        if missing:
            raise InvalidInput(f"no credentials for {', '.join(missing[:5])}"
                               + (" …" if len(missing) > 5 else ""), field="device",
                               fix="give the devices a credentials profile")
        tasks = {d.name: self._task("", request, d) for d in devices}  # renders: 422
        if self.remote is None:  # Overloaded before anything is stored
            self.engine.admit(list(tasks.values()))
        else:
            self._admit_remote(list(tasks.values()))
        spec = request.model_dump(mode="json", exclude_none=True,
                                  exclude={"device", "where", "vars"})
        detail = await tx.jobs.create(request.kind.value, spec, selector,
                                      requested_by=requested_by or None,
                                      devices=[(d.id, d.name) for d in devices])
        return detail, tasks

    def _cached_device(self, request: JobRequest) -> list[Device]:
        if request.where or not request.device or is_glob(request.device):
            return []
        at, device = self._devices_known.get(request.device, (-1e9, None))
        if device is None or time.monotonic() - at > TARGET_TTL:
            return []
        return [device]

    async def _devices(self, tx: Any, selector: Selector) -> list[Device]:
        found: list[Device] = await tx.devices.find_all(selector)
        now = time.monotonic()
        for device in found:
            self._devices_known[device.name] = (now, device)
        while len(self._devices_known) > 100_000:  # a bound, not a policy: oldest go
            del self._devices_known[next(iter(self._devices_known))]
        return found

    def _task(self, job_id: str, request: JobRequest, device: Device) -> DeviceTask:
        lines = list(request.lines)
        if request.kind is JobKind.CONFIG and request.template:
            variables = {**device.vars,
                         "device": {"name": device.name, "platform": device.platform,
                                    "host": device.host, "site": device.site,
                                    "tags": list(device.tags)},
                         **request.vars}
            try:
                lines = self.config_lines(self.render(request.template, variables))
            except RenderError as exc:
                raise InvalidInput(f"{device.name}: {exc.message}", field="template",
                                   fix="pass the variable in `vars` or in the device's vars"
                                   ) from None
        return DeviceTask(job_id=job_id, device=device.name, kind=request.kind,
                          commands=list(request.commands), lines=lines,
                          dry_run=request.dry_run, save=request.save, ordered=request.ordered,
                          parse=request.parse, timeout=request.timeout)

    # -- targets (credentials) for the engine ----------------------------------------------
    async def _cache_targets(self, names: Sequence[str], tx: Any = None, *,
                             force: bool = False) -> None:
        now = time.monotonic()
        stale = list(names) if force else [
            n for n in names if now - self._targets.get(n, (-1e9, None))[0] > TARGET_TTL]
        if not stale:
            return
        if tx is not None:
            found = await tx.devices.targets(stale)
        else:
            async with self.store.transaction(readonly=True) as own:
                found = await own.devices.targets(stale)
        for name in stale:
            self._targets[name] = (now, found.get(name))

    async def resolve(self, name: str) -> Target:
        """The device's connection target, for the engine (every job and every poll).

        A cached target past its age is still used, and refreshed behind the caller's back,
        together with up to a thousand others past half their age: a polled fleet costs one
        lookup per thousand devices per TARGET_TTL, and no poll ever waits on the database for
        a target it already has. A change through netfleet (`forget`) takes effect at once;
        the age only bounds how long a change made behind netfleet's back goes unseen. Only a
        target never loaded waits, and callers waiting at the same moment share one query."""
        entry = self._targets.get(name)
        if entry is None:
            [loaded] = self._load([name])
            await asyncio.shield(loaded)  # a caller cancelled leaves the others their query
            entry = self._targets[name]
        elif time.monotonic() - entry[0] > TARGET_TTL and name not in self._wanted:
            now = time.monotonic()
            ageing = [n for n, (t, _) in self._targets.items()
                      if n != name and now - t > TARGET_TTL / 2 and n not in self._wanted]
            self._load([name, *ageing[:TARGET_BATCH - 1]])
        target = entry[1]
        if target is None:
            raise InvalidInput(f"device {name} has no credentials or no longer exists",
                               field="device", fix="give it a credentials profile")
        return target

    def _load(self, names: Sequence[str]) -> list[asyncio.Future[None]]:
        """(Re)load these targets in the loader's next batch: a future per name, done when
        that name is loaded."""
        loop = asyncio.get_running_loop()
        waits = []
        for name in names:
            wanted = self._wanted.get(name)
            if wanted is None:
                wanted = self._wanted[name] = loop.create_future()
            waits.append(wanted)
        if self._loader is None or self._loader.done():
            self._loader = asyncio.create_task(self._load_targets(), name="netfleet-targets")
        return waits

    async def _load_targets(self) -> None:
        """Drain `_wanted` in batches of TARGET_BATCH, one query each, one at a time."""
        while self._wanted:
            await asyncio.sleep(0)  # callers resolving in this same moment join the batch
            batch = dict(itertools.islice(self._wanted.items(), TARGET_BATCH))
            for name in batch:
                del self._wanted[name]
            try:
                await self._cache_targets(list(batch), force=True)
            except Exception as exc:
                log.warning("could not load device targets", devices=len(batch),
                            error=f"{type(exc).__name__}: {exc}")
                for wanted in batch.values():
                    wanted.set_exception(exc)
                    wanted.exception()  # a refresh nobody awaits must not log "never retrieved"
            else:
                for wanted in batch.values():
                    wanted.set_result(None)
            finally:  # cancelled (closing): nobody is left waiting forever
                for wanted in batch.values():
                    wanted.cancel()

    def forget(self, names: Collection[str]) -> None:
        """Inventory changed: drop cached targets so the next job reads them again."""
        for name in names:
            self._targets.pop(name, None)
            self._devices_known.pop(name, None)

    # -- results ---------------------------------------------------------------------------
    def on_result(self, result: DeviceResult) -> None:
        """Engine callback (every status change): buffer; the recorder writes batches.
        A job whose last device just ended is answered from memory at once."""
        self._buffer[result.job_id] = result
        if len(self._buffer) >= self.FLUSH_BATCH:
            self._wake.set()
        if Status(result.status).final:
            self._settled(result)

    def _start_recorder(self) -> None:
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record(), name="netfleet-recorder")

    async def _record(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.FLUSH_INTERVAL)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the store hiccuped: the buffer is kept, try again
                log.exception("recording results failed; retrying")
                await asyncio.sleep(0.5)

    async def flush(self) -> None:
        batch, self._buffer = self._buffer, {}
        if not batch:
            return
        updates = [_update(r) for r in batch.values()]
        facts = [(r.device, r.facts) for r in batch.values()
                 if r.facts and r.status == Status.SUCCEEDED]
        try:
            async with self.store.transaction() as tx:
                await tx.jobs.record_results(updates)
                for device, found in facts:
                    await tx.devices.record_facts(device, _facts(found))
        except Exception:
            for key, value in batch.items():  # nothing accepted is dropped
                self._buffer.setdefault(key, value)
            raise
        for child, result in batch.items():
            if not Status(result.status).final or (job := self._unrecorded.pop(child, None)) \
                    is None:
                continue
            self._unrecorded_per_job[job] -= 1
            if self._unrecorded_per_job[job] <= 0:
                del self._unrecorded_per_job[job]
                self._recent.pop(job, None)  # all recorded: the store answers from now on
                waiting = self._recording.pop(job, None)
                if waiting is not None:
                    waiting.done.set()

    def _settled(self, result: DeviceResult) -> None:
        parent = self._parent_of.get(result.job_id)
        self._end_child(result.job_id, result.device)
        running = self._running.get(parent) if parent else None
        if parent is None or running is None:
            return
        self._unrecorded[result.job_id] = parent
        self._unrecorded_per_job[parent] += 1
        running.remaining.discard(result.job_id)
        running.results[result.device] = result.model_copy(update={"job_id": parent})
        if running.remaining:
            return
        del self._running[parent]
        finished = running.finished()
        if finished.kind is JobKind.FACTS:
            # Its effect is the inventory's facts: answer once they are in the store.
            self._recording[parent] = running
            self._wake.set()
        else:
            self._recent[parent] = finished
            while len(self._recent) > 1000:
                self._recent.popitem(last=False)
            running.done.set()
        if running.webhook and self.webhooks is not None:
            summary = finished.model_dump(mode="json", exclude={"results"})
            self.webhooks.fire(running.webhook, "job.finished", summary)

    # -- in a cluster: jobs recorded by another controller ----------------------------------
    def _start_watch(self) -> None:
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._watch_store(), name="netfleet-job-watch")

    async def _watch_store(self) -> None:
        """Every CLUSTER_POLL seconds, while jobs submitted here are running: ask the store
        which of them ended (another controller recorded their results) and end them here as
        if recorded here — waiters wake, webhooks fire."""
        while self._running and not self._closing:
            await asyncio.sleep(self.CLUSTER_POLL)
            due = [job for job, running in self._running.items()
                   if time.monotonic() - running.since > self.CLUSTER_POLL]
            if not due:
                continue
            try:
                async with self.store.transaction(readonly=True) as tx:
                    ended = await tx.jobs.ended(due)
                for job in ended:
                    await self._ended_elsewhere(job)
            except Exception:
                log.exception("checking on running jobs failed; trying again")

    async def _ended_elsewhere(self, job: str) -> None:
        running = self._running.pop(job, None)
        if running is None:
            return
        for child, device in running.children.items():
            self._end_child(child, device)
        finished = await self._stored(job)
        self._recent[job] = finished
        while len(self._recent) > 1000:
            self._recent.popitem(last=False)
        running.done.set()
        if running.webhook and self.webhooks is not None:
            summary = finished.model_dump(mode="json", exclude={"results"})
            self.webhooks.fire(running.webhook, "job.finished", summary)

    @property
    def buffered(self) -> int:
        """Result updates not yet written."""
        return len(self._buffer)

    @property
    def running_count(self) -> int:
        return len(self._running)

    # -- read ------------------------------------------------------------------------------
    async def get(self, job_id: str, wait: float = 0) -> JobView:
        running = self._running.get(job_id) or self._recording.get(job_id)
        if running is not None and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(running.done.wait(), wait)
        recent = self._recent.get(job_id)
        if recent is not None:
            return recent
        found = await self._stored(job_id)
        if self.remote is not None and running is None and wait > 0:
            # Submitted through another controller: watch the store until it ends.
            deadline = time.monotonic() + wait
            while not found.status.final and time.monotonic() < deadline:
                await asyncio.sleep(min(self.CLUSTER_POLL, max(0.0, deadline - time.monotonic())))
                found = await self._stored(job_id)
        return found

    async def _stored(self, job_id: str) -> JobView:
        async with self.store.transaction(readonly=True) as tx:
            try:
                detail = await tx.jobs.get(job_id)
            except NotFound:
                raise NotFound(f"no job {job_id}") from None
        return view(detail)

    async def list(self, *, status: str | None = None, kind: str | None = None,
                   device: str | None = None, limit: int = 50,
                   after: str | None = None) -> tuple[list[JobView], str | None]:
        async with self.store.transaction(readonly=True) as tx:
            page = await tx.jobs.find(status=status, kind=kind, device=device, limit=limit,
                                      after=after)
        return [view(JobDetail(job=j, results=[]), with_results=False)
                for j in page.items], page.next_cursor

    async def cancel(self, job_id: str) -> JobView:
        async with self.store.transaction() as tx:
            detail = await tx.jobs.cancel(job_id)
        if self.remote is not None:  # the agents holding its devices cancel what is left
            await self.remote.cancel({r.job_id: r.device for r in detail.results
                                      if not Status(r.status).final or r.category == "cancelled"})
            return await self.get(job_id, wait=2)
        running = self._running.get(job_id)
        if running is not None:
            self.engine.cancel(set(running.children))
        return await self.get(job_id, wait=2)

    async def close(self) -> None:
        await self.engine.close()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._loader is not None:
            self._loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loader
        for wanted in self._wanted.values():
            wanted.cancel()
        self._wanted.clear()
        # Let the recorder finish the batch it is writing: cancelling it mid-transaction
        # could leave SQLite's write lock held and the last results unwritten.
        self._closing = True
        self._wake.set()
        if self._recorder is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._recorder, 30)
        await self.flush()


def _update(r: DeviceResult) -> ResultUpdate:
    return ResultUpdate(
        job_id=r.job_id, status=cast(Any, str(r.status)), category=r.category,
        message=r.message,
        outputs=[o.model_dump(mode="json") for o in r.outputs] if r.outputs else None,
        diff=r.diff, started_at=r.started_at, finished_at=r.finished_at,
        session_reused=r.session_reused, attempt=r.attempt or None)


def _facts(found: dict[str, Any]) -> Facts:
    return Facts(model=found.get("model"), serial=found.get("serial"),
                 os_version=found.get("os_version"), hostname=found.get("hostname"),
                 uptime_seconds=found.get("uptime_seconds"))


def _check(request: JobRequest) -> None:
    if not request.device and not request.where:
        raise InvalidInput("say which devices", field="device",
                           fix="give `device` or `where` (e.g. [\"tag=core\"])")
    if request.kind is JobKind.COMMAND and not request.commands:
        raise InvalidInput("a command job needs commands", field="commands",
                           fix="add at least one command, e.g. [\"show version\"]")
    if request.kind is JobKind.CONFIG and not (request.lines or request.template):
        raise InvalidInput("a config job needs lines or a template", field="lines",
                           fix="give `lines` or a Jinja2 `template` with `vars`")


__all__ = ["JobService", "selector_for", "view"]
