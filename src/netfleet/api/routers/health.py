"""/health (alive) and /ready (database and Redis reachable, agents, deployment planners)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response

from netfleet.api.deps import ServicesDep
from netfleet.backends import keys

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(svc: ServicesDep, response: Response) -> dict[str, Any]:
    """`healthy`, or `degraded` (503) with what is wrong: the database unreachable, or
    deployment planners that have made no progress for too long; in a cluster also Redis
    unreachable, or no agent alive."""
    problems: list[str] = []
    database = "ok"
    try:
        async with asyncio.timeout(5):
            await svc.store.ping()
    except Exception as exc:
        database = f"unreachable: {type(exc).__name__}"
        problems.append(f"database {database}")
    backend: dict[str, Any] = {"kind": "memory"}
    cluster = svc.cluster
    if cluster is not None:
        backend = {"kind": "memory" if cluster.agent is not None else "redis",
                   "controller": cluster.name,
                   "leads_planners": cluster.leadership.leading,
                   "recording_partitions": sorted(cluster.recorder.owned),
                   "partitions": cluster.work.partitions}
        try:
            async with asyncio.timeout(5):
                await cluster.backend.ping()
                agents = await cluster.backend.members(keys.AGENTS)
                backend["agents"] = len(agents)
                backend["agent_status"] = await cluster.backend.statuses(keys.AGENTS, agents)
        except Exception as exc:
            backend["status"] = f"unreachable: {type(exc).__name__}"
            problems.append(f"redis {backend['status']}")
        else:
            backend["status"] = "ok"
            if not backend["agents"]:
                problems.append("no agent is running: jobs and polls wait in Redis")
    stuck = svc.deployments.stuck()
    problems += [f"deployment {s['deployment']} made no progress for "
                 f"{s['seconds_without_progress']:g}s" for s in stuck]
    if problems:
        response.status_code = 503
    return {"status": "degraded" if problems else "healthy", "problems": problems,
            "database": database, "backend": backend, "engine": svc.engine.stats(),
            "deployments": {"active": svc.deployments.active, "stuck": stuck}}
