"""The deployment repository on SQLite and PostgreSQL: nodes created pending with the
deployment, transitions checked and logged in the same transaction, generations, counts, and
a log that outlives the deployment."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from netfleet.domain.deployments import DeploymentStatus, IllegalTransition, NodeState
from netfleet.domain.errors import NotFound
from netfleet.store import Store
from netfleet.store.batch import WriteBatcher
from netfleet.store.db import Tx
from netfleet.store.deployments import DeploymentSpec
from netfleet.store.records import DeviceSpec

P, PR, C, R, F = (NodeState.PENDING, NodeState.PROVISIONING, NodeState.CONFIGURING,
                  NodeState.RUNNING, NodeState.FAILED)


async def test_a_deployment_is_created_with_its_nodes_pending_and_an_event(store: Store) -> None:
    async with store.transaction() as tx:
        made = await tx.deployments.create(
            DeploymentSpec("edge", "simulator", 5, description="lab", vars={"ntp": "192.0.2.1"},
                           config_template="ntp server {{ ntp }}"), actor="alice")
    assert made.counts == {"pending": 5}
    assert made.current_node_count == 5
    assert (made.target_generation, made.observed_generation) == (1, 0)
    assert made.status is DeploymentStatus.PENDING
    async with store.transaction(readonly=True) as tx:
        nodes = await tx.deployments.nodes(made.id)
        events = await tx.deployments.events(made.id)
        listed = await tx.deployments.page()
    assert [n.ordinal for n in nodes] == [0, 1, 2, 3, 4]
    assert {n.state for n in nodes} == {P}
    assert {(n.target_generation, n.observed_generation) for n in nodes} == {(1, 0)}
    assert [(e.kind, e.actor) for e in events] == [("deployment.created", "alice")]
    assert [d.id for d in listed] == [made.id]
    assert listed[0].vars == {"ntp": "192.0.2.1"}


async def test_nodes_move_through_the_lifecycle_and_every_step_is_logged(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.devices.create(DeviceSpec("edge-0", "192.0.2.10", "cisco_ios"))
        made = await tx.deployments.create(DeploymentSpec("edge", "simulator", 2),
                                           actor="alice")
        first, second = await tx.deployments.nodes(made.id)
    async with store.transaction() as tx:
        d = tx.deployments
        await d.transition(made.id, first.id, PR, actor="planner")
        await d.transition(made.id, first.id, C, actor="planner", hostname="edge-0",
                           ip_address="192.0.2.10", device="edge-0")
        node = await d.transition(made.id, first.id, R, actor="planner",
                                  observed_generation=1)
        await d.transition(made.id, second.id, F, actor="planner", reason="no address left")
    assert (node.state, node.device, node.hostname, node.observed_generation) == (
        R, "edge-0", "edge-0", 1)
    async with store.transaction(readonly=True) as tx:
        got = await tx.deployments.get(made.id)
        events = await tx.deployments.events(made.id)
    assert got.counts == {"running": 1, "failed": 1}
    assert got.status is DeploymentStatus.DEGRADED
    assert got.observed_generation == 1
    transitions = [(e.node_id, e.from_state, e.to_state, e.reason) for e in events
                   if e.kind == "node.transition"]
    assert transitions == [(first.id, "pending", "provisioning", None),
                           (first.id, "provisioning", "configuring", None),
                           (first.id, "configuring", "running", None),
                           (second.id, "pending", "failed", "no address left")]
    ids = [e.id or 0 for e in events]
    assert ids == sorted(ids) and 0 not in ids  # in the order they happened


async def test_an_illegal_transition_changes_nothing_and_logs_nothing(store: Store) -> None:
    async with store.transaction() as tx:
        made = await tx.deployments.create(DeploymentSpec("edge", "simulator", 1), actor="a")
        [node] = await tx.deployments.nodes(made.id)
    with pytest.raises(IllegalTransition, match="from pending to running"):
        async with store.transaction() as tx:
            await tx.deployments.transition(made.id, node.id, R, actor="planner")
    async with store.transaction(readonly=True) as tx:
        assert (await tx.deployments.node(made.id, node.id)).state is P
        assert [e.kind for e in await tx.deployments.events(made.id)] == ["deployment.created"]


async def test_an_update_bumps_the_generation_of_the_deployment_and_of_every_node(
        store: Store) -> None:
    async with store.transaction() as tx:
        made = await tx.deployments.create(DeploymentSpec("edge", "simulator", 3), actor="a")
        nodes = await tx.deployments.nodes(made.id)
        for n in nodes:
            for state in (PR, C, R):
                await tx.deployments.transition(made.id, n.id, state, actor="planner",
                                                observed_generation=1)
    async with store.transaction(readonly=True) as tx:
        assert (await tx.deployments.get(made.id)).status is DeploymentStatus.READY
    async with store.transaction() as tx:
        updated = await tx.deployments.change(made.id, actor="bob", reason="vars changed",
                                              bump_generation=True, vars={"ntp": "x"})
    assert (updated.target_generation, updated.observed_generation) == (2, 1)
    assert updated.status is DeploymentStatus.PENDING  # until every node observes 2
    async with store.transaction() as tx:
        for n in nodes:
            await tx.deployments.update_node(made.id, n.id, observed_generation=2)
        done = await tx.deployments.get(made.id)
        assert {n.target_generation for n in await tx.deployments.nodes(made.id)} == {2}
    assert done.status is DeploymentStatus.READY
    assert done.vars == {"ntp": "x"}


async def test_a_deleted_deployment_takes_its_nodes_and_leaves_its_log(store: Store) -> None:
    async with store.transaction() as tx:
        made = await tx.deployments.create(DeploymentSpec("edge", "simulator", 2), actor="a")
        [node, _] = await tx.deployments.nodes(made.id)
        await tx.deployments.remove_node(made.id, node.id, actor="a", reason="scaled down")
    async with store.transaction() as tx:
        await tx.deployments.delete(made.id, actor="a", reason="DELETE /deployments")
    async with store.transaction(readonly=True) as tx:
        with pytest.raises(NotFound):
            await tx.deployments.get(made.id)
        assert await tx.deployments.nodes(made.id) == []
        kinds = [e.kind for e in await tx.deployments.events(made.id)]
    assert kinds == ["deployment.created", "node.removed", "deployment.deleted"]


async def test_batched_writes_commit_together_and_a_refused_one_fails_alone(
        store: Store) -> None:
    async with store.transaction() as tx:
        made = await tx.deployments.create(DeploymentSpec("edge", "simulator", 3), actor="a")
        nodes = await tx.deployments.nodes(made.id)
    writes = WriteBatcher(store)

    def move(node_id: str, to: NodeState) -> Callable[[Tx], Awaitable[None]]:
        return lambda tx: tx.deployments.move(made.id, node_id, to, actor="planner")

    outcomes = await asyncio.gather(
        writes.write(move(nodes[0].id, PR)), writes.write(move(nodes[1].id, R)),  # illegal
        writes.write(move(nodes[2].id, F)), return_exceptions=True)
    await writes.close()
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], IllegalTransition)
    assert writes.batches == 1  # one transaction for all three
    async with store.transaction(readonly=True) as tx:
        states = [n.state for n in await tx.deployments.nodes(made.id)]
        kinds = [e.kind for e in await tx.deployments.events(made.id)]
    assert states == [PR, P, F]
    assert kinds == ["deployment.created", "node.transition", "node.transition"]
