"""The telemetry repository: polling profiles, series, samples, rollups and retention.

Writes are built for volume: a series id is looked up (or created) once per series and cached
by the caller, and samples go in as bulk INSERTs of three columns. Reads aggregate in SQL: a
time range of one series is a range scan of the samples' primary key (series_id, ts), and
`step` buckets rows with integer division of the time before they leave the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, delete, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from netfleet.domain.errors import Conflict, InvalidInput, NotFound
from netfleet.domain.selectors import Selector
from netfleet.store._sql import chunked, selector_filter
from netfleet.store.models import (
    DeviceRow,
    TelemetryProfileRow,
    TelemetryRollupRow,
    TelemetrySampleRow,
    TelemetrySeriesRow,
    utcnow,
)

MAX_POINTS = 10_000
MINUTE_MS = 60_000
# Rows per INSERT: three parameters each, well under both databases' parameter limits.
_SAMPLE_CHUNK = 5_000
_SQLITE_INSERT_SAMPLES = (
    "INSERT INTO telemetry_samples (series_id, ts, value) VALUES (?, ?, ?) "
    "ON CONFLICT (series_id, ts) DO NOTHING")


@dataclass(frozen=True, slots=True)
class SeriesKey:
    device: str
    metric: str
    labels: str = ""  # "interface=Gi1/0/1,vlan=10": sorted, as labels_key() makes it
    unit: str = ""


def labels_key(labels: Sequence[tuple[str, str]]) -> str:
    if not labels:  # most device metrics (cpu, memory, latency) carry none
        return ""
    return ",".join(f"{k}={v}" for k, v in sorted(labels))


def parse_labels(key: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in key.split(",") if part) if key else {}


@dataclass(frozen=True, slots=True)
class Point:
    device: str
    metric: str
    labels: dict[str, str]
    unit: str
    ts: int  # epoch milliseconds (a bucket's start when downsampled)
    value: float
    # Downsampled points: the bucket's min, max and count; raw points leave them None.
    min: float | None = None
    max: float | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    name: str
    body: dict[str, Any]
    where: list[str]
    enabled: bool


class TelemetryRepo:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    # -- profiles --------------------------------------------------------------------------
    async def profiles(self) -> list[ProfileRecord]:
        rows = (await self.session.execute(
            select(TelemetryProfileRow).order_by(TelemetryProfileRow.name))).scalars()
        return [_profile(r) for r in rows]

    async def profile(self, name: str) -> ProfileRecord:
        return _profile(await self._profile_row(name))

    async def put_profile(self, name: str, body: dict[str, Any], where: list[str],
                          enabled: bool = True, *, create: bool | None = None) -> ProfileRecord:
        """Create or replace. `create=True` refuses an existing name, `False` a missing one."""
        row = (await self.session.execute(select(TelemetryProfileRow).where(
            TelemetryProfileRow.name == name))).scalar_one_or_none()
        if row is None:
            if create is False:
                raise NotFound(f"no telemetry profile {name!r}")
            row = TelemetryProfileRow(name=name, body=body, where=where, enabled=enabled)
            self.session.add(row)
        else:
            if create is True:
                raise Conflict(f"telemetry profile {name!r} already exists")
            row.body, row.where, row.enabled, row.updated_at = body, where, enabled, utcnow()
        await self.session.flush()
        return _profile(row)

    async def delete_profile(self, name: str) -> None:
        await self.session.delete(await self._profile_row(name))

    async def _profile_row(self, name: str) -> TelemetryProfileRow:
        row = (await self.session.execute(select(TelemetryProfileRow).where(
            TelemetryProfileRow.name == name))).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no telemetry profile {name!r}")
        return row

    # -- writing ---------------------------------------------------------------------------
    async def series_ids(self, keys: Sequence[SeriesKey]) -> dict[SeriesKey, int]:
        """The id of each series, created where new. Keys of devices that no longer exist are
        left out (their samples have nowhere to go)."""
        out: dict[SeriesKey, int] = {}
        names = sorted({k.device for k in keys})
        device_ids: dict[str, int] = {}
        for chunk in chunked(names):
            found = await self.session.execute(
                select(DeviceRow.name, DeviceRow.id).where(DeviceRow.name.in_(chunk)))
            device_ids.update((name, id_) for name, id_ in found)
        wanted = [k for k in keys if k.device in device_ids]
        by_triple = {(device_ids[k.device], k.metric, k.labels): k for k in wanted}
        if not by_triple:
            return out
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        for batch in chunked(list(by_triple.items()), 500):
            await self.session.execute(
                insert(TelemetrySeriesRow).on_conflict_do_nothing(),
                [{"device_id": d, "metric": m, "labels": lab, "unit": key.unit}
                 for (d, m, lab), key in batch])
            rows = await self.session.execute(
                select(TelemetrySeriesRow.id, TelemetrySeriesRow.device_id,
                       TelemetrySeriesRow.metric, TelemetrySeriesRow.labels)
                .where(tuple_(TelemetrySeriesRow.device_id, TelemetrySeriesRow.metric,
                              TelemetrySeriesRow.labels).in_([t for t, _ in batch])))
            for id_, d, m, lab in rows:
                out[by_triple[(d, m, lab)]] = id_
        return out

    async def write(self, rows: Sequence[tuple[int, int, float]]) -> int:
        """Insert samples (series id, epoch ms, value). A sample already stored for the same
        series and time is kept, not duplicated (a retried batch writes nothing twice)."""
        if self.dialect == "postgresql" and rows and await self._copy(rows):
            return len(rows)
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        # Core, on the table: the ORM's bulk path spends more per row than the database does.
        statement = insert(cast(Table, TelemetrySampleRow.__table__)).on_conflict_do_nothing()
        connection = await self.session.connection()
        try:
            for chunk in chunked(rows, _SAMPLE_CHUNK):
                if self.dialect == "sqlite":  # the driver's executemany, one prepared statement
                    await connection.exec_driver_sql(_SQLITE_INSERT_SAMPLES, list(chunk))
                else:
                    await connection.execute(
                        statement, [{"series_id": s, "ts": t, "value": v} for s, t, v in chunk])
        except IntegrityError:  # a series deleted with its device meanwhile
            raise Conflict("a device of these samples was deleted; drop the batch") from None
        return len(rows)

    async def _copy(self, rows: Sequence[tuple[int, int, float]]) -> bool:
        """PostgreSQL's COPY, several times faster than INSERT for a batch. COPY has no ON
        CONFLICT, so it runs under a savepoint: a sample already stored (a batch retried after
        an ambiguous commit) or a series gone with its device rolls it back, and the INSERT
        path, which skips duplicates, does the batch instead. True when COPY did it."""
        try:
            async with self.session.begin_nested():
                # The SAVEPOINT goes out when the nested transaction first asks for the
                # connection, not at begin_nested(): ask before COPY, or a failed COPY aborts
                # the whole transaction.
                connection = await self.session.connection()
                raw = (await connection.get_raw_connection()).driver_connection
                assert raw is not None
                await raw.copy_records_to_table(
                    TelemetrySampleRow.__tablename__, records=rows,
                    columns=["series_id", "ts", "value"])
        except Exception:  # asyncpg's own errors (COPY bypasses SQLAlchemy): let INSERT decide
            return False
        return True

    # -- reading ---------------------------------------------------------------------------
    async def query(self, *, selector: Selector | None, metric: str | None, start_ms: int,
                    end_ms: int, limit: int = 1000, step_ms: int | None = None,
                    labels: str | None = None) -> list[Point]:
        """Points newest first: raw, or averaged per `step_ms` bucket (with min/max/count)."""
        if not 1 <= limit <= MAX_POINTS:
            raise InvalidInput(f"limit {limit} is out of range", field="limit",
                               fix=f"use 1 to {MAX_POINTS}")
        if end_ms <= start_ms:
            raise InvalidInput("end is not after start", field="end",
                               fix="give an end later than the start (or leave both out)")
        where: list[ColumnElement[bool]] = [
            TelemetrySampleRow.ts >= start_ms, TelemetrySampleRow.ts < end_ms]
        if selector is not None:
            where.append(selector_filter(selector, self.dialect))
        if metric is not None:
            where.append(TelemetrySeriesRow.metric == metric)
        if labels is not None:
            where.append(TelemetrySeriesRow.labels == labels)
        series_cols = (DeviceRow.name, TelemetrySeriesRow.metric, TelemetrySeriesRow.labels,
                       TelemetrySeriesRow.unit)
        joined = (TelemetrySampleRow.__table__
                  .join(TelemetrySeriesRow.__table__,
                        TelemetrySeriesRow.id == TelemetrySampleRow.series_id)
                  .join(DeviceRow.__table__, DeviceRow.id == TelemetrySeriesRow.device_id))
        if step_ms is None:
            stmt = (select(*series_cols, TelemetrySampleRow.ts, TelemetrySampleRow.value)
                    .select_from(joined).where(*where)
                    .order_by(TelemetrySampleRow.ts.desc(), DeviceRow.name,
                              TelemetrySeriesRow.metric, TelemetrySeriesRow.labels)
                    .limit(limit))
            return [Point(d, m, parse_labels(lab), u, ts, v)
                    for d, m, lab, u, ts, v in await self.session.execute(stmt)]
        if step_ms < 1000:
            raise InvalidInput(f"step {step_ms} ms is too small", field="step",
                               fix="use a step of at least 1s (e.g. 60s, 5m)")
        bucket = ((TelemetrySampleRow.ts // step_ms) * step_ms).label("bucket")
        stmt = (select(*series_cols, bucket, func.avg(TelemetrySampleRow.value),
                       func.min(TelemetrySampleRow.value), func.max(TelemetrySampleRow.value),
                       func.count())
                .select_from(joined).where(*where)
                .group_by(*series_cols, bucket)
                .order_by(bucket.desc(), DeviceRow.name, TelemetrySeriesRow.metric,
                          TelemetrySeriesRow.labels)
                .limit(limit))
        rows: Any = await self.session.execute(stmt)  # nine columns: past select()'s typing
        return [Point(d, m, parse_labels(lab), u, int(b), float(avg), float(lo), float(hi),
                      int(n))
                for d, m, lab, u, b, avg, lo, hi, n in rows]

    async def newest(self, *, selector: Selector | None, metric: str | None,
                     since_ms: int) -> list[Point]:
        """The newest sample of every series (of the selected devices, of `metric`) that has
        one since `since_ms`: one index seek per series."""
        newer = aliased(TelemetrySampleRow)
        latest = (select(func.max(newer.ts))
                  .where(newer.series_id == TelemetrySeriesRow.id, newer.ts >= since_ms)
                  .scalar_subquery())
        where: list[ColumnElement[bool]] = [TelemetrySampleRow.ts == latest]
        if selector is not None:
            where.append(selector_filter(selector, self.dialect))
        if metric is not None:
            where.append(TelemetrySeriesRow.metric == metric)
        stmt = (select(DeviceRow.name, TelemetrySeriesRow.metric, TelemetrySeriesRow.labels,
                       TelemetrySeriesRow.unit, TelemetrySampleRow.ts, TelemetrySampleRow.value)
                .select_from(TelemetrySeriesRow.__table__
                             .join(DeviceRow.__table__,
                                   DeviceRow.id == TelemetrySeriesRow.device_id)
                             .join(TelemetrySampleRow.__table__,
                                   TelemetrySampleRow.series_id == TelemetrySeriesRow.id))
                .where(*where)
                .order_by(DeviceRow.name, TelemetrySeriesRow.metric, TelemetrySeriesRow.labels))
        return [Point(d, m, parse_labels(lab), u, ts, v)
                for d, m, lab, u, ts, v in await self.session.execute(stmt)]

    # -- maintenance -----------------------------------------------------------------------
    async def roll_up(self, start_ms: int, end_ms: int) -> int:
        """(Re)compute one-minute rollups of the whole minutes in [start, end); idempotent, so
        a maintenance pass may cover a minute twice. Returns rollup rows written."""
        start_ms -= start_ms % MINUTE_MS
        end_ms -= end_ms % MINUTE_MS
        if end_ms <= start_ms:
            return 0
        minute = (TelemetrySampleRow.ts // MINUTE_MS) * MINUTE_MS
        source = (select(TelemetrySampleRow.series_id, minute.label("ts"),
                         func.min(TelemetrySampleRow.value).label("min"),
                         func.avg(TelemetrySampleRow.value).label("avg"),
                         func.max(TelemetrySampleRow.value).label("max"),
                         func.count().label("count"))
                  .where(TelemetrySampleRow.ts >= start_ms, TelemetrySampleRow.ts < end_ms)
                  .group_by(TelemetrySampleRow.series_id, minute))
        # (The WHERE matters on SQLite too: INSERT … SELECT … ON CONFLICT needs one there.)
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        statement = insert(TelemetryRollupRow).from_select(
            ["series_id", "ts", "min", "avg", "max", "count"], source)
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=["series_id", "ts"],
            set_={"min": excluded.min, "avg": excluded.avg, "max": excluded.max,
                  "count": excluded.count})
        result = await self.session.execute(statement)
        return int(getattr(result, "rowcount", 0) or 0)

    async def rollups(self, series_metric: str, start_ms: int, end_ms: int,
                      selector: Selector | None = None, limit: int = 1000) -> list[Point]:
        where: list[ColumnElement[bool]] = [
            TelemetryRollupRow.ts >= start_ms, TelemetryRollupRow.ts < end_ms,
            TelemetrySeriesRow.metric == series_metric]
        if selector is not None:
            where.append(selector_filter(selector, self.dialect))
        stmt = (select(DeviceRow.name, TelemetrySeriesRow.metric, TelemetrySeriesRow.labels,
                       TelemetrySeriesRow.unit, TelemetryRollupRow.ts, TelemetryRollupRow.avg,
                       TelemetryRollupRow.min, TelemetryRollupRow.max,
                       TelemetryRollupRow.count)
                .join(TelemetrySeriesRow, TelemetrySeriesRow.id == TelemetryRollupRow.series_id)
                .join(DeviceRow, DeviceRow.id == TelemetrySeriesRow.device_id)
                .where(*where).order_by(TelemetryRollupRow.ts.desc(), DeviceRow.name)
                .limit(limit))
        rows: Any = await self.session.execute(stmt)  # nine columns: past select()'s typing
        return [Point(d, m, parse_labels(lab), u, ts, avg, lo, hi, n)
                for d, m, lab, u, ts, avg, lo, hi, n in rows]

    async def drop_older_than(self, raw_before_ms: int, rollups_before_ms: int) -> int:
        """Retention: raw samples and rollups older than their cut-offs. Returns rows gone."""
        gone = 0
        for table, cutoff in ((TelemetrySampleRow, raw_before_ms),
                              (TelemetryRollupRow, rollups_before_ms)):
            result = await self.session.execute(
                delete(table).where(table.ts < cutoff)
                .execution_options(synchronize_session=False))
            gone += int(getattr(result, "rowcount", 0) or 0)
        return gone


def _profile(row: TelemetryProfileRow) -> ProfileRecord:
    return ProfileRecord(name=row.name, body=dict(row.body), where=list(row.where),
                         enabled=row.enabled)
