"""The deployment repository: deployments, their nodes and the audit log, kept in step.

Every change of a node's state goes through `transition`, which checks it against the domain's
state machine and writes the event in the same transaction: the log can never miss a
transition, nor hold one that did not happen.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from netfleet.domain.deployments import (
    DeploymentStatus,
    Event,
    NodeState,
    check_transition,
    deployment_status,
)
from netfleet.domain.errors import NotFound
from netfleet.store.models import (
    DeploymentEventRow,
    DeploymentNodeRow,
    DeploymentRow,
    DeviceRow,
    utcnow,
)

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """A deployment as created (validated by the API before it gets here)."""

    name: str
    provider: str
    target_node_count: int
    description: str | None = None
    config_template: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    telemetry_profile: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    remediate: bool = False


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    name: str
    description: str | None
    provider: str
    config_template: str | None
    vars: dict[str, Any]
    telemetry_profile: str | None
    options: dict[str, Any]
    target_node_count: int
    target_generation: int
    remediate: bool
    deleting: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    counts: dict[str, int]  # nodes per state
    observed_generation: int  # lowest across running nodes

    @property
    def current_node_count(self) -> int:
        return sum(self.counts.values())

    @property
    def status(self) -> DeploymentStatus:
        return deployment_status(self.counts, self.target_node_count, self.target_generation,
                                 self.observed_generation)


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    deployment_id: str
    ordinal: int
    state: NodeState
    hostname: str | None
    ip_address: str | None
    device: str | None  # the inventory device this node is, once provisioned
    target_generation: int
    observed_generation: int
    attempts: int
    reason: str | None
    drift: bool
    created_at: datetime
    last_transition_at: datetime


# Node fields a caller may set beside (or without) a transition; `device` is a device name.
NODE_FIELDS = frozenset({"hostname", "ip_address", "device", "target_generation",
                         "observed_generation", "attempts", "reason", "drift"})


class DeploymentRepo:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    # -- deployments -----------------------------------------------------------------------
    async def create(self, spec: DeploymentSpec, *, actor: str) -> Deployment:
        """The deployment, its nodes in `pending`, and the creation event."""
        deployment_id = str(uuid.uuid4())
        now = utcnow()
        self.session.add(DeploymentRow(
            id=deployment_id, name=spec.name, description=spec.description,
            provider=spec.provider, config_template=spec.config_template, vars=dict(spec.vars),
            telemetry_profile=spec.telemetry_profile, options=dict(spec.options),
            target_node_count=spec.target_node_count, target_generation=1,
            remediate=spec.remediate, deleting=False, created_by=actor, created_at=now,
            updated_at=now))
        await self.session.flush()
        await self.add_nodes(deployment_id, 0, spec.target_node_count, generation=1)
        await self.log(Event(deployment_id, "deployment.created", now, actor,
                             reason=f"{spec.target_node_count} node"
                                    f"{'' if spec.target_node_count == 1 else 's'} "
                                    f"from {spec.provider}"))
        return await self.get(deployment_id)

    async def get(self, deployment_id: str, *, progress: bool = True) -> Deployment:
        """The deployment; with `progress`, its node counts and observed generation too (a
        scan of its nodes: planners reading their own settings leave it out)."""
        row = await self.session.get(DeploymentRow, deployment_id)
        if row is None:
            raise NotFound(f"no deployment {deployment_id}")
        if not progress:
            return _deployment(row, {}, 0)
        counts, observed = await self._progress([deployment_id])
        return _deployment(row, counts.get(deployment_id, {}), observed.get(deployment_id, 0))

    async def page(self, *, skip: int = 0, limit: int = 100) -> list[Deployment]:
        rows = (await self.session.scalars(
            select(DeploymentRow).order_by(DeploymentRow.created_at, DeploymentRow.id)
            .offset(max(0, skip)).limit(max(1, min(limit, MAX_PAGE))))).all()
        counts, observed = await self._progress([r.id for r in rows])
        return [_deployment(r, counts.get(r.id, {}), observed.get(r.id, 0)) for r in rows]

    async def ids(self) -> list[str]:
        """Every deployment, to resume their planners at start."""
        return list((await self.session.scalars(
            select(DeploymentRow.id).order_by(DeploymentRow.created_at))).all())

    async def change(self, deployment_id: str, *, actor: str, reason: str,
                     bump_generation: bool = False, **values: Any) -> Deployment:
        """Update the deployment's columns; with `bump_generation`, every node's target
        moves to the new generation too. One event records what changed."""
        row = await self._row(deployment_id, for_update=True)
        for name, value in values.items():
            setattr(row, name, value)
        if bump_generation:
            row.target_generation += 1
            await self.session.execute(
                update(DeploymentNodeRow).where(DeploymentNodeRow.deployment_id == deployment_id)
                .values(target_generation=row.target_generation))
        row.updated_at = utcnow()
        await self.log(Event(deployment_id, "deployment.updated", row.updated_at, actor,
                             reason=reason))
        await self.session.flush()
        return await self.get(deployment_id)

    async def delete(self, deployment_id: str, *, actor: str, reason: str) -> None:
        """Remove the deployment and its nodes; the log keeps its events and this one."""
        await self._row(deployment_id, for_update=True)
        await self.session.execute(delete(DeploymentRow).where(DeploymentRow.id == deployment_id))
        await self.log(Event(deployment_id, "deployment.deleted", utcnow(), actor,
                             reason=reason))

    # -- nodes -----------------------------------------------------------------------------
    async def add_nodes(self, deployment_id: str, first: int, count: int, *,
                        generation: int) -> list[str]:
        """`count` new pending nodes, ordinals first.. first+count-1."""
        if count <= 0:
            return []
        now = utcnow()
        ids = [str(uuid.uuid4()) for _ in range(count)]
        rows = [{"id": ids[i], "deployment_id": deployment_id, "ordinal": first + i,
                 "state": NodeState.PENDING.value, "target_generation": generation,
                 "observed_generation": 0, "attempts": 0, "drift": False, "created_at": now,
                 "last_transition_at": now} for i in range(count)]
        for start in range(0, len(rows), 1000):
            await self.session.execute(insert(DeploymentNodeRow), rows[start:start + 1000])
        return ids

    async def nodes(self, deployment_id: str, *, states: Sequence[NodeState] = (),
                    skip: int = 0, limit: int | None = None) -> list[Node]:
        stmt = (select(DeploymentNodeRow, DeviceRow.name)
                .outerjoin(DeviceRow, DeviceRow.id == DeploymentNodeRow.device_id)
                .where(DeploymentNodeRow.deployment_id == deployment_id)
                .order_by(DeploymentNodeRow.ordinal).offset(max(0, skip)))
        if states:
            stmt = stmt.where(DeploymentNodeRow.state.in_([s.value for s in states]))
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_node(row, device) for row, device in await self.session.execute(stmt)]

    async def node(self, deployment_id: str, node_id: str) -> Node:
        found = (await self.session.execute(
            select(DeploymentNodeRow, DeviceRow.name)
            .outerjoin(DeviceRow, DeviceRow.id == DeploymentNodeRow.device_id)
            .where(DeploymentNodeRow.id == node_id,
                   DeploymentNodeRow.deployment_id == deployment_id))).first()
        if found is None:
            raise NotFound(f"deployment {deployment_id} has no node {node_id}")
        return _node(found[0], found[1])

    async def transition(self, deployment_id: str, node_id: str, to: NodeState, *,
                         actor: str, reason: str | None = None, **values: Any) -> Node:
        """`move`, then the node as it is now."""
        await self.move(deployment_id, node_id, to, actor=actor, reason=reason, **values)
        return await self.node(deployment_id, node_id)

    async def move(self, deployment_id: str, node_id: str, to: NodeState, *,
                   actor: str, reason: str | None = None, **values: Any) -> None:
        """Move a node to `to` (IllegalTransition if the lifecycle does not allow it), set
        any of NODE_FIELDS beside, and log the transition. `reason` is the event's and the
        node's: why it is where it is now (None clears the last one). Everything is checked
        before anything changes, so a refused transition leaves the transaction clean."""
        row = await self._node_row(deployment_id, node_id)
        resolved = await self._resolve(values)
        check_transition(node_id, row.state, to)
        before = row.state
        now = utcnow()
        row.state, row.last_transition_at, row.reason = to.value, now, reason
        for name, value in resolved.items():
            setattr(row, name, value)
        await self.log(Event(deployment_id, "node.transition", now, actor, node_id=node_id,
                             from_state=before, to_state=to.value, reason=reason))

    async def update_node(self, deployment_id: str, node_id: str, **values: Any) -> None:
        """Set NODE_FIELDS of a node without changing its state (no event)."""
        row = await self._node_row(deployment_id, node_id)
        for name, value in (await self._resolve(values)).items():
            setattr(row, name, value)

    async def remove_node(self, deployment_id: str, node_id: str, *, actor: str,
                          reason: str) -> None:
        row = await self._node_row(deployment_id, node_id)
        await self.session.delete(row)
        await self.log(Event(deployment_id, "node.removed", utcnow(), actor, node_id=node_id,
                             from_state=row.state, reason=reason))

    async def polled_nodes(self) -> list[tuple[str, str, str]]:
        """(device, platform, telemetry profile) of every running node whose deployment
        names a profile: what deployments add to the telemetry plan."""
        n, d = DeploymentNodeRow, DeploymentRow
        stmt = (select(DeviceRow.name, DeviceRow.platform, d.telemetry_profile)
                .join(n, n.device_id == DeviceRow.id).join(d, d.id == n.deployment_id)
                .where(n.state == NodeState.RUNNING.value, d.telemetry_profile.is_not(None),
                       d.deleting.is_(False)))
        return [(name, platform, profile)
                for name, platform, profile in await self.session.execute(stmt) if profile]

    # -- the audit log ---------------------------------------------------------------------
    async def log(self, event: Event) -> None:
        self.session.add(DeploymentEventRow(
            deployment_id=event.deployment_id, node_id=event.node_id, kind=event.kind,
            from_state=event.from_state, to_state=event.to_state, reason=event.reason,
            actor=event.actor, at=event.at))

    async def events(self, deployment_id: str, *, after: int = 0,
                     limit: int = 100) -> list[Event]:
        """The deployment's events in order, those after the event id `after`."""
        rows = (await self.session.scalars(
            select(DeploymentEventRow)
            .where(DeploymentEventRow.deployment_id == deployment_id,
                   DeploymentEventRow.id > after)
            .order_by(DeploymentEventRow.id).limit(max(1, min(limit, MAX_PAGE))))).all()
        return [Event(r.deployment_id, r.kind, r.at, r.actor, node_id=r.node_id,
                      from_state=r.from_state, to_state=r.to_state, reason=r.reason, id=r.id)
                for r in rows]

    # -- helpers ---------------------------------------------------------------------------
    async def _row(self, deployment_id: str, *, for_update: bool = False) -> DeploymentRow:
        stmt = select(DeploymentRow).where(DeploymentRow.id == deployment_id)
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = (await self.session.scalars(stmt)).first()
        if row is None:
            raise NotFound(f"no deployment {deployment_id}")
        return row

    async def _node_row(self, deployment_id: str, node_id: str) -> DeploymentNodeRow:
        stmt = select(DeploymentNodeRow).where(DeploymentNodeRow.id == node_id,
                                               DeploymentNodeRow.deployment_id == deployment_id)
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = (await self.session.scalars(stmt)).first()
        if row is None:
            raise NotFound(f"deployment {deployment_id} has no node {node_id}")
        return row

    async def _resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """NODE_FIELDS as columns: `device` (a name) becomes `device_id`."""
        unknown = set(values) - NODE_FIELDS
        if unknown:
            raise TypeError(f"not node fields: {', '.join(sorted(unknown))}")
        resolved = dict(values)
        if "device" in resolved:
            name = resolved.pop("device")
            device_id = None if name is None else await self.session.scalar(
                select(DeviceRow.id).where(DeviceRow.name == name))
            if name is not None and device_id is None:
                raise NotFound(f"no device {name}")
            resolved["device_id"] = device_id
        return resolved

    async def _progress(self, ids: Sequence[str]
                        ) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        """Nodes per state, and the lowest observed generation among running nodes."""
        counts: dict[str, dict[str, int]] = {}
        observed: dict[str, int] = {}
        if not ids:
            return counts, observed
        n = DeploymentNodeRow
        stmt = (select(n.deployment_id, n.state, func.count(), func.min(n.observed_generation))
                .where(n.deployment_id.in_(ids)).group_by(n.deployment_id, n.state))
        for deployment_id, state, count, lowest in await self.session.execute(stmt):
            counts.setdefault(deployment_id, {})[state] = count
            if state == NodeState.RUNNING.value:
                observed[deployment_id] = lowest
        return counts, observed


def _deployment(row: DeploymentRow, counts: dict[str, int], observed: int) -> Deployment:
    return Deployment(
        id=row.id, name=row.name, description=row.description, provider=row.provider,
        config_template=row.config_template, vars=dict(row.vars),
        telemetry_profile=row.telemetry_profile, options=dict(row.options),
        target_node_count=row.target_node_count, target_generation=row.target_generation,
        remediate=row.remediate, deleting=row.deleting, created_by=row.created_by,
        created_at=row.created_at, updated_at=row.updated_at, counts=counts,
        observed_generation=observed)


def _node(row: DeploymentNodeRow, device: str | None) -> Node:
    return Node(
        id=row.id, deployment_id=row.deployment_id, ordinal=row.ordinal,
        state=NodeState(row.state), hostname=row.hostname, ip_address=row.ip_address,
        device=device, target_generation=row.target_generation,
        observed_generation=row.observed_generation, attempts=row.attempts,
        reason=row.reason, drift=row.drift, created_at=row.created_at,
        last_transition_at=row.last_transition_at)
