"""The node lifecycle and a deployment's status, as the deployments API reports them."""

from __future__ import annotations

import itertools

import pytest

from netfleet.domain.deployments import (
    TRANSITIONS,
    DeploymentStatus,
    IllegalTransition,
    NodeState,
    check_transition,
    deployment_status,
    observed_generation,
    provision_delay,
    retry_delay,
)
from netfleet.domain.errors import Conflict

P, PR, C, R, F = (NodeState.PENDING, NodeState.PROVISIONING, NodeState.CONFIGURING,
                  NodeState.RUNNING, NodeState.FAILED)


def test_the_lifecycle_goes_forward_one_step_at_a_time_and_fails_from_anywhere() -> None:
    for current, wanted in [(P, PR), (PR, C), (C, R), (P, F), (PR, F), (C, F), (R, F), (F, P)]:
        check_transition("n1", current, wanted)
    allowed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    illegal = [(a, b) for a, b in itertools.product(NodeState, NodeState)
               if (a, b) not in allowed]
    assert (P, R) in illegal and (R, P) in illegal and (F, R) in illegal and (R, R) in illegal
    for current, wanted in illegal:
        with pytest.raises(IllegalTransition) as caught:
            check_transition("n1", current, wanted)
        # A 409 for the API, and a message that says what is allowed instead.
        assert isinstance(caught.value, Conflict)
        assert f"from {current} to {wanted}" in caught.value.message
        assert "it may go to" in caught.value.message


def test_an_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="sleeping"):
        check_transition("n1", "pending", "sleeping")


def test_observed_generation_is_the_lowest_among_running_nodes() -> None:
    assert observed_generation([]) == 0
    assert observed_generation([(R, 3), (R, 2), (C, 1), (F, 0)]) == 2
    assert observed_generation([(P, 0), (C, 1)]) == 0


@pytest.mark.parametrize(("counts", "target", "generation", "observed", "status"), [
    ({"running": 3}, 3, 2, 2, DeploymentStatus.READY),
    ({"running": 3}, 3, 3, 2, DeploymentStatus.PENDING),  # a rollout not yet everywhere
    ({"running": 2, "configuring": 1}, 3, 1, 1, DeploymentStatus.PENDING),
    ({"running": 2}, 3, 1, 1, DeploymentStatus.PENDING),  # scaled up, a node not yet made
    ({"running": 2, "failed": 1}, 3, 1, 1, DeploymentStatus.DEGRADED),
    ({"pending": 3}, 3, 1, 0, DeploymentStatus.PENDING),
    ({}, 0, 2, 0, DeploymentStatus.READY),  # scaled to zero: nothing left to converge
])
def test_status_is_ready_only_when_every_node_runs_the_target_generation(
        counts: dict[str, int], target: int, generation: int, observed: int,
        status: DeploymentStatus) -> None:
    assert deployment_status(counts, target, generation, observed) is status


def test_provisioning_delay_is_fixed_by_node_id_and_spread() -> None:
    delays = [provision_delay(f"node-{i}", 0.5, 2.0) for i in range(200)]
    assert delays == [provision_delay(f"node-{i}", 0.5, 2.0) for i in range(200)]
    assert all(0.5 <= d < 2.5 for d in delays)
    assert max(delays) - min(delays) > 1.5  # spread, not one value


def test_retry_delay_doubles_up_to_a_cap() -> None:
    assert [retry_delay(a, base=0.5, cap=3.0) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
