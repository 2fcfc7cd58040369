"""Failure semantics of a cluster (docs/cluster.md), each on real processes: Redis killed and
started again, every controller down, the database unreachable. This module's cluster has a
Redis of its own (so it can be killed) and reaches PostgreSQL through a proxy (so the database
can be cut off without stopping the server other tests use)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.api.conftest import register
from tests.cluster.conftest import Cluster, Proxy, RedisServer, until
from tests.cluster.test_cluster import finished, job
from tests.conftest import RunningSim


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory,
            cluster_database: str) -> Iterator[tuple[Cluster, RedisServer, Proxy]]:
    root = tmp_path_factory.mktemp("fragile")
    server = RedisServer(root)
    proxy = Proxy("127.0.0.1", 5432)
    url = cluster_database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert url != cluster_database
    running = Cluster(root, url, server.url)
    try:
        until(running.ready, timeout=60, what="the cluster ready")
        yield running, server, proxy
    except AssertionError:
        print(running.logs())
        raise
    finally:
        running.close()
        server.stop()
        proxy.close()


@pytest.fixture
def cluster(fragile: tuple[Cluster, RedisServer, Proxy]) -> Cluster:
    """(Named so that a failing test prints the processes' logs.)"""
    return fragile[0]


def polled(client: httpx.Client, sim: RunningSim, tag: str) -> list[Any]:
    """Two devices polled every second by a profile of their own."""
    devices = register(client, sim, "cisco_ios", 2, tags=[tag])
    builtin = client.get("/telemetry/profiles/cisco_ios-default").json()["profile"]
    created = client.post("/telemetry/profiles", json={
        "profile": {**builtin, "name": f"fast-{tag}", "interval": 1.0},
        "where": [f"tag={tag}"]})
    assert created.status_code == 201, created.text
    return devices


def samples(client: httpx.Client, device: str, start: float, end: float) -> list[float]:
    """Times (epoch seconds) of the cpu samples stored for a device between start and end."""
    response = client.get("/telemetry", params={
        "device": device, "metric": "cpu_percent", "limit": 10000,
        "start": datetime.fromtimestamp(start, UTC).isoformat(),
        "end": datetime.fromtimestamp(end, UTC).isoformat()})
    assert response.status_code == 200, response.text
    return sorted(datetime.fromisoformat(p["time"].replace("Z", "+00:00")).timestamp()
                  for p in response.json()["points"])


def test_redis_killed_and_started_again_everything_carries_on(
        fragile: tuple[Cluster, RedisServer, Proxy], cluster: Cluster, sim: RunningSim) -> None:
    _, server, _ = fragile
    with cluster.client(0) as first, cluster.client(1) as second:
        devices = polled(first, sim, "redis-restart")
        until(lambda: all(samples(first, d.name, time.time() - 60, time.time() + 5)
                          for d in devices), what="samples before the restart")
        server.kill()
        time.sleep(3)  # longer than the lease TTL: every lease runs out meanwhile
        server.start()
        restarted = time.time()
        until(cluster.ready, timeout=30, what="every process back, partitions owned")
        job_id = job(second, {"kind": "command", "device": devices[0].name,
                              "commands": ["show version"]})
        assert finished(first, job_id)["status"] == "succeeded"
        until(lambda: all(len(samples(first, d.name, restarted, time.time() + 5)) >= 2
                          for d in devices), what="polling carried on after the restart")


def test_with_every_controller_down_agents_keep_polling_and_nothing_is_lost(
        fragile: tuple[Cluster, RedisServer, Proxy], cluster: Cluster,
        sim: RunningSim) -> None:
    del fragile  # (the cluster fixture is its first part)
    with cluster.client(0) as client:
        devices = polled(client, sim, "controllers-down")
        until(lambda: all(samples(client, d.name, time.time() - 60, time.time() + 5)
                          for d in devices), what="samples before the controllers stop")
    cluster.stop_controllers()
    down = time.time()
    time.sleep(5)
    back = time.time()
    cluster.start_controllers()
    until(cluster.ready, timeout=60, what="controllers back")
    with cluster.client(1) as client:
        def outage_covered() -> bool:
            return all(len(samples(client, d.name, down, back)) >= 4 for d in devices)

        until(outage_covered, timeout=30,
              what="samples polled while no controller ran, recorded once one returned")
        times = samples(client, devices[0].name, down - 10, time.time())
        assert len(times) == len(set(times))  # none stored twice


def test_with_the_database_down_observations_wait_in_redis_and_are_written_later(
        fragile: tuple[Cluster, RedisServer, Proxy], cluster: Cluster,
        sim: RunningSim) -> None:
    _, _, proxy = fragile
    with cluster.client(0) as client:
        devices = polled(client, sim, "database-down")
        until(lambda: all(samples(client, d.name, time.time() - 60, time.time() + 5)
                          for d in devices), what="samples before the database goes")
        proxy.cut()
        cut = time.time()
        try:
            time.sleep(5)
            ready = httpx.get(cluster.controllers[0][1] + "/ready", timeout=30)
            assert ready.status_code == 503
            assert "database" in " ".join(ready.json()["problems"])
            waiting = sum(int(g["lag"] or 0) + int(g["pending"])
                          for key in cluster.redis.scan_iter("netfleet:*:obs")
                          for g in cluster.redis.xinfo_groups(key))
            assert waiting > 0  # held in Redis, not acknowledged
        finally:
            proxy.mend()
        mended = time.time()
        until(lambda: all(len(samples(client, d.name, cut, mended)) >= 4 for d in devices),
              timeout=60, what="what was polled while the database was down, written")


def test_redis_restarted_without_its_data_fails_the_lost_work_and_carries_on(
        fragile: tuple[Cluster, RedisServer, Proxy], cluster: Cluster,
        sim: RunningSim) -> None:
    _, server, _ = fragile
    with cluster.client(0) as first, cluster.client(1) as second:
        [device] = register(first, sim, "cisco_ios", 1)
        for agent in cluster.agents.values():
            agent.kill()  # nobody takes work: it waits in Redis
        waiting = job(first, {"kind": "command", "device": device.name,
                              "commands": ["show version"]})
        server.kill()
        server.wipe()
        server.start()
        lost = finished(second, waiting, wait=30)
        assert lost["status"] == "failed", lost
        assert lost["results"][0]["category"] == "backend_lost"
        for name in list(cluster.agents):
            cluster.start_agent(name)
        until(cluster.ready, timeout=60, what="agents back on the new Redis")
        again = job(second, {"kind": "command", "device": device.name,
                             "commands": ["show version"]})
        assert finished(first, again)["status"] == "succeeded"


def test_a_job_that_redis_cannot_take_is_refused_and_left_failed_not_queued(
        fragile: tuple[Cluster, RedisServer, Proxy], cluster: Cluster,
        sim: RunningSim) -> None:
    _, server, _ = fragile
    with cluster.client(0) as client:
        [device] = register(client, sim, "cisco_ios", 1)
        server.kill()
        try:
            refused = client.post("/jobs", json={"kind": "command", "device": device.name,
                                                 "commands": ["show version"]})
            assert refused.status_code == 503, refused.text
            assert "Redis" in refused.json()["detail"]
        finally:
            server.start()
        jobs = client.get("/jobs", params={"device": device.name}).json()["jobs"]
        [stored] = jobs
        assert stored["status"] == "failed"  # ended: nothing waits for it
        detail = finished(client, stored["id"])
        assert detail["results"][0]["category"] == "backend"
        until(cluster.ready, timeout=60, what="the cluster back on Redis")
