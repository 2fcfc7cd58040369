"""Per-device means of device-level metrics over a time window, computed in SQL: the input of
bottleneck detection (analytics/bottlenecks.py), for every device of a selector at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from netfleet.domain.errors import InvalidInput
from netfleet.domain.selectors import Selector
from netfleet.store._sql import selector_filter
from netfleet.store.models import DeviceRow, TelemetrySampleRow, TelemetrySeriesRow

DEFAULT_METRICS = ("latency_ms", "throughput_bps", "error_rate")


@dataclass(frozen=True, slots=True)
class DeviceAggregate:
    """One device's metrics over a window: the mean and the number of samples behind it.

    A metric the device has no sample of in the window is absent from both mappings.
    """

    device: str
    platform: str
    site: str | None
    values: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)


async def window_aggregates(
    session: AsyncSession,
    dialect: str,
    selector: Selector | None,
    start_ms: int,
    end_ms: int,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> list[DeviceAggregate]:
    """AVG and COUNT per device and metric over samples with start_ms <= ts < end_ms, for the
    device-level series (labels '') of `metrics` on the devices `selector` picks (None: all).

    One statement; only one row per (device, metric) leaves the database, never the samples.
    Devices without a sample in the window are absent. Sorted by device name.

    Which indexes serve it (EXPLAIN on both databases: 1,000 devices with device-level and
    interface-level series, the window a twelfth of the stored time):
    - telemetry_series by ix_telemetry_series_metric_labels on both: `metric IN (…) AND
      labels = ''` is an equality on both of its columns, so only the device-level series of
      the wanted metrics are read, never the interface series that outnumber them.
    - SQLite (no ANALYZE needed) then reads each series' window as a range of the samples'
      primary key, "SEARCH telemetry_samples USING PRIMARY KEY (series_id=? AND ts>? AND
      ts<?)": equality on series_id, range on ts, so only wanted rows are read. The index on
      ts alone would be worse there: it holds every series' samples in the window and, the
      table being WITHOUT ROWID, each hit costs a second search of the primary key.
    - PostgreSQL chooses by cost. For a whole fleet it reads the window through
      ix_telemetry_samples_ts (samples arrive in time order, so one window's rows sit on
      neighbouring heap pages) and hash-joins them to the series found above; with few
      series (a narrow selector) it runs one pk_telemetry_samples range scan per series; and
      when the window is most of the table, a parallel sequential scan. Each reads the
      window, not the table's history.
    - devices is joined by its primary key; a selector's own indexes (name, platform, site)
      help when it is narrow.
    """
    if end_ms <= start_ms:
        raise InvalidInput("the window's end is not after its start", field="window",
                           fix="give a window of at least one second")
    if not metrics:
        return []
    wanted = [TelemetrySeriesRow.metric.in_(list(dict.fromkeys(metrics))),
              TelemetrySeriesRow.labels == ""]
    if selector is not None and not selector.is_empty:
        wanted.append(selector_filter(selector, dialect))
    # Aggregate per series first and join the names to the (few) result rows afterwards:
    # grouping the samples by device name, platform and site as well carried those wide
    # columns through every sample row (1.8 million at 10,000 devices) and made PostgreSQL
    # sort on them, 1.6-2 s against 1 s this way. The key (metric, labels, id) is the order of
    # ix_telemetry_series_metric_labels, whose entries end in the row id: SQLite walks the
    # series in that order and aggregates as it goes, without a temporary b-tree (30% faster).
    per_series = (
        select(TelemetrySeriesRow.id.label("series_id"),
               func.avg(TelemetrySampleRow.value).label("mean"),
               func.count().label("n"))
        .join(DeviceRow, DeviceRow.id == TelemetrySeriesRow.device_id)
        .join(TelemetrySampleRow, TelemetrySampleRow.series_id == TelemetrySeriesRow.id)
        .where(*wanted, TelemetrySampleRow.ts >= start_ms, TelemetrySampleRow.ts < end_ms)
        .group_by(TelemetrySeriesRow.metric, TelemetrySeriesRow.labels, TelemetrySeriesRow.id)
        .subquery()
    )
    stmt = (
        select(DeviceRow.name, DeviceRow.platform, DeviceRow.site, TelemetrySeriesRow.metric,
               per_series.c.mean, per_series.c.n)
        .select_from(per_series)
        .join(TelemetrySeriesRow, TelemetrySeriesRow.id == per_series.c.series_id)
        .join(DeviceRow, DeviceRow.id == TelemetrySeriesRow.device_id)
        .order_by(DeviceRow.name, TelemetrySeriesRow.metric)
    )
    out: list[DeviceAggregate] = []
    for name, platform, site, metric, mean, count in await session.execute(stmt):
        if not out or out[-1].device != name:
            out.append(DeviceAggregate(device=name, platform=platform, site=site))
        out[-1].values[metric] = float(mean)
        out[-1].count[metric] = int(count)
    return out
