"""The simulator's control API (HTTP on 127.0.0.1): list, add and remove devices, change faults,
read the ground truth. It runs on the simulator's own event loop, so it touches device state
without locks.
"""

from __future__ import annotations

import re
import resource
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from netfleet.sim.fleet import inventory
from netfleet.sim.platform import PlatformError
from netfleet.sim.server import SimServer
from netfleet.sim.state import Faults


class FaultsPatch(BaseModel):
    """Fault settings to change; fields left out stay as they are, null clears an override."""

    model_config = ConfigDict(extra="forbid")

    login_delay: float | None = Field(None, ge=0, le=300, description="seconds")
    command_delay: float | None = Field(None, ge=0, le=300, description="seconds")
    command_jitter: float | None = Field(None, ge=0, le=300, description="seconds")
    auth_fail: bool | None = None
    drop_probability: float | None = Field(None, ge=0, le=1)
    hang_pattern: str | None = Field(None, max_length=200, description="regex on the command")
    hang_probability: float | None = Field(None, ge=0, le=1)
    config_error_rate: float | None = Field(None, ge=0, le=1)
    max_sessions: int | None = Field(None, ge=0, le=10_000, description="vty lines")

    @field_validator("hang_pattern")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class AddDevices(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(1, ge=1, le=10_000)
    platforms: list[str] | None = Field(None, description="round-robin; default: all")


def create_app(sim: SimServer) -> FastAPI:
    app = FastAPI(title="netfleet simulator control", version="1")

    def device_or_404(name: str) -> Any:
        try:
            return sim.get(name)
        except KeyError:
            raise HTTPException(404, f"no simulated device named {name!r}") from None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "devices": len(sim.devices)}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "devices": len(sim.devices),
            "open_sessions": sum(d.sessions for d in sim.devices.values()),
            "max_rss_kib": usage.ru_maxrss,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            **asdict(sim.stats),
        }

    @app.get("/devices")
    async def list_devices(
        platform: str | None = None,
        degraded: bool | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> dict[str, Any]:
        found = [d for d in sim.devices.values()
                 if (platform is None or d.platform.name == platform)
                 and (degraded is None or (d.degradation is not None) == degraded)]
        return {"total": len(found),
                "devices": [d.summary() for d in found[offset:offset + limit]]}

    @app.post("/devices", status_code=201)
    async def add_devices(body: AddDevices) -> dict[str, Any]:
        try:
            added = await sim.add(body.count, body.platforms)
        except PlatformError as exc:
            raise HTTPException(422, f"platforms: {exc}") from None
        except (OSError, ValueError) as exc:
            raise HTTPException(409, str(exc)) from None
        return {"port": sim.port, "devices": [d.summary() for d in added]}

    @app.get("/devices/{name}")
    async def get_device(name: str) -> dict[str, Any]:
        device = device_or_404(name)
        return {**device.summary(), "effective_faults": sim.faults_for(device).as_dict()}

    @app.get("/devices/{name}/credentials")
    async def get_credentials(name: str) -> dict[str, Any]:
        device = device_or_404(name)
        return {"username": device.username, "password": device.password,
                "enable_secret": device.enable_secret}

    @app.delete("/devices/{name}", status_code=204)
    async def remove_device(name: str) -> Response:
        device_or_404(name)
        await sim.remove(name)
        return Response(status_code=204)

    @app.get("/faults")
    async def get_faults() -> dict[str, Any]:
        return sim.fleet_faults.as_dict()

    @app.patch("/faults")
    async def patch_faults(body: FaultsPatch) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        if "max_sessions" in changes and changes["max_sessions"] is None:
            raise HTTPException(422, "max_sessions: the fleet-wide value cannot be null")
        sim.fleet_faults.update(changes)
        return sim.fleet_faults.as_dict()

    @app.patch("/devices/{name}/faults")
    async def patch_device_faults(name: str, body: FaultsPatch) -> dict[str, Any]:
        device = device_or_404(name)
        if device.faults is None:
            device.faults = Faults()
        device.faults.update(body.model_dump(exclude_unset=True))
        return {"overrides": device.faults.as_dict(),
                "effective": sim.faults_for(device).as_dict()}

    @app.delete("/devices/{name}/faults", status_code=204)
    async def clear_device_faults(name: str) -> Response:
        device_or_404(name).faults = None
        return Response(status_code=204)

    @app.get("/truth")
    async def truth() -> dict[str, Any]:
        return sim.truth()

    @app.get("/inventory")
    async def get_inventory() -> dict[str, Any]:
        return inventory(sim.devices.values(), sim.port)

    return app
