"""/metrics: netfleet's own health and the latest device metrics, for Prometheus to scrape.

Built at scrape time from the services' state by a collector (nothing is kept twice). Device
metrics are `netfleet_device_<metric>` gauges labelled with the device and the series' own
labels (e.g. interface); `netfleet_device_stale` says which devices' values are old.
Unauthenticated, as exporters usually are: it carries names and numbers, never secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

router = APIRouter(tags=["metrics"])

_BAD = re.compile(r"[^a-zA-Z0-9_]")


class ServicesCollector(Collector):
    def __init__(self, services: Any) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        svc = self.services
        engine = svc.engine
        stats = engine.stats()
        yield _gauge("netfleet_jobs_running", "Jobs accepted and not yet finished.",
                     svc.jobs.running_count)
        yield _gauge("netfleet_engine_queued_tasks", "Device tasks waiting in actor queues.",
                     stats["pending"])
        yield _gauge("netfleet_engine_running_tasks", "Device tasks and polls running now.",
                     stats["running"])
        yield _gauge("netfleet_engine_actors", "Device actors alive.", stats["actors"])
        yield _gauge("netfleet_sessions_open", "SSH sessions open to devices.",
                     stats["open_sessions"])
        yield _counter("netfleet_sessions_opened", "SSH logins since start.",
                       stats["sessions_opened"])
        polls = engine.poll_stats
        yield _gauge("netfleet_polled_devices", "Devices with at least one telemetry profile.",
                     stats["polled_devices"])
        family = CounterMetricFamily("netfleet_polls", "Polls since start, by outcome.",
                                     labels=["outcome"])
        family.add_metric(["ok"], polls.ok)
        family.add_metric(["failed"], polls.failed)
        yield family
        yield _counter("netfleet_poll_overruns", "Poll ticks skipped because the previous "
                                                 "poll of that device had not finished.",
                       polls.overruns)
        yield _counter("netfleet_poll_throttled", "Poll ticks skipped because the telemetry "
                                                  "buffer was over half full (back-pressure).",
                       polls.throttled)
        yield _counter("netfleet_poll_seconds", "Wall time spent in polls, summed.",
                       polls.seconds)
        yield _counter("netfleet_samples_polled", "Samples produced by polls.", polls.samples)
        telemetry = svc.telemetry
        writer = telemetry.stats
        yield _counter("netfleet_samples_written", "Samples written to the database.",
                       writer.written)
        yield _counter("netfleet_samples_dropped", "Samples dropped (oldest first) because "
                                                   "storage fell behind.", writer.dropped)
        yield _counter("netfleet_samples_rejected", "Samples the database refused on their "
                                                    "own, set aside so the rest are written.",
                       writer.rejected)
        yield _gauge("netfleet_samples_buffered", "Samples waiting to be written.",
                     telemetry.buffered)
        yield _counter("netfleet_sample_write_failures", "Sample batches that failed to "
                                                         "write (and were retried).",
                       writer.failures)
        yield from telemetry.write_latency.collect()
        if svc.cluster is not None:
            recorder = svc.cluster.recorder.stats
            yield _counter("netfleet_observations_recorded", "Observations from agents "
                           "recorded by this controller.", recorder.recorded)
            yield _counter("netfleet_observations_dead", "Observations sent to the "
                           "dead-letter stream (failed to process).", recorder.dead)
            yield _counter("netfleet_observations_fenced", "Observations ignored: sent under "
                           "a lease another agent had taken over.", recorder.fenced)
            yield _counter("netfleet_recorder_write_failures", "Observation batches that "
                           "failed to write (not acknowledged; retried).", recorder.failures)
            yield _gauge("netfleet_recorder_partitions", "Partitions this controller records.",
                         len(svc.cluster.recorder.owned))
        deployments = svc.deployments
        yield _gauge("netfleet_deployment_planners", "Deployment planner tasks running.",
                     deployments.active)
        yield _gauge("netfleet_deployment_planners_stuck", "Deployment planners with work in "
                                                           "flight and no progress for "
                                                           "NETFLEET_DEPLOY_STUCK_AFTER.",
                     len(deployments.stuck()))
        done = deployments.stats
        yield _counter("netfleet_node_transitions", "Deployment node state changes.",
                       done.transitions)
        yield _counter("netfleet_node_step_retries", "Deployment steps retried after a "
                                                     "failure.", done.retries)
        yield _counter("netfleet_node_generations_applied", "Config generations applied to "
                                                            "running nodes.", done.applied)
        yield _counter("netfleet_node_drift_found", "Nodes found drifted from their desired "
                                                    "config.", done.drift_found)
        yield from _device_metrics(telemetry)


def _device_metrics(telemetry: Any) -> Iterator[Metric]:
    families: dict[tuple[str, tuple[str, ...]], GaugeMetricFamily] = {}
    stale = GaugeMetricFamily("netfleet_device_stale", "1 when the device's values are old "
                                                       "(its last poll failed or is late).",
                              labels=["device"])
    for device, (is_stale, _) in sorted(telemetry.device_states().items()):
        stale.add_metric([device], 1.0 if is_stale else 0.0)
    for row in telemetry.latest_now():
        label_names = tuple(sorted(row.labels))
        key = (row.metric, label_names)
        family = families.get(key)
        if family is None:
            name = "netfleet_device_" + _BAD.sub("_", row.metric)
            family = families[key] = GaugeMetricFamily(
                name, f"Latest {row.metric}" + (f" ({row.unit})" if row.unit else ""),
                labels=["device", *label_names])
        family.add_metric([row.device, *(row.labels[n] for n in label_names)], row.value,
                          timestamp=row.ts)
    yield stale
    # One family per metric name: Prometheus wants each name once, so series of a metric
    # with different label sets share the family of the first set seen.
    merged: dict[str, GaugeMetricFamily] = {}
    for (metric, _), family in families.items():
        if metric in merged:
            merged[metric].samples.extend(family.samples)
        else:
            merged[metric] = family
    yield from merged.values()


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def registry_for(services: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServicesCollector(services))
    return registry


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus exposition format (text, version 0.0.4)."""
    registry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
