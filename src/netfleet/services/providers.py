"""Where deployment nodes come from. A provider turns a pending node into an inventory device
netfleet can configure (provision), and gives it back when the node goes (release).

- `simulator`: allocates a new simulated device through the control API of `netfleet sim`
  (NETFLEET_SIMULATOR_URL), then adds it and its credentials to the inventory.
- `inventory`: adopts devices already in the inventory, picked by the deployment's selector
  (`options.where`), one per node in name order; provisioning connects and collects facts.

Both are idempotent per node: a node that already has its device (a planner resumed after a
restart) keeps it.

Other providers are plugins: an installed package's entry point in the group
`netfleet.providers` names a factory called as `factory(store=, jobs=, settings=, writes=)`
that returns an object with this Protocol; its entry point name is the `provider` a deployment
asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

import httpx
import structlog

from netfleet.domain.deployments import provision_delay
from netfleet.domain.errors import Conflict, InvalidInput, NetfleetError, NotFound
from netfleet.domain.jobs import JobKind, JobRequest, Status
from netfleet.domain.selectors import Selector
from netfleet.services.jobs import JobService
from netfleet.settings import Settings
from netfleet.store import Store
from netfleet.store.batch import WriteBatcher
from netfleet.store.db import Tx
from netfleet.store.deployments import Deployment, Node
from netfleet.store.records import CredentialSpec, DeviceSpec, DeviceUpdate

log = structlog.get_logger("netfleet.deployments")

PLATFORMS = ("cisco_ios", "arista_eos", "juniper_junos")


class StepFailed(NetfleetError):
    """A step of a node's lifecycle failed; the planner retries it, then fails the node."""

    category = "step_failed"


@dataclass(frozen=True, slots=True)
class Provisioned:
    hostname: str
    ip_address: str
    device: str  # inventory device name


class Provider(Protocol):
    name: str

    def check(self, options: Mapping[str, Any]) -> None:
        """Raise InvalidInput (naming the field) for options this provider cannot use."""

    async def provision(self, deployment: Deployment, node: Node) -> Provisioned: ...

    async def release(self, deployment: Deployment, node: Node) -> None: ...

    async def release_all(self, deployment: Deployment) -> None:
        """Release every device of the deployment, one whose node never learnt it included."""


GROUP = "netfleet.providers"


def load_providers(store: Store, jobs: JobService, settings: Settings,
                   writes: WriteBatcher) -> dict[str, Provider]:
    """The built-in providers, and those of installed plugins (a plugin may not replace a
    built-in one: a deployment's provider must mean the same on every controller)."""
    found: dict[str, Provider] = {
        "simulator": SimulatorProvider(store, jobs, settings.simulator_url, writes=writes),
        "inventory": InventoryProvider(store, jobs)}
    for point in entry_points(group=GROUP):
        if point.name in found:
            log.warning("provider plugin ignored: the name is built in", provider=point.name)
            continue
        try:
            found[point.name] = point.load()(store=store, jobs=jobs, settings=settings,
                                             writes=writes)
        except Exception as exc:  # a broken plugin costs its provider, not the controller
            log.error("provider plugin failed to load", provider=point.name,
                      error=f"{type(exc).__name__}: {exc}")
    return found


def deployment_tag(deployment_id: str) -> str:
    """The inventory tag of a deployment's devices: `where=tag=deployment-<id>` finds them."""
    return f"deployment-{deployment_id[:8]}"


