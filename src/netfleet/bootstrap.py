"""The composition root: builds the object graph for each role. Nothing else wires objects."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import FastAPI

from netfleet.api.app import create_app
from netfleet.backends.base import Backend
from netfleet.backends.memory import MemoryBackend
from netfleet.backends.redis import RedisBackend
from netfleet.domain.errors import BackendUnavailable, InvalidInput
from netfleet.domain.ports import Target
from netfleet.drivers import driver_for
from netfleet.engine import Engine, EngineDeps, Limits
from netfleet.engine.agent import Agent, agent_name
from netfleet.parsing import Parsers
from netfleet.rendering.diff import config_diff
from netfleet.rendering.jinja import config_lines, default_renderer
from netfleet.services.cluster import ClusterWork, Leadership, Recorder
from netfleet.services.deployments import DeploymentService
from netfleet.services.jobs import JobService
from netfleet.services.providers import load_providers
from netfleet.services.telemetry import TelemetryService
from netfleet.services.webhooks import WebhookSender
from netfleet.settings import Settings
from netfleet.store import Store, migrate
from netfleet.store.batch import WriteBatcher
from netfleet.store.secrets import load_key

log = structlog.get_logger("netfleet.bootstrap")
EPOCH_CHECK = 2.0  # seconds between checks that Redis still holds the cluster's data


class Keys:
    """API keys as the API layer needs them: verify a token to (name, role).

    A verified key is remembered for a few seconds, so a burst of requests costs one database
    lookup; revoking through `revoke` forgets it at once.
    """

    TTL = 5.0

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: dict[str, tuple[float, int, str, str]] = {}

    async def verify(self, token: str) -> tuple[str, str] | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        hit = self._known.get(digest)
        if hit is not None and time.monotonic() - hit[0] < self.TTL:
            return hit[2], hit[3]
        async with self.store.transaction() as tx:
            key = await tx.api_keys.verify(token)
        if key is None:
            self._known.pop(digest, None)
            return None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[digest] = (time.monotonic(), key.id, key.name, key.role)
        return key.name, key.role

    async def revoke(self, key_id: int) -> Any:
        async with self.store.transaction() as tx:
            key = await tx.api_keys.revoke(key_id)
        self._known = {d: v for d, v in self._known.items() if v[1] != key_id}
        return key

    async def create(self, name: str, role: str) -> tuple[Any, str]:
        async with self.store.transaction() as tx:
            new = await tx.api_keys.create(name, role)
        return new.key, new.token


@dataclass
class Cluster:
    """A controller's part in a cluster: Redis, work going down, observations coming up, and
    the lease that makes one controller the deployment planner."""

    name: str
    backend: Backend
    work: ClusterWork
    recorder: Recorder
    leadership: Leadership
    watch: asyncio.Task[None] | None = None
    agent: Agent | None = None  # embedded: this process's own agent, on the memory backend

    async def close(self) -> None:
        if self.watch is not None:
            self.watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watch
        if self.agent is not None:
            await self.agent.stop(drain=5.0)
        await self.recorder.stop()
        await self.backend.close()


@dataclass
class Services:
    """Everything the API and CLI use, built once per process."""

    settings: Settings
    store: Store
    jobs: JobService
    keys: Keys
    parsers: Parsers
    webhooks: WebhookSender
    telemetry: TelemetryService
    deployments: DeploymentService
    cluster: Cluster | None = None  # set when NETFLEET_REDIS_URL is

    @property
    def engine(self) -> Engine:
        """The engine running this process's work (embedded: its agent's)."""
        if self.cluster is not None and self.cluster.agent is not None:
            return self.cluster.agent.engine
        return self.jobs.engine

    def render(self, template: str, variables: dict[str, Any]) -> str:
        return default_renderer().render(template, variables)

    @staticmethod
    def config_lines(text: str) -> list[str]:
        return config_lines(text)

    async def close(self) -> None:
        if self.cluster is not None:
            await self.cluster.leadership.stop()
        await self.deployments.close()  # planners first: they submit jobs and re-plan polls
        await self.telemetry.stop()  # nothing reassigns polls from here on
        if self.cluster is not None:
            await self.cluster.close()  # the recorder drains what it has read
        await self.jobs.close()  # stops the engine: no more polls
        await self.telemetry.close()  # then the last samples are written
        await self.webhooks.close()
        self.parsers.close()
        await self.store.close()


def webhook_secret(settings: Settings) -> bytes:
    if settings.webhook_secret is not None:
        return settings.webhook_secret.get_secret_value().encode()
    return hmac.new(load_key(settings), b"netfleet webhooks", hashlib.sha256).digest()


def _driver(target: Target) -> Any:
    return driver_for(target.platform, target.driver)


async def build_services(settings: Settings, limits: Limits | None = None) -> Services:
    """Migrate the database, then build the store, engine, parsers and services."""
    await migrate(settings.database_url)
    store = Store.from_settings(settings)
    limits = limits or _limits(settings)
    parsers = Parsers()
    webhooks = WebhookSender(webhook_secret(settings))
    telemetry = TelemetryService(
        store, retention_days=settings.retention_days,
        rollup_retention_days=settings.rollup_retention_days, webhooks=webhooks,
        alert_webhook=settings.alert_webhook, alert_window=settings.alert_window,
        alert_interval=settings.alert_interval, alert_method=settings.alert_method,
        alert_threshold=settings.alert_threshold)

    def engine_factory(jobs: JobService) -> Engine:
        return Engine(EngineDeps(
            resolve=jobs.resolve, driver_for=_driver, on_result=jobs.on_result,
            on_poll=telemetry.on_poll, poll_pressure=telemetry.pressure, parser=parsers,
            differ=lambda running, lines, platform: config_diff(running, lines,
                                                               platform=platform)),
            limits)

    backend: Backend | None = None
    work: ClusterWork | None = None
    agent: Agent | None = None
    if settings.redis_url is not None:  # a controller of a cluster: agents run the work
        backend = RedisBackend(settings.redis_url)
    elif settings.embedded == "memory":  # the same path, in this process
        backend = MemoryBackend()
        agent = _agent(settings, backend, limits, parsers, f"{agent_name()}-embedded",
                       downstream=telemetry.pressure)
    if backend is not None:
        work = ClusterWork(backend, load_key(settings), settings.partitions)
        await work.start()
    jobs = JobService(store=store, engine_factory=engine_factory,
                      render=default_renderer().render, config_lines=config_lines,
                      webhooks=webhooks, remote=work)
    if settings.redis_url is None:
        await jobs.recover()  # the embedded engine starts empty: nothing it held survives
    if agent is not None:
        await agent.start()
    telemetry.engine = jobs.engine
    telemetry.remote = work
    telemetry.sees_every_poll = agent is not None
    await telemetry.start()
    writes = WriteBatcher(store)
    deployments = DeploymentService(
        store, jobs, telemetry, load_providers(store, jobs, settings, writes), writes,
        render=default_renderer().render,
        workers=settings.deploy_workers, attempts=settings.deploy_attempts,
        stuck_after=settings.deploy_stuck_after, drift_interval=settings.drift_interval)
    cluster = None
    if backend is not None and work is not None:
        cluster = _controller(settings, backend, work, jobs, telemetry, deployments, agent)
    else:
        await deployments.start()  # every deployment carries on where the database says
    return Services(settings=settings, store=store, jobs=jobs, keys=Keys(store),
                    parsers=parsers, webhooks=webhooks, telemetry=telemetry,
                    deployments=deployments, cluster=cluster)


def _controller(settings: Settings, backend: Backend, work: ClusterWork, jobs: JobService,
                telemetry: TelemetryService, deployments: DeploymentService,
                agent: Agent | None = None) -> Cluster:
    """Start a controller's cluster part: the recorder, and the bid to lead the planners
    (until it leads, this controller plans no deployment)."""
    name = agent_name()

    async def flush() -> bool:
        await jobs.flush()
        await telemetry.flush()
        return jobs.buffered == 0 and telemetry.buffered == 0

    recorder = Recorder(backend, name=name, partitions=work.partitions,
                        on_result=jobs.on_result, on_poll=telemetry.on_poll, flush=flush,
                        lease_ttl=settings.lease_ttl, in_process=agent is not None)
    recorder.start()
    deployments.leading = False
    leadership = Leadership(backend, name="planners", holder=name, ttl=settings.lease_ttl,
                            gained=deployments.lead, lost=deployments.follow,
                            tick=deployments.adopt)
    leadership.start()
    watch = asyncio.create_task(_watch_epoch(work, jobs, telemetry), name="netfleet-epoch")
    return Cluster(name, backend, work, recorder, leadership, watch, agent)


async def _watch_epoch(work: ClusterWork, jobs: JobService,
                       telemetry: TelemetryService) -> None:
    """Every few seconds: if Redis lost its data (restarted without persistence), the work
    it held is gone: fail those jobs' unfinished devices (`backend_lost`, so no job waits
    forever) and publish the desired state whole again."""
    while True:
        await asyncio.sleep(EPOCH_CHECK)
        try:
            since = await work.check_epoch()
            if since is None:
                continue
            async with jobs.store.transaction() as tx:
                lost = await tx.jobs.fail_lost(datetime.fromtimestamp(since, UTC))
            log.warning("Redis lost its data; unfinished work accepted before failed",
                        results=lost)
            await telemetry.apply()
        except BackendUnavailable:
            continue
        except Exception:
            log.exception("checking the backend's epoch failed")


def build_agent(settings: Settings, limits: Limits | None = None,
                name: str | None = None) -> Agent:
    """An agent: Redis and the secret key, no database."""
    if settings.redis_url is None:
        raise InvalidInput("an agent needs Redis", field="NETFLEET_REDIS_URL",
                           fix="set NETFLEET_REDIS_URL=redis://host:6379/0, the same as the "
                               "controllers'")
    if settings.secret_key is None and not settings.secret_key_file.exists():
        raise InvalidInput(
            "an agent needs the cluster's secret key to open device credentials",
            field="NETFLEET_SECRET_KEY",
            fix="set NETFLEET_SECRET_KEY to the controllers' key (the same everywhere)")
    url = settings.redis_url
    return _agent(settings, RedisBackend(url), limits or _limits(settings), Parsers(), name,
                  lease_backend=lambda: RedisBackend(url))


def _agent(settings: Settings, backend: Backend, limits: Limits, parsers: Parsers,
           name: str | None, lease_backend: Callable[[], Backend] | None = None,
           downstream: Callable[[], float] | None = None) -> Agent:
    return Agent(backend, lambda deps: Engine(deps, limits),
                 secret=load_key(settings), partitions=settings.partitions,
                 lease_ttl=settings.lease_ttl, name=name, parser=parsers, driver_for=_driver,
                 differ=lambda running, lines, platform: config_diff(running, lines,
                                                                    platform=platform),
                 lease_backend=lease_backend,
                 downstream=downstream)


def _limits(settings: Settings) -> Limits:
    return Limits(
        global_concurrency=settings.max_concurrency,
        per_device_sessions=settings.sessions_per_device,
        per_device_queue=settings.device_queue, max_pending=settings.max_pending,
        idle_timeout=settings.idle_session_timeout)


def build_app(services: Services) -> FastAPI:
    return create_app(services)

