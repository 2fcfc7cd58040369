"""The FastAPI app factory. Nothing is built at import time: bootstrap passes the services."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from netfleet import __version__
from netfleet.api import problems
from netfleet.api.routers import (
    credentials,
    deployments,
    devices,
    health,
    jobs,
    keys,
    metrics,
    telemetry,
    templates,
)


def create_app(services: Any) -> FastAPI:
    app = FastAPI(title="netfleet", version=__version__,
                  description="Commands and config for fleets of network devices.")
    app.state.services = services
    problems.install(app)
    v1 = APIRouter(prefix="/api/v1")
    for module in (devices, credentials, jobs, keys, templates, telemetry):
        v1.include_router(module.router)
    v1.include_router(telemetry.bottlenecks_router)
    v1.include_router(deployments.router)
    app.include_router(v1)
    # The orchestrator API shape answers at the root too (/deployments…), for its clients.
    app.include_router(deployments.router, include_in_schema=False)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.state.metrics = metrics.registry_for(services)
    return app
