"""/api/v1/deployments (and the same under /deployments for clients of the orchestrator API
shape): create N nodes, watch them converge, roll out config generations, audit every step."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from netfleet.api.deps import Operator, ServicesDep, Viewer
from netfleet.domain.deployments import Event
from netfleet.domain.errors import NotFound
from netfleet.services.providers import deployment_tag
from netfleet.store.deployments import Deployment, DeploymentSpec, Node

router = APIRouter(prefix="/deployments", tags=["deployments"])

MAX_NODES = 10_000
TELEMETRY_METRICS = ("latency_ms", "throughput_bps", "error_rate")


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(None, max_length=10_000)
    target_node_count: int = Field(ge=1, le=MAX_NODES)
    provider: str = Field("simulator", min_length=1, max_length=64,
                          description="simulator, inventory, or an installed plugin's")
    config_template: str | None = Field(None, max_length=200_000,
                                        description="Jinja2, rendered per node")
    vars: dict[str, Any] = Field(default_factory=dict)
    telemetry_profile: str | None = Field(None, max_length=64)
    options: dict[str, Any] = Field(
        default_factory=dict, description="simulator: {platform}; inventory: {where: [...]}")
    remediate: bool = Field(False, description="re-apply the config when a node drifts")


class DeploymentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=10_000)
    config_template: str | None = Field(None, max_length=200_000)
    vars: dict[str, Any] | None = None
    telemetry_profile: str | None = Field(None, max_length=64)
    target_node_count: int | None = Field(None, ge=0, le=MAX_NODES)
    remediate: bool | None = None


class Scale(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_node_count: int = Field(ge=0, le=MAX_NODES)


def deployment_out(d: Deployment) -> dict[str, Any]:
    return {
        "id": d.id, "name": d.name, "description": d.description, "provider": d.provider,
        "status": "deleting" if d.deleting else d.status.value,
        "target_node_count": d.target_node_count, "current_node_count": d.current_node_count,
        "node_counts": d.counts, "target_generation": d.target_generation,
        "observed_generation": d.observed_generation, "config_template": d.config_template,
        "vars": d.vars, "telemetry_profile": d.telemetry_profile, "options": d.options,
        "remediate": d.remediate, "created_by": d.created_by, "created_at": d.created_at,
        "updated_at": d.updated_at,
    }


def node_out(n: Node) -> dict[str, Any]:
    return {
        "id": n.id, "deployment_id": n.deployment_id, "ordinal": n.ordinal,
        "state": n.state.value, "hostname": n.hostname, "ip_address": n.ip_address,
        "device": n.device, "target_generation": n.target_generation,
        "observed_generation": n.observed_generation, "attempts": n.attempts,
        "reason": n.reason, "drift": n.drift, "created_at": n.created_at,
        "last_transition_at": n.last_transition_at,
    }


def event_out(e: Event) -> dict[str, Any]:
    return {"id": e.id, "deployment_id": e.deployment_id, "node_id": e.node_id,
            "kind": e.kind, "from_state": e.from_state, "to_state": e.to_state,
            "reason": e.reason, "actor": e.actor, "at": e.at}


@router.post("", status_code=201)
async def create(body: DeploymentCreate, svc: ServicesDep, who: Operator) -> dict[str, Any]:
    """Create the deployment; its nodes start `pending` at once and its planner takes over."""
    made = await svc.deployments.create(DeploymentSpec(
        name=body.name, provider=body.provider, target_node_count=body.target_node_count,
        description=body.description, config_template=body.config_template, vars=body.vars,
        telemetry_profile=body.telemetry_profile, options=body.options,
        remediate=body.remediate), actor=who.name)
    return deployment_out(made)


@router.get("")
async def list_deployments(svc: ServicesDep, who: Viewer,
                           skip: Annotated[int, Query(ge=0)] = 0,
                           limit: Annotated[int, Query(ge=1, le=500)] = 100
                           ) -> list[dict[str, Any]]:
    return [deployment_out(d) for d in await svc.deployments.page(skip=skip, limit=limit)]


@router.get("/{deployment_id}")
async def get(deployment_id: str, svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    return deployment_out(await svc.deployments.get(deployment_id))


@router.patch("/{deployment_id}")
async def patch(deployment_id: str, body: DeploymentPatch, svc: ServicesDep,
                who: Operator) -> dict[str, Any]:
    """A new template or vars is a new generation, rolled out to every node; a new
    target_node_count scales up (new pending nodes) or down (the last nodes go)."""
    changes = body.model_dump(exclude_unset=True)
    if changes.get("vars") is None:
        changes.pop("vars", None)
    return deployment_out(await svc.deployments.update(deployment_id, actor=who.name,
                                                       **changes))


@router.post("/{deployment_id}/scale")
async def scale(deployment_id: str, body: Scale, svc: ServicesDep,
                who: Operator) -> dict[str, Any]:
    return deployment_out(await svc.deployments.update(
        deployment_id, actor=who.name, target_node_count=body.target_node_count))


@router.delete("/{deployment_id}", status_code=204)
async def delete(deployment_id: str, svc: ServicesDep, who: Operator) -> Response:
    """Deprovision every node, then remove the deployment (its events stay). Returns at once;
    the deployment shows `deleting` until it is gone."""
    await svc.deployments.delete(deployment_id, actor=who.name)
    return Response(status_code=204)


@router.get("/{deployment_id}/nodes")
async def nodes(deployment_id: str, svc: ServicesDep, who: Viewer,
                skip: Annotated[int, Query(ge=0)] = 0,
                limit: Annotated[int, Query(ge=1, le=MAX_NODES)] = 1000
                ) -> list[dict[str, Any]]:
    return [node_out(n) for n in await svc.deployments.nodes(deployment_id, skip=skip,
                                                             limit=limit)]


@router.post("/{deployment_id}/nodes/{node_id}/retry")
async def retry_node(deployment_id: str, node_id: str, svc: ServicesDep,
                     who: Operator) -> dict[str, Any]:
    """A failed node starts its lifecycle again."""
    return node_out(await svc.deployments.retry_node(deployment_id, node_id, actor=who.name))


@router.delete("/{deployment_id}/nodes/{node_id}", status_code=204)
async def remove_node(deployment_id: str, node_id: str, svc: ServicesDep,
                      who: Operator) -> Response:
    """Deprovision this node; the deployment's target_node_count goes down by one."""
    await svc.deployments.remove_node(deployment_id, node_id, actor=who.name)
    return Response(status_code=204)


