"""/health (alive) and /ready (store reachable, engine state)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from netfleet.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(svc: ServicesDep) -> dict[str, Any]:
    return {"status": "ok", "engine": svc.engine.stats()}
