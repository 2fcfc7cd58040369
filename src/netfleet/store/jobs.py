"""The job repository: a job per request, a child job and a result per device, kept in step.

A job's progress lives in counters on its row (total, succeeded, failed, cancelled), moved by
one atomic UPDATE per batch of results; the update that brings done to total finishes the job.
Results are the source of truth for each device: once terminal they never change again, so
`record_results` tells the engine (by what it returns) that a cancelled device must not run.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, case, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from netfleet.domain.errors import Conflict, InvalidInput, NotFound
from netfleet.domain.selectors import Selector, is_glob
from netfleet.store._sql import chunked, selector_filter
from netfleet.store.models import DeviceRow, JobResultRow, JobRow, UTCDateTime, utcnow
from netfleet.store.records import (
    JOB_KINDS,
    RESULT_STATUSES,
    TERMINAL,
    Job,
    JobDetail,
    JobKind,
    JobResult,
    Page,
    ResultStatus,
    ResultUpdate,
)

MAX_PAGE = 500
BACKEND_LOST = ("Redis restarted without its data while this waited or ran; it may or may "
                "not have run on the device: check the device and submit the job again")
INTERRUPTED_QUEUED = "netfleet stopped before this device ran; submit the job again"
INTERRUPTED_RUNNING = ("netfleet stopped while this ran on the device; check the device "
                       "before running it again")
_FAILED = ("failed", "timed_out")


@dataclass
class _Progress:
    """What one batch of results adds to a parent job."""

    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    first_activity: datetime | None = None

    def count(self, status: str, at: datetime) -> None:
        if self.first_activity is None or at < self.first_activity:
            self.first_activity = at
        if status == "succeeded":
            self.succeeded += 1
        elif status in _FAILED:
            self.failed += 1
        elif status == "cancelled":
            self.cancelled += 1


class JobRepo:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    async def create(self, kind: str, spec: Mapping[str, Any], selector: Selector, *,
                     requested_by: str | None = None,
                     devices: Sequence[tuple[int, str]] | None = None) -> JobDetail:
        """A job over every device `selector` matches: the job, a child job and a queued
        result per device, in the caller's transaction. A caller that has just resolved the
        selector passes the (id, name) of its devices and saves the lookup; a device deleted
        since then fails the insert (foreign key), and the caller resolves again."""
        if kind not in JOB_KINDS:
            raise InvalidInput(f"job kind {kind!r} is unknown", field="kind",
                               fix="use command, config or facts")
        try:
            json.dumps(spec)
        except (TypeError, ValueError):
            raise InvalidInput("the job spec is not JSON", field="spec",
                               fix="use strings, numbers, booleans, lists and mappings") from None
        if devices is None:
            devices = await self._devices(selector)
        now = utcnow()
        parent_id = str(uuid.uuid4())
        base: dict[str, Any] = {
            "kind": kind, "requested_by": requested_by, "created_at": now, "started_at": None,
            "finished_at": None, "status": "queued", "succeeded": 0, "failed": 0, "cancelled": 0}
        parent: dict[str, Any] = {
            "id": parent_id, "spec": dict(spec), "selector": selector.to_dict(),
            "parent_id": None, "device_id": None, "total": len(devices), **base}
        await self.session.execute(insert(JobRow).values(**parent))
        children: list[dict[str, Any]] = [
            {"id": str(uuid.uuid4()), "spec": {}, "selector": None, "parent_id": parent_id,
             "device_id": device_id, "total": 1, **base}
            for device_id, _ in devices]
        results: list[dict[str, Any]] = [
            {"job_id": child["id"], "device_name": name, "status": "queued", "category": None,
             "message": None, "outputs": [], "diff": None, "queued_at": now, "started_at": None,
             "finished_at": None, "session_reused": False, "attempt": 0}
            for child, (_, name) in zip(children, devices, strict=True)]
        for batch in chunked(children):
            await self.session.execute(insert(JobRow), list(batch))
        for batch in chunked(results):
            await self.session.execute(insert(JobResultRow), list(batch))
        job = Job(**{**parent, "selector": selector, "spec": dict(spec)})
        return JobDetail(job=job, results=[_result_from(r, parent_id) for r in results])

    async def get(self, job_id: str) -> JobDetail:
        """The job and its results: every device's for a job, its own for a child."""
        job = await self._job(job_id)
        stmt = select(JobResultRow, JobRow.parent_id).join(JobRow, JobRow.id == JobResultRow.job_id)
        stmt = stmt.where(JobRow.id == job_id if job.parent_id else JobRow.parent_id == job_id)
        rows = await self.session.execute(
            stmt.order_by(JobResultRow.device_name).execution_options(populate_existing=True))
        return JobDetail(job=job, results=[_result(r, parent) for r, parent in rows])

    async def ended(self, job_ids: Sequence[str]) -> list[str]:
        """Which of these jobs have ended (any final status)."""
        found: list[str] = []
        for chunk in chunked(list(job_ids)):
            found += (await self.session.execute(
                select(JobRow.id).where(JobRow.id.in_(chunk), JobRow.status.in_(TERMINAL))
            )).scalars().all()
        return found

    async def find(self, *, status: str | None = None, kind: str | None = None,
                   device: str | None = None, limit: int = 50,
                   after: str | None = None) -> Page[Job]:
        """Jobs as submitted (not their children), newest first."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit {limit} is out of range", field="limit",
                               fix=f"use 1 to {MAX_PAGE}")
        stmt = select(JobRow).where(JobRow.parent_id.is_(None))
        if status is not None:
            stmt = stmt.where(JobRow.status == _choice(status, RESULT_STATUSES, "status"))
        if kind is not None:
            stmt = stmt.where(JobRow.kind == _choice(kind, JOB_KINDS, "kind"))
        if device is not None:
            child = select(JobRow.parent_id).join(JobResultRow, JobResultRow.job_id == JobRow.id)
            stmt = stmt.where(JobRow.id.in_(child.where(JobResultRow.device_name == device)))
        if after is not None:
            stmt = stmt.where(_older_than(*_decode_cursor(after)))
        stmt = stmt.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit + 1)
        rows = (await self.session.execute(
            stmt.execution_options(populate_existing=True))).scalars().all()
        items = [_job(r) for r in rows[:limit]]
        cursor = _encode_cursor(items[-1]) if len(rows) > limit else None
        return Page(items, cursor)

    async def update_result(self, update: ResultUpdate) -> bool:
        """Apply the engine's report on one device. False: the result was already final (e.g.
        the job was cancelled) and nothing changed; the engine must not run or report it."""
        return await self.record_results([update]) == 1

    async def record_results(self, updates: Sequence[ResultUpdate]) -> int:
        """Apply a batch of reports, in the order given for any one device; returns how many
        were applied (see update_result). Reports for unknown jobs, for ended ones and from
        an attempt before the one recorded are ignored."""
        for change in updates:
            if change.status not in RESULT_STATUSES:
                raise InvalidInput(f"result status {change.status!r} is unknown",
                                   field="status", fix=f"use one of {', '.join(RESULT_STATUSES)}")
        rows = await self._lock_results(sorted({u.job_id for u in updates}))
        now = utcnow()
        progress: dict[str, _Progress] = {}
        applied = 0
        for change in updates:
            if (pair := rows.get(change.job_id)) is None or pair[0].status in TERMINAL:
                continue
            if change.attempt and change.attempt < pair[0].attempt:
                # From an earlier run than the one recorded (recorders changed hands in
                # between): the later run's reports stand.
                continue
            result, child = pair
            _apply(result, child, change, now)
            applied += 1
            if child.parent_id is not None and change.status != "queued":
                at = change.finished_at or change.started_at or now
                progress.setdefault(child.parent_id, _Progress()).count(change.status, at)
        # The flush writes the changed rows with one executemany per table.
        await self.session.flush()
        for parent in sorted(progress):
            await self._advance(parent, progress[parent], now)
        return applied

    async def fail_lost(self, before: datetime) -> int:
        """Fail every device result still queued or running of the jobs accepted before
        `before` (category `backend_lost`): their work was in a Redis that restarted without
        persistence, and no agent will run it. Returns how many results were failed."""
        rows = await self.session.execute(
            select(JobResultRow.job_id)
            .join(JobRow, JobRow.id == JobResultRow.job_id)
            .where(JobResultRow.status.in_(("queued", "running")), JobRow.created_at < before)
            .order_by(JobResultRow.job_id))
        updates = [ResultUpdate(job_id=job_id, status="failed", category="backend_lost",
                                message=BACKEND_LOST) for job_id in rows.scalars()]
        return await self.record_results(updates) if updates else 0

    async def interrupt_unfinished(self) -> int:
        """Fail every device result still queued or running (category `interrupted`): at the
        start of an embedded engine, that work died with the process that held it, and no job
        may wait for it forever. Returns how many results were failed."""
        rows = await self.session.execute(
            select(JobResultRow.job_id, JobResultRow.status)
            .where(JobResultRow.status.in_(("queued", "running"))).order_by(JobResultRow.job_id))
        updates = [ResultUpdate(
            job_id=job_id, status="failed", category="interrupted",
            message=INTERRUPTED_RUNNING if status == "running" else INTERRUPTED_QUEUED)
            for job_id, status in rows]
        return await self.record_results(updates) if updates else 0

    async def cancel(self, job_id: str) -> JobDetail:
        """Cancel every device of the job that has not started. Devices already running are
        left to the engine, which is told separately; they finish or report cancelled."""
        job = await self._job(job_id)
        if job.status in TERMINAL:
            raise Conflict(f"job {job_id} already {job.status.replace('_', ' ')}; "
                           f"there is nothing left to cancel")
        now = utcnow()
        if job.parent_id is None:
            mine: ColumnElement[bool] = JobResultRow.job_id.in_(
                select(JobRow.id).where(JobRow.parent_id == job_id))
            parent = job_id
        else:
            mine, parent = JobResultRow.job_id == job_id, job.parent_id
        # Lock the queued results in job_id order, the order record_results writes in: a
        # cancel racing a batch of results then waits for it instead of deadlocking with it.
        queued = list((await self.session.execute(
            select(JobResultRow.job_id).where(mine, JobResultRow.status == "queued")
            .order_by(JobResultRow.job_id).with_for_update())).scalars())
        count = 0
        for chunk in chunked(queued):
            done = await self.session.execute(
                update(JobResultRow)
                .where(JobResultRow.job_id.in_(chunk), JobResultRow.status == "queued")
                .values(status="cancelled", category="cancelled", finished_at=now,
                        message="cancelled before it started")
                .execution_options(synchronize_session=False))
            count += _rowcount(done)
            await self.session.execute(
                update(JobRow).where(JobRow.id.in_(chunk))
                .values(status="cancelled", finished_at=now, cancelled=1)
                .execution_options(synchronize_session=False))
        if count:
            await self._advance(parent, _Progress(cancelled=count), now)
        return await self.get(job_id)

    # -- helpers ---------------------------------------------------------------------------

    async def _devices(self, selector: Selector) -> list[tuple[int, str]]:
        stmt = (select(DeviceRow.id, DeviceRow.name)
                .where(selector_filter(selector, self.dialect)).order_by(DeviceRow.name))
        devices = [(r.id, r.name) for r in await self.session.execute(stmt)]
        found = {name for _, name in devices}
        missing = [n for n in selector.names if not is_glob(n) and n not in found]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise NotFound(f"no device {', '.join(map(repr, missing[:5]))}{more} matches the "
                           f"selector ({selector})")
        if not devices:
            raise InvalidInput(f"the selector ({selector}) matches no device", field="selector",
                               fix="list the devices it should match, and check the selector "
                                   "against their names, tags, platform and site")
        return devices

    async def _job(self, job_id: str) -> Job:
        stmt = (select(JobRow).where(JobRow.id == job_id)
                .execution_options(populate_existing=True))
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return _job(row)

    async def _lock_results(self, job_ids: Sequence[str]
                            ) -> dict[str, tuple[JobResultRow, JobRow]]:
        """Each child's result and job row, locked in job_id order: every writer (this and
        cancel) locks in that order, so concurrent batches wait for each other rather than
        deadlock."""
        out: dict[str, tuple[JobResultRow, JobRow]] = {}
        for chunk in chunked(job_ids):
            stmt = (select(JobResultRow, JobRow).join(JobRow, JobRow.id == JobResultRow.job_id)
                    .where(JobResultRow.job_id.in_(chunk)).order_by(JobResultRow.job_id)
                    .with_for_update().execution_options(populate_existing=True))
            out.update((r.job_id, (r, j)) for r, j in await self.session.execute(stmt))
        return out

    async def _advance(self, parent: str, progress: _Progress, now: datetime) -> None:
        """Add a batch's progress to the parent in one atomic UPDATE (the row lock orders
        concurrent batches); whichever brings done to total finishes the job."""
        values: dict[str, Any] = {
            "succeeded": JobRow.succeeded + progress.succeeded,
            "failed": JobRow.failed + progress.failed,
            "cancelled": JobRow.cancelled + progress.cancelled,
            "status": case((JobRow.status == "queued", "running"), else_=JobRow.status),
        }
        if progress.first_activity is not None:
            values["started_at"] = func.coalesce(
                JobRow.started_at, literal(progress.first_activity, UTCDateTime()))
        row = (await self.session.execute(
            update(JobRow).where(JobRow.id == parent).values(**values)
            .returning(JobRow.total, JobRow.succeeded, JobRow.failed, JobRow.cancelled)
            .execution_options(synchronize_session=False))).one()
        if row.succeeded + row.failed + row.cancelled < row.total:
            return
        final = ("succeeded" if row.succeeded == row.total
                 else "cancelled" if row.cancelled else "failed")
        await self.session.execute(
            update(JobRow).where(JobRow.id == parent, JobRow.finished_at.is_(None))
            .values(status=final, finished_at=now)
            .execution_options(synchronize_session=False))


def _apply(result: JobResultRow, child: JobRow, change: ResultUpdate, now: datetime) -> None:
    """One report onto a result row and its child job row (status, times and counters)."""
    for field in ("category", "message", "outputs", "diff", "session_reused", "attempt"):
        if (value := getattr(change, field)) is not None:
            setattr(result, field, value)
    if change.started_at is not None or change.status == "running":
        result.started_at = child.started_at = change.started_at or now
    if change.status in TERMINAL:
        result.finished_at = child.finished_at = change.finished_at or now
    result.status = child.status = change.status
    child.succeeded = int(change.status == "succeeded")
    child.failed = int(change.status in _FAILED)
    child.cancelled = int(change.status == "cancelled")


def _choice(value: str, allowed: Sequence[str], field: str) -> str:
    if value not in allowed:
        raise InvalidInput(f"{field} {value!r} is unknown", field=field,
                           fix=f"use one of {', '.join(allowed)}")
    return value


def _older_than(created_at: datetime, job_id: str) -> ColumnElement[bool]:
    return or_(JobRow.created_at < created_at,
               and_(JobRow.created_at == created_at, JobRow.id < job_id))


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|", 1)
        at = datetime.fromisoformat(created)
        if at.tzinfo is None:
            raise ValueError(created)
        return at, job_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(f"cursor {cursor!r} is not one this server gave out", field="after",
                           fix="pass the next_cursor of the previous page, or leave it out"
                           ) from None


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def _job(row: JobRow) -> Job:
    # CHECK constraints hold kind and status to their literals.
    return Job(
        id=row.id, kind=cast(JobKind, row.kind), spec=dict(row.spec),
        selector=None if row.selector is None else Selector.from_dict(row.selector),
        status=cast(ResultStatus, row.status), parent_id=row.parent_id, device_id=row.device_id,
        requested_by=row.requested_by, created_at=row.created_at, started_at=row.started_at,
        finished_at=row.finished_at, total=row.total, succeeded=row.succeeded,
        failed=row.failed, cancelled=row.cancelled)


def _result(row: JobResultRow, parent_id: str | None) -> JobResult:
    return JobResult(
        job_id=row.job_id, parent_id=parent_id, device=row.device_name,
        status=cast(ResultStatus, row.status), category=row.category, message=row.message,
        outputs=list(row.outputs), diff=row.diff, queued_at=row.queued_at,
        started_at=row.started_at, finished_at=row.finished_at,
        session_reused=row.session_reused, attempt=row.attempt)


def _result_from(values: Mapping[str, Any], parent_id: str) -> JobResult:
    return JobResult(
        job_id=values["job_id"], parent_id=parent_id, device=values["device_name"],
        status=values["status"], category=None, message=None, outputs=[], diff=None,
        queued_at=values["queued_at"], started_at=None, finished_at=None,
        session_reused=False, attempt=0)