class SimulatorProvider:
    """New devices from a running simulator, through its control API."""

    name = "simulator"

    def __init__(self, store: Store, jobs: JobService, url: str | None, *,
                 writes: WriteBatcher | None = None, delay: float = 0.2,
                 spread: float = 0.6) -> None:
        self.store, self.jobs, self.url = store, jobs, url
        self.writes = writes or WriteBatcher(store)
        self.delay, self.spread = delay, spread  # provisioning time: delay + up to spread
        self._http: httpx.AsyncClient | None = None

    def check(self, options: Mapping[str, Any]) -> None:
        if not self.url:
            raise InvalidInput("the simulator provider needs a simulator", field="provider",
                               fix="set NETFLEET_SIMULATOR_URL to the control API of "
                                   "`netfleet sim` (e.g. http://127.0.0.1:8001), or use "
                                   "provider=inventory")
        platform = options.get("platform", "cisco_ios")
        if platform not in PLATFORMS:
            raise InvalidInput(f"unknown platform {platform!r}", field="options.platform",
                               fix=f"one of {', '.join(PLATFORMS)}")

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            assert self.url is not None
            self._http = httpx.AsyncClient(base_url=self.url.rstrip("/"), timeout=30)
        return self._http

    async def provision(self, deployment: Deployment, node: Node) -> Provisioned:
        if node.device is not None and node.hostname and node.ip_address:
            if await self._exists(node.device):  # resumed or retried: keep its device
                return Provisioned(node.hostname, node.ip_address, node.device)
            await self._release(node.device)  # the simulator lost it: a new one
        # Deterministic by node id: the same deployment provisions in the same time again.
        await asyncio.sleep(provision_delay(node.id, self.delay, self.spread))
        platform = deployment.options.get("platform", "cisco_ios")
        try:
            http = self._client()
            made = (await http.post("/devices", json={"count": 1, "platforms": [platform]}))
            made.raise_for_status()
            body = made.json()
            device = body["devices"][0]
            secret = (await http.get(f"/devices/{device['name']}/credentials"))
            secret.raise_for_status()
            creds = secret.json()
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise StepFailed(f"the simulator did not allocate a device: "
                             f"{type(exc).__name__}: {exc}") from None
        name = device["name"]
        profile = CredentialSpec(name, creds["username"], password=creds.get("password"),
                                 enable_secret=creds.get("enable_secret"))
        spec = DeviceSpec(name, device["host"], device["platform"], port=int(body["port"]),
                          tags=[deployment_tag(deployment.id)], credentials=name,
                          vars={"deployment": deployment.name, "node": node.ordinal})

        async def add(tx: Tx) -> None:
            await tx.credentials.create(profile)
            await tx.devices.create(spec)

        await self.writes.write(add)
        return Provisioned(device.get("hostname") or name, device["host"], name)

    async def _exists(self, name: str) -> bool:
        try:
            found = await self._client().get(f"/devices/{name}")
        except httpx.HTTPError as exc:
            raise StepFailed(f"the simulator does not answer: {exc}") from None
        return found.status_code == 200

    async def release(self, deployment: Deployment, node: Node) -> None:
        if node.device is not None:
            await self._release(node.device)

    async def _release(self, name: str) -> None:
        self.jobs.forget([name])
        async with self.store.transaction() as tx:
            for remove in (tx.devices.delete, tx.credentials.delete):
                with contextlib.suppress(NotFound):
                    await remove(name)
        try:
            gone = await self._client().delete(f"/devices/{name}")
            if gone.status_code not in (204, 404):
                gone.raise_for_status()
        except httpx.HTTPError as exc:  # the simulator keeps a device nobody uses: say so
            log.warning("simulator device not released", device=name, error=str(exc))

    async def release_all(self, deployment: Deployment) -> None:
        """Every device tagged with the deployment: a node deleted mid-provisioning may have
        made its device without recording it."""
        async with self.store.transaction(readonly=True) as tx:
            found = await tx.devices.find_all(
                Selector.parse([f"tag={deployment_tag(deployment.id)}"]))
        gate = asyncio.Semaphore(32)

        async def one(name: str) -> None:
            async with gate:
                await self._release(name)

        await asyncio.gather(*(one(d.name) for d in found))

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()


class InventoryProvider:
    """Existing inventory devices, chosen by `options.where`; node n gets the n-th by name."""

    name = "inventory"

    def __init__(self, store: Store, jobs: JobService) -> None:
        self.store, self.jobs = store, jobs

    def check(self, options: Mapping[str, Any]) -> None:
        where = options.get("where")
        if not where or not isinstance(where, list):
            raise InvalidInput("the inventory provider adopts devices by selector",
                               field="options.where",
                               fix='give the devices to adopt, e.g. {"where": ["tag=edge"]}')
        Selector.parse(where)

    async def provision(self, deployment: Deployment, node: Node) -> Provisioned:
        if node.device is not None and node.hostname and node.ip_address:
            return Provisioned(node.hostname, node.ip_address, node.device)
        async with self.store.transaction(readonly=True) as tx:
            found = sorted(await tx.devices.find_all(Selector.parse(deployment.options["where"])),
                           key=lambda d: d.name)
        if node.ordinal >= len(found):
            raise StepFailed(f"only {len(found)} inventory devices match "
                             f"{' '.join(deployment.options['where'])}")
        device = found[node.ordinal]
        # Provisioning an existing device: connect and collect its facts.
        try:
            job = await self.jobs.submit(JobRequest(kind=JobKind.FACTS, device=device.name),
                                         requested_by=f"deployment:{deployment.id}")
        except (InvalidInput, Conflict) as exc:
            raise StepFailed(exc.message) from None
        done = await self.jobs.get(job.id, wait=120)
        result = done.results[0] if done.results else None
        if result is None or result.status != Status.SUCCEEDED:
            reason = f"{result.category}: {result.message}" if result else "no result"
            raise StepFailed(f"could not collect facts from {device.name} ({reason})")
        hostname = (result.facts or {}).get("hostname")
        async with self.store.transaction() as tx:
            current = await tx.devices.get(device.name)
            tags = sorted({*current.tags, deployment_tag(deployment.id)})
            await tx.devices.update(device.name, DeviceUpdate(tags=tags))
        return Provisioned(str(hostname or device.name), device.host, device.name)

    async def release(self, deployment: Deployment, node: Node) -> None:
        """The device stays in the inventory; only the deployment's tag goes."""
        if node.device is None:
            return
        async with self.store.transaction() as tx:
            try:
                current = await tx.devices.get(node.device)
            except NotFound:
                return
            tags = [t for t in current.tags if t != deployment_tag(deployment.id)]
            await tx.devices.update(node.device, DeviceUpdate(tags=tags))

    async def release_all(self, deployment: Deployment) -> None:
        tag = deployment_tag(deployment.id)
        async with self.store.transaction() as tx:
            for device in await tx.devices.find_all(Selector.parse([f"tag={tag}"])):
                await tx.devices.update(device.name, DeviceUpdate(
                    tags=[t for t in device.tags if t != tag]))
