"""/api/v1/telemetry: polling profiles, stored samples (downsampled on request), latest values."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from netfleet.api.deps import Admin, ServicesDep, Viewer
from netfleet.domain.errors import InvalidInput
from netfleet.domain.telemetry import Profile
from netfleet.services.telemetry import ProfileView
from netfleet.store.telemetry import MAX_POINTS

router = APIRouter(prefix="/telemetry", tags=["telemetry"])

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def duration(text: str, field: str) -> float:
    """`90`, `90s`, `5m`, `1h`, `7d` -> seconds."""
    found = _DURATION.match(text.strip())
    if found is None or float(found.group(1)) <= 0:
        raise InvalidInput(f"{field} {text!r} is not a duration", field=field,
                           fix="use a number of seconds or e.g. 30s, 5m, 1h, 7d")
    return float(found.group(1)) * _UNIT[found.group(2)]


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: Profile
    where: list[str] = Field(default_factory=list, description="selector terms; [] polls "
                                                               "no device")
    enabled: bool = True


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    where: list[str] | None = None
    enabled: bool | None = None


def _profile_out(view: ProfileView) -> dict[str, Any]:
    return {"name": view.profile.name, "platform": view.profile.platform,
            "interval": view.profile.interval, "where": view.where, "enabled": view.enabled,
            "builtin": view.builtin, "devices": view.devices,
            "profile": view.profile.model_dump(mode="json")}


@router.get("/profiles")
async def list_profiles(svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    return {"profiles": [_profile_out(v) for v in await svc.telemetry.profiles()]}


@router.get("/profiles/{name}")
async def get_profile(name: str, svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    return _profile_out(await svc.telemetry.profile(name))


@router.post("/profiles", status_code=201)
async def create_profile(body: ProfileIn, svc: ServicesDep, who: Admin,
                         response: Response) -> dict[str, Any]:
    view = await svc.telemetry.put_profile(body.profile, body.where, body.enabled, create=True)
    response.headers["Location"] = f"/api/v1/telemetry/profiles/{view.profile.name}"
    return _profile_out(view)


@router.put("/profiles/{name}")
async def replace_profile(name: str, body: ProfileIn, svc: ServicesDep,
                          who: Admin) -> dict[str, Any]:
    if body.profile.name != name:
        raise InvalidInput(f"the body names profile {body.profile.name!r}, the path {name!r}",
                           field="profile.name", fix="make them the same (renaming is a new "
                                                     "profile and a delete)")
    return _profile_out(await svc.telemetry.put_profile(body.profile, body.where,
                                                        body.enabled))


@router.patch("/profiles/{name}")
async def assign_profile(name: str, body: AssignIn, svc: ServicesDep,
                         who: Admin) -> dict[str, Any]:
    """Assign a profile to devices (`where`) or switch it on and off."""
    return _profile_out(await svc.telemetry.assign(name, body.where, body.enabled))


@router.delete("/profiles/{name}", status_code=204)
async def delete_profile(name: str, svc: ServicesDep, who: Admin) -> Response:
    await svc.telemetry.delete_profile(name)
    return Response(status_code=204)


def _where(device: str | None, where: list[str] | None) -> list[str]:
    terms = list(where or [])
    if device:
        terms.append(f"name={device}")
    return terms


@router.get("")
async def samples(
        svc: ServicesDep, who: Viewer,
        device: Annotated[str | None, Query(description="one device (or a name glob)")] = None,
        where: Annotated[list[str] | None, Query(description="selector terms")] = None,
        metric: str | None = None,
        start: Annotated[datetime | None, Query(description="ISO 8601; default end - 1h")]
        = None,
        end: Annotated[datetime | None, Query(description="ISO 8601; default now")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 1000,
        step: Annotated[str | None, Query(description="downsample: average per step, e.g. "
                                                      "60s, 5m")] = None,
        interface: Annotated[str | None, Query(description="only this interface's series")]
        = None) -> dict[str, Any]:
    """Samples newest first; with `step`, one point per series per step (avg, min, max)."""
    end_at = (end or datetime.now(UTC)).timestamp()
    start_at = start.timestamp() if start else end_at - 3600
    points = await svc.telemetry.query(
        where=_where(device, where), metric=metric, start=start_at, end=end_at, limit=limit,
        step=duration(step, "step") if step else None,
        labels={"interface": interface} if interface else None)
    return {"start": _iso(start_at), "end": _iso(end_at), "step": step,
            "points": [_point(p) for p in points]}


@router.get("/latest")
async def latest(svc: ServicesDep, who: Viewer, device: str | None = None,
                 where: Annotated[list[str] | None, Query()] = None,
                 metric: str | None = None) -> dict[str, Any]:
    """The newest value of every series; `stale` (with the reason) when the device's last
    poll failed or none came for 2.5 intervals."""
    rows = await svc.telemetry.latest(where=_where(device, where), metric=metric)
    return {"at": _iso(time.time()), "latest": [
        {"device": r.device, "metric": r.metric, "labels": r.labels, "unit": r.unit,
         "time": _iso(r.ts), "value": r.value, "stale": r.stale, "reason": r.reason}
        for r in rows]}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _point(p: Any) -> dict[str, Any]:
    out = {"device": p.device, "metric": p.metric, "labels": p.labels, "unit": p.unit,
           "time": _iso(p.ts / 1000), "value": p.value}
    if p.count is not None:
        out.update(min=p.min, max=p.max, count=p.count)
    return out


bottlenecks_router = APIRouter(tags=["telemetry"])


@bottlenecks_router.get("/bottlenecks")
async def bottlenecks(
        svc: ServicesDep, who: Viewer,
        window: Annotated[str, Query(description="e.g. 10m, 1h")] = "10m",
        where: Annotated[list[str] | None, Query(description="selector terms: the peer "
                                                             "group")] = None,
        method: Annotated[str, Query(description="robust (median/MAD, the default) or "
                                                 "zscore (mean/std)")] = "robust",
        threshold: Annotated[float, Query(gt=0, description="z at which a device is "
                                                            "flagged")] = 2.0
) -> dict[str, Any]:
    """Devices whose latency, throughput or error rate deviate from their peers over the
    window, worst first, with per-metric z-scores and a reason."""
    found, compared = await svc.telemetry.bottlenecks(
        where=where or [], window=duration(window, "window"), method=method,
        threshold=threshold)
    return {"window": window, "method": method, "threshold": threshold,
            "devices_compared": compared,
            "bottlenecks": [
                {"device": b.device, "deviation_score": round(b.score, 3), "reason": b.reason,
                 "metrics": {m: {"value": s.value, "baseline": s.baseline,
                                 "spread": s.spread, "z": round(s.z, 3)}
                             for m, s in b.metrics.items()}}
                for b in found]}
