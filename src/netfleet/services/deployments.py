"""Deployments: one planner task per deployment drives its nodes through their lifecycle.

State lives in the database, never only here: a planner reads its deployment and nodes, starts
a worker per node that has work, and every step a worker takes is a transition written with its
event. A controller that restarts starts a planner for every deployment and each carries on
from where the database says it was.

A worker runs one node at a time through: provision (the provider) → configure (the template
rendered and pushed as a config job through the real engine) → running (the telemetry profile
polls it). A failed step is retried with backoff up to `attempts`, then the node is failed with
the reason. A running node whose observed generation is behind the target applies the newest
config — it reads the target right before it renders, so rapid updates coalesce and an older
generation is never applied after a newer one. Nodes run in parallel (up to `workers` per
deployment); a slow or hung device holds only its own worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import structlog
from jinja2 import TemplateSyntaxError
from sqlalchemy.exc import DBAPIError

from netfleet.domain.deployments import (
    Event,
    IllegalTransition,
    NodeState,
    retry_delay,
)
from netfleet.domain.errors import InvalidInput, NetfleetError, NotFound, RenderError
from netfleet.domain.jobs import JobKind, JobRequest, JobView, Status
from netfleet.services.jobs import JobService
from netfleet.services.providers import Provider, StepFailed
from netfleet.services.telemetry import TelemetryService
from netfleet.store import Store
from netfleet.store.batch import WriteBatcher
from netfleet.store.db import Tx, is_deadlock
from netfleet.store.deployments import Deployment, DeploymentSpec, Node
from netfleet.store.models import utcnow

log = structlog.get_logger("netfleet.deployments")

T = TypeVar("T")
PLANNER = "planner"
JOB_TIMEOUT = 120.0  # a node's config push; a hung device fails its step, never the planner
DRIFT_CHECKS = 32  # dry runs in flight per drift pass: ten thousand at once swamped the engine


class NodeFailed(NetfleetError):
    category = "node_failed"

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


@dataclass(eq=False)
class _Planner:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    workers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    progress: float = field(default_factory=time.monotonic)  # last step any worker finished
    task: asyncio.Task[None] | None = None
    # The deployment as last read or updated here: workers go by it instead of each reading
    # it (a thousand workers reading at once queued for database connections).
    deployment: Deployment | None = None


@dataclass
class DeploymentStats:
    """Counters since start, for /metrics."""

    transitions: int = 0
    retries: int = 0
    applied: int = 0  # generations applied to running nodes
    drift_found: int = 0


class DeploymentService:
    def __init__(self, store: Store, jobs: JobService, telemetry: TelemetryService,
                 providers: Mapping[str, Provider], writes: WriteBatcher, *,
                 render: Callable[[str, dict[str, Any]], str], workers: int = 200,
                 attempts: int = 3, stuck_after: float = 300.0, drift_interval: float = 300.0,
                 retry_base: float = 0.5, tick: float = 5.0) -> None:
        self.store, self.jobs, self.telemetry = store, jobs, telemetry
        self.providers = dict(providers)
        self.writes = writes  # node transitions of every planner, committed in batches
        self.render = render
        self.workers, self.attempts = workers, attempts
        self.stuck_after, self.drift_interval = stuck_after, drift_interval
        self.retry_base, self.tick = retry_base, tick
        self.stats = DeploymentStats()
        self._planners: dict[str, _Planner] = {}
        self._drift: asyncio.Task[None] | None = None
        self._telemetry_dirty = asyncio.Event()
        self._telemetry_task: asyncio.Task[None] | None = None
        self._closing = False
        # False on a controller of a cluster that does not lead: it plans nothing, the
        # leading controller finds new deployments (`adopt`) and plans them.
        self.leading = True

    # -- lifecycle of the service ----------------------------------------------------------
    async def start(self) -> int:
        """A planner for every deployment in the database; returns how many."""
        async with self.store.transaction(readonly=True) as tx:
            ids = await tx.deployments.ids()
        for deployment_id in ids:
            self._ensure(deployment_id)
        self._drift = asyncio.create_task(self._drift_loop(), name="netfleet-drift")
        self._telemetry_task = asyncio.create_task(self._telemetry_loop(),
                                                   name="netfleet-deploy-telemetry")
        return len(ids)

    async def adopt(self) -> int:
        """Plan every deployment that has no planner here yet (made through another
        controller); returns how many were adopted."""
        async with self.store.transaction(readonly=True) as tx:
            ids = await tx.deployments.ids()
        fresh = [i for i in ids if (p := self._planners.get(i)) is None
                 or p.task is None or p.task.done()]
        for deployment_id in fresh:
            self._ensure(deployment_id)
        return len(fresh)

    async def lead(self) -> None:
        """This controller leads now: plan every deployment."""
        self.leading = True
        await self.start()

    async def follow(self) -> None:
        """Another controller leads: stop planning (the database keeps every state)."""
        self.leading = False
        tasks = [t for t in (self._drift, self._telemetry_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._drift = self._telemetry_task = None
        await self.reset()

    async def close(self) -> None:
        self._closing = True
        tasks = [t for t in (self._drift, self._telemetry_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.reset()
        await self.writes.close()
        for provider in self.providers.values():
            closing = getattr(provider, "close", None)
            if closing is not None:
                await closing()

    async def reset(self) -> None:
        """Stop every planner (their state is in the database; `start` resumes them)."""
        tasks = [p.task for p in self._planners.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._planners.clear()

    def _ensure(self, deployment_id: str) -> _Planner:
        planner = self._planners.get(deployment_id)
        if planner is None or planner.task is None or planner.task.done():
            planner = self._planners[deployment_id] = _Planner()
            if self.leading:  # in a cluster, only the leading controller plans
                planner.task = asyncio.create_task(
                    self._plan(deployment_id, planner),
                    name=f"netfleet-deployment-{deployment_id[:8]}")
        planner.wake.set()
        return planner

    # -- the API's use cases ---------------------------------------------------------------
    async def create(self, spec: DeploymentSpec, *, actor: str) -> Deployment:
        await self._check(spec.provider, spec.options, spec.config_template, dict(spec.vars),
                          spec.telemetry_profile)
        async with self.store.transaction() as tx:
            made = await tx.deployments.create(spec, actor=actor)
        self._ensure(made.id)
        return made

    async def get(self, deployment_id: str) -> Deployment:
        async with self.store.transaction(readonly=True) as tx:
            return await tx.deployments.get(deployment_id)

    async def page(self, *, skip: int = 0, limit: int = 100) -> list[Deployment]:
        async with self.store.transaction(readonly=True) as tx:
            return await tx.deployments.page(skip=skip, limit=limit)

    async def nodes(self, deployment_id: str, *, skip: int = 0,
                    limit: int | None = None) -> list[Node]:
        async with self.store.transaction(readonly=True) as tx:
            await tx.deployments.get(deployment_id)  # 404 for an unknown deployment
            return await tx.deployments.nodes(deployment_id, skip=skip, limit=limit)

    async def events(self, deployment_id: str, *, after: int = 0,
                     limit: int = 100) -> list[Event]:
        """The audit log; it outlives its deployment. NotFound if there never was one."""
        async with self.store.transaction(readonly=True) as tx:
            found = await tx.deployments.events(deployment_id, after=after, limit=limit)
            if not found and not await tx.deployments.events(deployment_id, limit=1):
                await tx.deployments.get(deployment_id, progress=False)  # raises NotFound
            return found

    async def update(self, deployment_id: str, *, actor: str, **changes: Any) -> Deployment:
        """Change a deployment. A new template or vars is a new generation for every node;
        a new target_node_count adds pending nodes or lets the planner remove the last ones."""
        current = await self.get(deployment_id)
        if current.deleting:
            raise InvalidInput(f"deployment {deployment_id} is being deleted",
                               field="deployment", fix="create a new deployment")
        template = changes.get("config_template", current.config_template)
        variables = changes.get("vars", current.vars)
        profile = changes.get("telemetry_profile", current.telemetry_profile)
        await self._check(current.provider, current.options, template, variables, profile)
        bump = any(k in changes and changes[k] != getattr(current, k)
                   for k in ("config_template", "vars"))
        said = ", ".join(f"{k}" for k in sorted(changes)) or "nothing"
        for attempt in range(1, 4):
            try:
                return await self._update(deployment_id, current, changes, actor=actor,
                                          bump=bump, said=said)
            except DBAPIError as exc:  # raced the planners' node writes: run it again
                if not is_deadlock(exc) or attempt == 3:
                    raise
                log.info("deployment update deadlocked with the planner; retrying",
                         deployment=deployment_id)
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    async def _update(self, deployment_id: str, current: Deployment, changes: dict[str, Any],
                      *, actor: str, bump: bool, said: str) -> Deployment:
        async with self.store.transaction() as tx:
            updated = await tx.deployments.change(
                deployment_id, actor=actor, bump_generation=bump,
                reason=f"changed {said}" + (f"; generation {current.target_generation + 1}"
                                            if bump else ""), **changes)
            wanted = updated.target_node_count
            nodes = await tx.deployments.nodes(deployment_id)
            if wanted > len(nodes):
                first = max((n.ordinal for n in nodes), default=-1) + 1
                await tx.deployments.add_nodes(deployment_id, first, wanted - len(nodes),
                                               generation=updated.target_generation)
            updated = await tx.deployments.get(deployment_id)
        self._ensure(deployment_id).deployment = updated  # workers apply it from now on
        if "telemetry_profile" in changes:
            self._telemetry_dirty.set()
        return updated

    async def delete(self, deployment_id: str, *, actor: str) -> None:
        """Mark it deleting; its planner releases every node, then removes it (and its nodes)."""
        async with self.store.transaction() as tx:
            current = await tx.deployments.get(deployment_id)
            if not current.deleting:
                await tx.deployments.change(deployment_id, actor=actor, deleting=True,
                                            reason="deletion requested")
        self._ensure(deployment_id)

    async def retry_node(self, deployment_id: str, node_id: str, *, actor: str) -> Node:
        async with self.store.transaction() as tx:
            node = await tx.deployments.node(deployment_id, node_id)
            if node.state is not NodeState.FAILED:
                raise InvalidInput(f"node {node_id} is {node.state}, not failed",
                                   field="node_id", fix="only a failed node can be retried")
            # Back to the start, keeping the device it has: provisioning adopts it again.
            node = await tx.deployments.transition(deployment_id, node_id, NodeState.PENDING,
                                                   actor=actor, reason="retry requested",
                                                   attempts=0)
        self._ensure(deployment_id)
        return node

    async def remove_node(self, deployment_id: str, node_id: str, *, actor: str) -> None:
        """Release one node and take it out; the deployment wants one node fewer."""
        async with self.store.transaction(readonly=True) as tx:
            deployment = await tx.deployments.get(deployment_id)
            node = await tx.deployments.node(deployment_id, node_id)
        await self._release_node(deployment, node, actor=actor, reason="removed")
        async with self.store.transaction() as tx:
            await tx.deployments.change(deployment_id, actor=actor, reason="removed a node",
                                        target_node_count=max(0, deployment.target_node_count
                                                              - 1))
        self._ensure(deployment_id)

    def stuck(self) -> list[dict[str, Any]]:
        """Deployments with work in flight and no step finished for `stuck_after` seconds."""
        now = time.monotonic()
        return [{"deployment": deployment_id, "workers": len(p.workers),
                 "seconds_without_progress": round(now - p.progress, 1)}
                for deployment_id, p in self._planners.items()
                if p.workers and now - p.progress > self.stuck_after]

    @property
    def active(self) -> int:
        return sum(1 for p in self._planners.values() if p.task and not p.task.done())

    # -- validation ------------------------------------------------------------------------
    async def _check(self, provider_name: str, options: Mapping[str, Any],
                     template: str | None, variables: Mapping[str, Any],
                     profile_name: str | None) -> None:
        provider = self.providers.get(provider_name)
        if provider is None:
            raise InvalidInput(f"unknown provider {provider_name!r}", field="provider",
                               fix=f"one of {', '.join(sorted(self.providers))}")
        provider.check(options)
        if template is not None:
            sample = {**variables, **_node_vars("example", 0, "node-0", "192.0.2.1", 1),
                      "device": {"name": "node-0", "platform": options.get("platform", ""),
                                 "host": "192.0.2.1", "site": None, "tags": []}}
            try:
                self.render(template, sample)
            except (RenderError, TemplateSyntaxError) as exc:
                message = getattr(exc, "message", None) or str(exc)
                raise InvalidInput(f"config_template does not render: {message}",
                                   field="config_template",
                                   fix="fix the template, or pass the variable in `vars`"
                                   ) from None
        if profile_name is not None:
            try:
                profile = await self.telemetry.profile(profile_name)
            except NotFound:
                raise InvalidInput(f"unknown telemetry profile {profile_name!r}",
                                   field="telemetry_profile",
                                   fix="see GET /api/v1/telemetry/profiles") from None
            platform = options.get("platform")
            if platform and profile.profile.platform != platform:
                raise InvalidInput(f"profile {profile_name} polls {profile.profile.platform}, "
                                   f"the nodes are {platform}", field="telemetry_profile",
                                   fix=f"use a {platform} profile, e.g. {platform}-default")

    # -- the planner -----------------------------------------------------------------------
    async def _plan(self, deployment_id: str, planner: _Planner) -> None:
        slots = asyncio.Semaphore(self.workers)
        workers = planner.workers
        try:
            while True:
                planner.wake.clear()
                async with self.store.transaction(readonly=True) as tx:
                    try:
                        deployment = await tx.deployments.get(deployment_id)
                    except NotFound:
                        return
                    nodes = await tx.deployments.nodes(deployment_id)
                planner.deployment = deployment
                if deployment.deleting:
                    await self._teardown(deployment, planner)
                    return
                keep = nodes[:deployment.target_node_count]
                for node in nodes[deployment.target_node_count:]:  # scaled down: last go first
                    await self._release_node(deployment, node, actor=PLANNER,
                                             reason="scaled down")
                for node in keep:
                    if node.id not in workers and _needs_work(deployment, node):
                        worker = workers[node.id] = asyncio.create_task(
                            self._worker(node, slots, planner),
                            name=f"netfleet-node-{node.id[:8]}")
                        worker.add_done_callback(_drop_when_done(workers, node.id))
                # Workers carry their nodes to the end by themselves: look again when told
                # (an update, a retry, a delete) or every tick, not each time one finishes.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(planner.wake.wait(), self.tick)
        except Exception:
            log.exception("deployment planner failed; restarting it", deployment=deployment_id)
            if not self._closing:
                asyncio.get_running_loop().call_later(self.tick, self._ensure, deployment_id)
        finally:
            for worker in workers.values():
                worker.cancel()
            await asyncio.gather(*workers.values(), return_exceptions=True)
            workers.clear()

    async def _worker(self, node: Node, slots: asyncio.Semaphore, planner: _Planner) -> None:
        async with slots:
            try:
                await self._drive(node, planner)
            except asyncio.CancelledError:
                raise
            except (NotFound, IllegalTransition):
                pass  # removed, retried or deleted under it: the planner looks again
            except Exception:
                log.exception("node worker failed", deployment=node.deployment_id,
                              node=node.id)

    async def _drive(self, node: Node, planner: _Planner) -> None:
        """Take one node as far as it goes: to running on the target generation, or failed.
        This worker is the only writer of its node's state (a retry, removal or delete stops
        it first), so it keeps the node in memory; the deployment is the planner's copy,
        which an update replaces. Nothing here reads the database."""
        assert planner.deployment is not None
        deployment = planner.deployment
        provider = self.providers[deployment.provider]
        apply = partial(self._apply, planner)
        while not deployment.deleting and _needs_work(deployment, node):
            try:
                if node.state is NodeState.PENDING:
                    node = await self._move(deployment, node, NodeState.PROVISIONING)
                elif node.state is NodeState.PROVISIONING:
                    made = await self._step(deployment, node, "provisioning",
                                            provider.provision)
                    node = await self._move(deployment, node, NodeState.CONFIGURING,
                                            hostname=made.hostname,
                                            ip_address=made.ip_address, device=made.device)
                elif node.state is NodeState.CONFIGURING:
                    generation = await self._step(deployment, node, "configuring", apply)
                    node = await self._move(deployment, node, NodeState.RUNNING,
                                            observed_generation=generation)
                    self._telemetry_dirty.set()
                else:  # running, behind the target or drifted with remediation on
                    generation = await self._step(
                        deployment, node, f"applying generation {deployment.target_generation}",
                        apply)
                    await self.writes.write(partial(
                        _applied, node.deployment_id, node.id, generation, node.drift))
                    node = dataclasses.replace(node, observed_generation=generation,
                                               drift=False, attempts=0, reason=None)
                    self.stats.applied += 1
            except NodeFailed as exc:
                node = await self._move(deployment, node, NodeState.FAILED, reason=exc.message,
                                        attempts=exc.attempts)
            planner.progress = time.monotonic()
            deployment = planner.deployment  # an update may have moved the target meanwhile

    async def _move(self, deployment: Deployment, node: Node, to: NodeState, *,
                    reason: str | None = None, **values: Any) -> Node:
        """Write the transition (batched with other nodes'); the node as it is now."""
        clear = {"attempts": 0} if to is not NodeState.FAILED else {}
        await self.writes.write(lambda tx: tx.deployments.move(
            deployment.id, node.id, to, actor=PLANNER, reason=reason, **{**clear, **values}))
        self.stats.transitions += 1
        changed = {k: v for k, v in {**clear, **values}.items() if k != "device"}
        return dataclasses.replace(node, state=to, reason=reason, device=values.get(
            "device", node.device), last_transition_at=utcnow(), **changed)

    async def _step(self, deployment: Deployment, node: Node, what: str,
                    work: Callable[[Deployment, Node], Awaitable[T]]) -> T:
        """`work(deployment, node)`, retried with backoff; NodeFailed with the last reason
        once out of tries."""
        for attempt in range(1, self.attempts + 1):
            try:
                return await work(deployment, node)
            except NetfleetError as exc:
                reason = exc.message
            except Exception as exc:  # a bug costs the step, never the planner
                log.exception("deployment step failed unexpectedly", node=node.id, step=what)
                reason = f"{type(exc).__name__}: {exc}"
            if attempt == self.attempts:
                raise NodeFailed(f"{what} failed {attempt} times; last: {reason}", attempt)
            self.stats.retries += 1
            await self.writes.write(partial(_attempted, deployment.id, node.id, attempt,
                                            f"{what}: {reason}"))
            await asyncio.sleep(retry_delay(attempt, base=self.retry_base))
        raise AssertionError("unreachable")

    async def _apply(self, planner: _Planner, deployment: Deployment, node: Node) -> int:
        """Push the newest config to the node; returns the generation it carried. Latest
        wins: updates made meanwhile coalesce into this one apply."""
        newest = planner.deployment or deployment
        generation = newest.target_generation
        if not newest.config_template:
            return generation
        if node.device is None:
            raise StepFailed("the node has no device to configure")
        done = await self._config_job(newest, node, generation)
        result = done.results[0] if done.results else None
        if result is None or result.status != Status.SUCCEEDED:
            why = f"{result.category}: {result.message}" if result else "no result"
            raise StepFailed(f"config job {done.id} {done.status}: {why}")
        return generation

    async def _config_job(self, deployment: Deployment, node: Node, generation: int, *,
                          dry_run: bool = False) -> JobView:
        """The deployment's template for this node at `generation`, as a config job through
        the engine (stored in the planners' group commits); its final view."""
        request = JobRequest(
            kind=JobKind.CONFIG, device=node.device, template=deployment.config_template,
            dry_run=dry_run, timeout=JOB_TIMEOUT,
            vars={**deployment.vars, **_node_vars(deployment.name, node.ordinal, node.hostname,
                                                  node.ip_address, generation)})
        job = await self.jobs.submit(request, requested_by=f"deployment:{deployment.id}",
                                     writes=self.writes)
        return await self.jobs.get(job.id, wait=JOB_TIMEOUT + 30)

    async def _release_node(self, deployment: Deployment, node: Node, *, actor: str,
                            reason: str) -> None:
        """Stop the node's worker, give its device back, take the node out (logged)."""
        planner = self._planners.get(deployment.id)
        worker = planner.workers.pop(node.id, None) if planner is not None else None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        await self.providers[deployment.provider].release(deployment, node)
        async with self.store.transaction() as tx:
            await tx.deployments.remove_node(deployment.id, node.id, actor=actor, reason=reason)
        self._telemetry_dirty.set()

    async def _teardown(self, deployment: Deployment, planner: _Planner) -> None:
        """Release every node (a half-provisioned one included), then delete."""
        for worker in planner.workers.values():
            worker.cancel()
        await asyncio.gather(*planner.workers.values(), return_exceptions=True)
        planner.workers.clear()
        provider = self.providers[deployment.provider]
        await provider.release_all(deployment)
        async with self.store.transaction() as tx:
            await tx.deployments.delete(deployment.id, actor=PLANNER,
                                        reason="every node released")
        self._telemetry_dirty.set()
        log.info("deployment deleted", deployment=deployment.id)

    # -- telemetry and drift ---------------------------------------------------------------
    async def _telemetry_loop(self) -> None:
        """Nodes that became running (or went) change what is polled: re-plan telemetry at
        most once a second, however many nodes changed."""
        while True:
            await self._telemetry_dirty.wait()
            self._telemetry_dirty.clear()
            try:
                await self.telemetry.apply()
            except Exception:
                log.exception("telemetry re-plan failed")
            await asyncio.sleep(1.0)

    async def _drift_loop(self) -> None:
        while True:
            await asyncio.sleep(self.drift_interval)
            with contextlib.suppress(Exception):
                await self.check_drift()

    async def check_drift(self) -> int:
        """Compare each settled running node's config with the desired one (a dry-run config
        job: the engine diffs the running config against the rendered lines). Drift is marked
        on the node and logged; with `remediate`, the planner re-applies. Returns how many
        nodes drifted."""
        drifted = 0
        gate = asyncio.Semaphore(DRIFT_CHECKS)
        for deployment in await self._all():
            if deployment.deleting or not deployment.config_template:
                continue
            planner = self._planners.get(deployment.id)
            if planner is not None and planner.workers:
                continue  # converging or rolling out: checked once it has settled
            async with self.store.transaction(readonly=True) as tx:
                nodes = await tx.deployments.nodes(deployment.id, states=[NodeState.RUNNING])
            settled = [n for n in nodes if n.device is not None
                       and n.observed_generation >= deployment.target_generation]
            found = await asyncio.gather(*(self._diff(deployment, n, gate) for n in settled))
            for node, diff in zip(settled, found, strict=True):
                if diff is None or bool(diff) == node.drift:
                    continue
                drifted += bool(diff)
                async with self.store.transaction() as tx:
                    await tx.deployments.update_node(deployment.id, node.id, drift=bool(diff))
                    await tx.deployments.log(Event(
                        deployment.id, "node.drift" if diff else "node.in_sync", utcnow(),
                        "reconciler", node_id=node.id,
                        reason=(diff[:2000] if diff else "running config matches again")))
                self.stats.drift_found += bool(diff)
            if drifted and deployment.remediate:
                self._ensure(deployment.id)
        return drifted

    async def _diff(self, deployment: Deployment, node: Node,
                    gate: asyncio.Semaphore) -> str | None:
        async with gate:
            return await self._dry_run(deployment, node)

    async def _dry_run(self, deployment: Deployment, node: Node) -> str | None:
        try:
            done = await self._config_job(deployment, node, deployment.target_generation,
                                          dry_run=True)
        except NetfleetError:
            return None
        result = done.results[0] if done.results else None
        if result is None or result.status != Status.SUCCEEDED:
            return None  # unreachable now: not drift, and the poller marks it stale
        return (result.diff or "").strip()

    async def _all(self) -> list[Deployment]:
        found: list[Deployment] = []
        while True:
            page = await self.page(skip=len(found), limit=500)
            found += page
            if len(page) < 500:
                return found


async def _attempted(deployment_id: str, node_id: str, attempt: int, reason: str,
                     tx: Tx) -> None:
    await tx.deployments.update_node(deployment_id, node_id, attempts=attempt, reason=reason)


async def _applied(deployment_id: str, node_id: str, generation: int, drifted: bool,
                   tx: Tx) -> None:
    await tx.deployments.update_node(deployment_id, node_id, observed_generation=generation,
                                     drift=False, attempts=0, reason=None)
    await tx.deployments.log(Event(
        deployment_id, "node.applied", utcnow(), PLANNER, node_id=node_id,
        reason=f"observed generation {generation}" + (" (drift remediated)" if drifted else "")))


def _drop_when_done(workers: dict[str, asyncio.Task[None]], node_id: str
                    ) -> Callable[[asyncio.Task[None]], None]:
    def drop(done: asyncio.Task[None]) -> None:
        if workers.get(node_id) is done:
            del workers[node_id]

    return drop


def _needs_work(deployment: Deployment, node: Node) -> bool:
    if node.state in (NodeState.PENDING, NodeState.PROVISIONING, NodeState.CONFIGURING):
        return True
    if node.state is NodeState.RUNNING:
        return (node.observed_generation < deployment.target_generation
                or (node.drift and deployment.remediate))
    return False


def _node_vars(deployment: str, ordinal: int, hostname: str | None, ip: str | None,
               generation: int) -> dict[str, Any]:
    """What a deployment's template sees of the node, beside the deployment's vars and the
    `device` the job service adds."""
    return {"node": {"ordinal": ordinal, "hostname": hostname, "ip_address": ip,
                     "generation": generation},
            "deployment": {"name": deployment}}
