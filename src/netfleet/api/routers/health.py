"""/health (alive) and /ready (database reachable, engine, deployment planners)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response

from netfleet.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(svc: ServicesDep, response: Response) -> dict[str, Any]:
    """`healthy`, or `degraded` (503) with what is wrong: the database unreachable, or
    deployment planners that have made no progress for too long."""
    problems: list[str] = []
    database = "ok"
    try:
        async with asyncio.timeout(5):
            await svc.store.ping()
    except Exception as exc:
        database = f"unreachable: {type(exc).__name__}"
        problems.append(f"database {database}")
    stuck = svc.deployments.stuck()
    problems += [f"deployment {s['deployment']} made no progress for "
                 f"{s['seconds_without_progress']:g}s" for s in stuck]
    if problems:
        response.status_code = 503
    return {"status": "degraded" if problems else "healthy", "problems": problems,
            "database": database, "backend": "memory", "engine": svc.engine.stats(),
            "deployments": {"active": svc.deployments.active, "stuck": stuck}}
