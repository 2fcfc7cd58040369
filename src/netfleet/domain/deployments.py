"""Deployments: the node lifecycle as a state machine, generations, and the deployment's status.

    pending ──► provisioning ──► configuring ──► running
       │              │               │             │
       └──────────────┴───────┬───────┴─────────────┘
                              ▼
                            failed ──(retry)──► pending

A node is provisioned (a device allocated or adopted), configured (the deployment's template
rendered and pushed as a config job), then running (telemetry active). Every transition is an
audited event. Generations are the Kubernetes `generation`/`observedGeneration` idea: a
deployment's update bumps the target; each node reports the generation it last applied; the
deployment is pending until every running node observes the target.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from netfleet.domain.errors import Conflict

__all__ = [
    "TRANSITIONS",
    "DeploymentStatus",
    "Event",
    "IllegalTransition",
    "NodeState",
    "check_transition",
    "deployment_status",
    "observed_generation",
    "provision_delay",
    "retry_delay",
]


class NodeState(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    CONFIGURING = "configuring"
    RUNNING = "running"
    FAILED = "failed"


class DeploymentStatus(StrEnum):
    PENDING = "pending"  # nodes still converging, or a generation not yet observed everywhere
    READY = "ready"  # every node running, each on the target generation
    DEGRADED = "degraded"  # at least one node failed


TRANSITIONS: Mapping[NodeState, frozenset[NodeState]] = {
    NodeState.PENDING: frozenset({NodeState.PROVISIONING, NodeState.FAILED}),
    NodeState.PROVISIONING: frozenset({NodeState.CONFIGURING, NodeState.FAILED}),
    NodeState.CONFIGURING: frozenset({NodeState.RUNNING, NodeState.FAILED}),
    # A running node re-applies its config in place (new generation, drift): it stays running;
    # a failed re-apply past its retries fails the node.
    NodeState.RUNNING: frozenset({NodeState.FAILED}),
    NodeState.FAILED: frozenset({NodeState.PENDING}),  # retry starts the lifecycle again
}


class IllegalTransition(Conflict):
    """A node was asked to move between states the lifecycle does not connect."""

    category = "illegal_transition"

    def __init__(self, node: str, current: NodeState, wanted: NodeState) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
        super().__init__(f"node {node} cannot go from {current} to {wanted} "
                         f"(from {current} it may go to: {allowed})")
        self.node, self.current, self.wanted = node, current, wanted


def check_transition(node: str, current: NodeState | str, wanted: NodeState | str) -> None:
    """Raise IllegalTransition unless the lifecycle allows current -> wanted."""
    now, to = NodeState(current), NodeState(wanted)
    if to not in TRANSITIONS[now]:
        raise IllegalTransition(node, now, to)


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a deployment's audit log."""

    deployment_id: str
    kind: str  # deployment.created|updated|deleted, node.transition|drift|removed, ...
    at: datetime
    actor: str  # who caused it: an API key's name, "planner", "reconciler"
    node_id: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    reason: str | None = None
    id: int | None = None  # its place in the log, once stored


def observed_generation(nodes: Iterable[tuple[NodeState | str, int]]) -> int:
    """The lowest generation observed across running nodes (0 when none runs)."""
    running = [gen for state, gen in nodes if NodeState(state) is NodeState.RUNNING]
    return min(running) if running else 0


def deployment_status(counts: Mapping[str, int], target_nodes: int, target_generation: int,
                      observed: int) -> DeploymentStatus:
    """Degraded if any node failed; ready when every wanted node runs on the target generation;
    pending otherwise."""
    if counts.get(NodeState.FAILED, 0):
        return DeploymentStatus.DEGRADED
    running = counts.get(NodeState.RUNNING, 0)
    if running == target_nodes == sum(counts.values()) and (
            observed >= target_generation or running == 0):  # scaled to zero: nothing to wait for
        return DeploymentStatus.READY
    return DeploymentStatus.PENDING


def provision_delay(node_id: str, base: float, spread: float) -> float:
    """The simulator provider's provisioning time for a node: base + a share of spread fixed
    by the node id, so the same run takes the same time again."""
    return base + spread * (zlib.crc32(node_id.encode()) / 2**32)


def retry_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Backoff before attempt `attempt` + 1 of a failed step: base, 2·base, 4·base… up to cap."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))
