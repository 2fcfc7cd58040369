"""`netfleet bench deploy`: a deployment of N nodes on a simulator in its own process, from
create to every node running or failed, then a config generation rolled out to every running
node. The simulator injects config failures (5% of config lines by default), so some steps are
retried and a few nodes may fail for real, through the whole pipeline.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from netfleet import runtime
from netfleet.bench.poll import _pg_database
from netfleet.bench.sim import _free_port, simulator
from netfleet.bootstrap import build_services
from netfleet.domain.deployments import NodeState
from netfleet.settings import load_settings
from netfleet.sim.runner import raise_fd_limit
from netfleet.store.deployments import Deployment, DeploymentSpec

TEMPLATE = ("interface GigabitEthernet1/0/1\n"
            " description {{ deployment.name }} node {{ node.ordinal }}\n"
            "ntp server {{ ntp }}\n")


async def _until(check: Any, timeout: float, every: float) -> float:
    """Seconds until `check()` holds (polled every `every` s); TimeoutError past `timeout`."""
    started = time.perf_counter()
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 (polling the API, as a user would)
            await asyncio.sleep(every)
    return time.perf_counter() - started


async def run(nodes: int = 1000, config_error_rate: float = 0.05, timeout: float = 900.0,
              postgres_admin_url: str | None = None) -> dict[str, Any]:
    """On SQLite, or on a new PostgreSQL database made from `postgres_admin_url`."""
    raise_fd_limit(nodes)
    result: dict[str, Any] = {"benchmark": "deploy", "event_loop": runtime.loop_name(),
                              "nodes": nodes, "config_error_rate": config_error_rate,
                              "database": "postgresql" if postgres_admin_url else "sqlite"}
    drop = None
    every = 0.1 if nodes <= 1000 else 0.5  # each look counts every node's state: keep it light
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'deploy.db'}"
        if postgres_admin_url:
            url, drop = await _pg_database(postgres_admin_url)
        args = ["--devices", "0", "--port", str(_free_port()), "--base-ip", "127.7.0.1",
                "--config-error-rate", str(config_error_rate)]
        async with simulator(args, wait_devices=0) as sim:
            settings = load_settings(database_url=url,
                                     secret_key_file=work / "secret.key",
                                     simulator_url=sim.control, max_concurrency=1024)
            services = await build_services(settings)
            try:
                deployments = services.deployments

                async def current(deployment_id: str) -> Deployment:
                    return await deployments.get(deployment_id)

                made = await deployments.create(DeploymentSpec(
                    "bench", "simulator", nodes, config_template=TEMPLATE,
                    vars={"ntp": "192.0.2.1"}), actor="bench")

                async def settled() -> bool:
                    d = await current(made.id)
                    done = d.counts.get(NodeState.RUNNING, 0) + d.counts.get(NodeState.FAILED, 0)
                    return done == nodes

                converge_s = await _until(settled, timeout, every)
                first = await current(made.id)
                running = first.counts.get(NodeState.RUNNING, 0)
                result["converge"] = {
                    "seconds": round(converge_s, 1), "running": running,
                    "failed": first.counts.get(NodeState.FAILED, 0),
                    "nodes_per_second": round(nodes / converge_s, 1),
                    "retries": deployments.stats.retries, "target_seconds": 60}

                retries0 = deployments.stats.retries
                await deployments.update(made.id, actor="bench", vars={"ntp": "192.0.2.2"})

                async def rolled_out() -> bool:
                    d = await current(made.id)  # observed: the lowest of the running nodes
                    return d.observed_generation >= d.target_generation

                rollout_s = await _until(rolled_out, timeout, every)
                after = await current(made.id)
                result["rollout"] = {
                    "seconds": round(rollout_s, 1), "generation": after.target_generation,
                    "nodes": running, "still_running": after.counts.get(NodeState.RUNNING, 0),
                    "failed_in_rollout": running - after.counts.get(NodeState.RUNNING, 0),
                    "nodes_per_second": round(running / rollout_s, 1) if rollout_s else None,
                    "retries": deployments.stats.retries - retries0, "target_seconds": 30}
                result["sessions_opened"] = services.engine.sessions_opened
            finally:
                await services.close()
                if drop is not None:
                    await drop()
    return result