@router.get("/{deployment_id}/events")
async def events(deployment_id: str, svc: ServicesDep, who: Viewer,
                 after: Annotated[int, Query(ge=0, description="event id")] = 0,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict[str, Any]]:
    """The audit log, oldest first; page with `after` = the last id seen."""
    return [event_out(e) for e in await svc.deployments.events(deployment_id, after=after,
                                                               limit=limit)]


@router.get("/{deployment_id}/telemetry")
async def telemetry(deployment_id: str, svc: ServicesDep, who: Viewer,
                    node_id: str | None = None, start_time: datetime | None = None,
                    end_time: datetime | None = None,
                    limit: Annotated[int, Query(ge=1, le=10_000)] = 100
                    ) -> list[dict[str, Any]]:
    """Per node and poll: latency_ms, throughput_gbps and error_rate, newest first."""
    by_device = await _nodes_by_device(svc, deployment_id, node_id)
    end = end_time.timestamp() if end_time else time.time()
    start = start_time.timestamp() if start_time else end - 3600
    where = ([f"name={next(iter(by_device))}"] if node_id and by_device
             else [f"tag={deployment_tag(deployment_id)}"])
    if not by_device:
        return []
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for metric in TELEMETRY_METRICS:
        points = await svc.telemetry.query(where=where, metric=metric, start=start, end=end,
                                           limit=limit * 4, step=None, labels={})
        for p in points:
            node = by_device.get(p.device)
            if node is None:
                continue
            row = rows.setdefault((p.device, p.ts), {
                "node_id": node.id, "hostname": node.hostname,
                "timestamp": datetime.fromtimestamp(p.ts / 1000).astimezone(),
                "latency_ms": None, "throughput_gbps": None, "error_rate": None})
            if metric == "throughput_bps":
                row["throughput_gbps"] = p.value / 1e9
            else:
                row[metric] = p.value
    newest = sorted(rows.items(), key=lambda kv: kv[0][1], reverse=True)
    return [row for _, row in newest[:limit]]


@router.get("/{deployment_id}/bottlenecks")
async def bottlenecks(deployment_id: str, svc: ServicesDep, who: Viewer,
                      analysis_window_minutes: Annotated[int, Query(ge=1, le=1440)] = 10,
                      method: Literal["robust", "zscore"] = "robust",
                      threshold: Annotated[float, Query(gt=0)] = 2.0
                      ) -> list[dict[str, Any]]:
    """The deployment's nodes that deviate from the other nodes, worst first."""
    by_device = await _nodes_by_device(svc, deployment_id, None)
    found, _ = await svc.telemetry.bottlenecks(
        where=[f"tag={deployment_tag(deployment_id)}"], window=analysis_window_minutes * 60,
        method=method, threshold=threshold)
    out = []
    for b in found:
        node = by_device.get(b.device)
        if node is None:
            continue
        metrics = {m: s.value for m, s in b.metrics.items()}
        out.append({"node_id": node.id, "hostname": node.hostname,
                    "latency_ms": metrics.get("latency_ms"),
                    "throughput_gbps": (metrics["throughput_bps"] / 1e9
                                        if "throughput_bps" in metrics else None),
                    "error_rate": metrics.get("error_rate"),
                    "deviation_score": round(b.score, 3), "reason": b.reason,
                    "z_scores": {m: round(s.z, 3) for m, s in b.metrics.items()}})
    return out


async def _nodes_by_device(svc: Any, deployment_id: str, node_id: str | None
                           ) -> dict[str, Node]:
    found = await svc.deployments.nodes(deployment_id)
    if node_id is not None:
        found = [n for n in found if n.id == node_id]
        if not found:
            raise NotFound(f"deployment {deployment_id} has no node {node_id}")
    return {n.device: n for n in found if n.device}
