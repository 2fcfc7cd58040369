"""`python -m netfleet.bench.chaos`: a cluster under load while its agents and its Redis are
killed (SIGKILL) and started again; then checks what docs/cluster.md promises.

Two controllers and two agents share a Redis of the script's own (AOF, fsync always) and a
fresh PostgreSQL database; the simulator runs in its own process. Jobs go in through both
controllers, telemetry polls every device every second. Checked afterwards:
(a) every accepted job (HTTP 202) reached a final state;
(b) per device, the config jobs ran in the order they were accepted: no two at once, and the
    last run of each change after the last run of every earlier one (a job re-run after its
    agent died is run again in order with what followed it: at least once, in order);
(c) each device's running configuration holds the last accepted change (read over SSH);
(d) no telemetry sample was stored twice (and every sampled device has samples).
Prints a JSON report; exits non-zero when a check failed. For a device whose job never ended
or ran out of order, the report traces what went through Redis for it (the tasks queued, the
results each agent sent under which fencing token, what is still pending with whom).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
import yaml
from cryptography.fernet import Fernet

from netfleet import runtime
from netfleet.backends import keys
from netfleet.backends.partitions import partition_of
from netfleet.bench.sim import _free_port, cpu_seconds, simulator
from netfleet.services.inventory import import_file
from netfleet.settings import load_settings
from netfleet.store import Store, create_engine, migrate

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
PLATFORMS = ("cisco_ios", "arista_eos")
AGENTS = ("chaos-a", "chaos-b")
PARTITIONS = 16
LEASE_TTL = 2.0
FINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
CONFIG_SHARE = 0.6  # of submitted jobs; the rest are `show version`
IN_FLIGHT = 16  # job submissions waiting for their answer at once
SUBMIT_TIMEOUT = 30.0  # seconds; a POST not answered by then is counted as `no_answer`
STARTUP_LIMIT = 90.0  # seconds for the cluster to be ready
SETTLE_BASE, SETTLE_PER_DEVICE = 30.0, 0.3  # seconds after the load for every job to end
SAMPLED_DEVICES = 4  # devices whose stored samples are checked
CLOSE = 0.5  # seconds: samples of a series closer: two pollers, or a handover's first poll


def job_rate(devices: int) -> float:
    """Jobs submitted per second: enough that kills land among running and queued jobs."""
    return min(12.0, max(4.0, devices / 10))


# -- processes -------------------------------------------------------------------------------
class Child:
    """A process of ours (its output appended to a log file), killed and started again with
    the same arguments."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, env=self.env, stdout=out,
                                          stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    async def kill(self) -> None:
        """SIGKILL by pid: no goodbye, leases left to run out."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            await asyncio.to_thread(self.popen.wait, 10)

    async def stop(self, grace: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.popen.wait, grace)
        except subprocess.TimeoutExpired:
            await self.kill()

    def count(self, text: str) -> int:
        """Lines of its log (all its runs) that hold `text`."""
        if not self.log.exists():
            return 0
        return sum(text in line for line in self.log.read_text(errors="replace").splitlines())

    def cpu(self) -> float:
        """CPU seconds of the running process (0 if it is not running)."""
        if self.popen is None or self.popen.poll() is not None:
            return 0.0
        with contextlib.suppress(OSError):
            return cpu_seconds(self.popen.pid)
        return 0.0

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class Cluster:
    """Redis, two controllers and two agents, on one database."""

    def __init__(self, work: Path, logs: Path, database_url: str, secret: str) -> None:
        self.database_url, self.secret = database_url, secret
        self.redis_port = _free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {**os.environ, "NETFLEET_DATABASE_URL": database_url,
                    "NETFLEET_REDIS_URL": self.redis_url, "NETFLEET_SECRET_KEY": secret,
                    "NETFLEET_SECRET_KEY_FILE": str(work / "unused.key"),
                    "NETFLEET_LEASE_TTL": str(LEASE_TTL),
                    "NETFLEET_PARTITIONS": str(PARTITIONS)}
        self.redis = Child("redis", [
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--dir", str(work)], self.env, logs / "redis.log")
        self.controllers: list[tuple[Child, str]] = []
        for index in range(2):
            port = _free_port()
            self.controllers.append((self._netfleet(f"controller-{index}", logs,
                                                    ["serve", "--port", str(port)]),
                                     f"http://127.0.0.1:{port}"))
        self.agents = {name: self._netfleet(name, logs, ["agent", "--name", name,
                                                         "--drain", "1"])
                       for name in AGENTS}
        self.sim_pid: int | None = None  # the simulator's (not started here)

    def _netfleet(self, name: str, logs: Path, args: list[str]) -> Child:
        return Child(name, [sys.executable, "-m", "netfleet", "--log-level", "info", *args],
                     self.env, logs / f"{name}.log")

    @property
    def children(self) -> list[Child]:
        return [self.redis, *(c for c, _ in self.controllers), *self.agents.values()]

    async def start_redis(self) -> None:
        self.redis.start()
        client = aioredis.Redis(port=self.redis_port, socket_timeout=2)
        try:
            await _until(lambda: _pings(client), 30, "redis-server answering")
        finally:
            await client.aclose()

    async def start(self) -> None:
        await self.start_redis()
        for child in self.children[1:]:
            child.start()
        await _until(self.ready, STARTUP_LIMIT,
                     "both controllers ready and both agents owning partitions")

    async def ready(self) -> bool:
        """Both controllers answer /ready healthy, and each agent holds partitions."""
        async with httpx.AsyncClient(timeout=5) as http:
            for _, url in self.controllers:
                try:
                    if (await http.get(url + "/ready")).status_code != 200:
                        return False
                except httpx.HTTPError:
                    return False
        return await self.owners() == set(self.agents)

    async def owners(self) -> set[str]:
        """The agents holding the partitions' leases (empty while any partition has none)."""
        client = aioredis.Redis(port=self.redis_port, socket_timeout=2)
        try:
            held = await client.mget([keys.lease(keys.work_lease(p)) for p in range(PARTITIONS)])
        except aioredis.RedisError:
            return set()
        finally:
            await client.aclose()
        if any(h is None for h in held):
            return set()
        return {_text(h).rsplit(" ", 1)[0] for h in held}

    async def pending_work(self) -> dict[str, Any]:
        """Work entries read and not acknowledged, per partition: consumer -> count, with the
        partition's lease holder (after settling, any entry here is a job held up)."""
        client = aioredis.Redis(port=self.redis_port, socket_timeout=5)
        found: dict[str, Any] = {}
        try:
            for number in range(PARTITIONS):
                with contextlib.suppress(aioredis.ResponseError):
                    summary = await client.xpending(keys.work(number), keys.WORK_GROUP)
                    if summary["pending"]:
                        found[str(number)] = {
                            "owner": await self.owner(number),
                            "pending": {_text(c["name"]): int(c["pending"])
                                        for c in summary["consumers"]}}
        finally:
            await client.aclose()
        return found

    async def trace(self, device: str, since: float) -> dict[str, Any]:
        """One device's work entries still in Redis since `since` (epoch seconds): child job,
        kind, config lines, and who holds it unacknowledged (consumer, deliveries) — where a
        job that never ended was held up. (Work done is trimmed from the streams.)"""
        number = partition_of(device, PARTITIONS)
        client = aioredis.Redis(port=self.redis_port, socket_timeout=10)
        try:
            pending = {_text(p["message_id"]): {"consumer": _text(p["consumer"]),
                                                 "deliveries": int(p["times_delivered"])}
                       for p in await client.xpending_range(keys.work(number), keys.WORK_GROUP,
                                                            min="-", max="+", count=10_000)}
            entries: Any = await client.xrange(keys.work(number), min=f"{int(since * 1000)}-0")
        finally:
            await client.aclose()
        work = []
        for entry_id, fields in entries:
            task = json.loads(fields[b"b"]).get("task") or {} if b"b" in fields else {}
            if task.get("device") == device:
                work.append({"entry": _text(entry_id), "job": task.get("job_id"),
                             "kind": task.get("kind"), "lines": task.get("lines"),
                             "pending": pending.get(_text(entry_id))})
        owner = await self.owner(number)
        return {"partition": number, "owner": owner, "work": work}

    async def owner(self, number: int) -> str | None:
        client = aioredis.Redis(port=self.redis_port, socket_timeout=5)
        try:
            held = await client.get(keys.lease(keys.work_lease(number)))
        finally:
            await client.aclose()
        return _text(held) if held is not None else None

    async def stop(self) -> None:
        """Every process we started: agents, then controllers, then Redis."""
        for child in [*self.agents.values(), *(c for c, _ in self.controllers), self.redis]:
            with contextlib.suppress(Exception):
                await child.stop()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _recorder_stats(url: str) -> dict[str, float]:
    """The recorder's counters from a controller's /metrics."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(url + "/metrics")).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("netfleet_observations_", "netfleet_recorder_",
                            "netfleet_samples_dropped")):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


async def _pings(client: aioredis.Redis) -> bool:
    try:
        return bool(await client.ping())
    except (aioredis.RedisError, OSError, RuntimeError):  # uvloop: a closed transport
        return False


async def _until(check: Callable[[], Awaitable[bool]], limit: float, what: str) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > limit:
            raise TimeoutError(f"not within {limit:g}s: {what}")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


@contextlib.asynccontextmanager
async def _database(admin_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database, dropped at the end whatever happened."""
    name = f"netfleet_chaos_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
            await migrate(url)
            yield url
        finally:
            async with admin.connect() as connection:
                await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


async def _prepare(database_url: str, secret: str, fleet: Path) -> str:
    """The simulator's inventory imported, and an admin API key; returns its token."""
    store = Store.from_settings(load_settings(database_url=database_url, secret_key=secret))
    try:
        await import_file(store, fleet)
        async with store.transaction() as tx:
            made = await tx.api_keys.create("chaos", "admin")
        return str(made.token)
    finally:
        await store.close()


async def _poll_everything(clients: list[httpx.AsyncClient]) -> None:
    """Every device polled every second: a copy of its platform's default profile.

    Created through one controller and assigned again through the other: a controller
    records only the samples of devices it knows to be assigned, and learns of an assignment
    made elsewhere at its next refresh (up to 30 s); until then it drops them."""
    for platform in PLATFORMS:
        builtin = (await clients[0].get(f"/telemetry/profiles/{platform}-default")).json()
        where = [f"platform={platform}"]
        created = await clients[1].post("/telemetry/profiles", json={
            "profile": {**builtin["profile"], "name": f"chaos-{platform}", "interval": 1.0},
            "where": where})
        created.raise_for_status()
        again = await clients[0].patch(f"/telemetry/profiles/chaos-{platform}",
                                       json={"where": where})
        again.raise_for_status()


async def _sampled(client: httpx.AsyncClient, devices: list[str]) -> bool:
    for device in devices:
        response = await client.get("/telemetry", params={"device": device,
                                                          "metric": "cpu_percent", "limit": 1})
        if response.status_code != 200 or not response.json()["points"]:
            return False
    return True


# -- the tap: what went through Redis, read from the side --------------------------------
class Tap:
    """Reads every work and observation stream from the side (XREAD, no consumer group:
    it takes nothing from anyone) and keeps, per device, the tasks queued and the results
    the agents sent, with their fencing tokens. Work done and observations recorded are
    trimmed from the streams, so this is the only record of what an agent sent for a job
    that never ended."""

    def __init__(self, port: int, begin: float) -> None:
        self.port, self.begin = port, begin
        self.last = {s: "0-0" for p in range(PARTITIONS)
                     for s in (keys.work(p), keys.observations(p))}
        self.tokens: dict[str, int] = {}  # observation stream -> highest token in it so far
        self.lines: dict[str, list[str]] = {}  # device -> what happened, in stream order
        # Every run an agent reported ended, fenced or not (it ran on the device either way):
        # (child job, attempt) -> (status, started, finished).
        self.runs: dict[tuple[str, int], tuple[str, float | None, float | None]] = {}
        self.stopped = False

    async def run(self) -> None:
        # Ends on `stopped` too: redis-py can turn a cancellation into a connection error,
        # which this loop survives by design.
        while not self.stopped:
            client = aioredis.Redis(port=self.port, socket_timeout=5)
            try:
                await self._read(client)
            except (aioredis.RedisError, OSError, RuntimeError):
                # Redis is down (killed), or its connection with it (uvloop raises
                # RuntimeError on a closed transport): read on with a new client.
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _read(self, client: aioredis.Redis) -> None:
        while not self.stopped:
            streams: Any = dict(self.last)
            found: Any = await client.xread(streams, count=1000, block=500)
            for stream, entries in found or []:
                for entry_id, fields in entries:
                    self.last[_text(stream)] = _text(entry_id)
                    self._note(_text(stream), _text(entry_id), fields)

    def _note(self, stream: str, entry: str, fields: Any) -> None:
        if b"b" not in fields:
            return
        body = json.loads(fields[b"b"])
        at = f"{int(entry.split('-')[0]) / 1000 - self.begin:8.3f}s"
        task = body.get("task")
        if stream.endswith(":work") and task:
            seq = (task.get("lines") or [" -"])[-1].rsplit("-", 1)[-1]
            self.lines.setdefault(task["device"], []).append(
                f"{at} queued {task.get('kind')} {task['job_id'][:8]}"
                + (f" seq={seq}" if task.get("kind") == "config" else "") + f" entry={entry}")
            return
        token = body.get("token")
        if not isinstance(token, int):
            return
        highest = self.tokens.get(stream, 0)
        self.tokens[stream] = max(highest, token)
        for item in body.get("items", []):
            result = item.get("r") if item.get("t") == "result" else None
            if result:
                if result.get("status") in FINAL and result.get("started_at"):
                    self.runs[(result["job_id"], int(result.get("attempt") or 1))] = (
                        result["status"], _at(result.get("started_at")),
                        _at(result.get("finished_at")))
                fenced = " FENCED" if token < highest else ""
                self.lines.setdefault(result["device"], []).append(
                    f"{at} {body.get('agent')} token={token}{fenced}: {result['job_id'][:8]} "
                    f"{result.get('status')} attempt={result.get('attempt', 0)}"
                    + (f" {result['category']}" if result.get("category") else ""))


# -- load ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Accepted:
    id: str
    kind: str
    device: str
    seq: int | None  # config jobs: the device's n-th config job submitted
    via: int  # controller index


@dataclass
class Load:
    """Submits jobs through the controllers in turn, at `rate` per second. A device's config
    jobs go one at a time (the next only once the last was answered), so their acceptance
    order is their sequence number."""

    clients: list[httpx.AsyncClient]
    devices: list[str]
    rng: random.Random
    rate: float
    accepted: list[Accepted] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)  # by HTTP status
    no_answer: Counter[str] = field(default_factory=Counter)  # by exception: outcome unknown
    _seq: Counter[str] = field(default_factory=Counter)
    _busy: set[str] = field(default_factory=set)
    _turn: int = 0

    async def run(self, seconds: float) -> None:
        gate = asyncio.Semaphore(IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < seconds:
            if sent > elapsed * self.rate:
                await asyncio.sleep(1 / self.rate)
                continue
            await gate.acquire()
            task = asyncio.create_task(self._submit(*self._next()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda _: gate.release())
            sent += 1
        await asyncio.gather(*tasks)

    def _next(self) -> tuple[int, str, dict[str, Any], int | None]:
        device = self.rng.choice(self.devices)
        via, self._turn = self._turn, (self._turn + 1) % len(self.clients)
        if self.rng.random() < CONFIG_SHARE and device not in self._busy:
            self._busy.add(device)
            self._seq[device] += 1
            seq = self._seq[device]
            return via, device, {"kind": "config", "device": device, "lines": [
                "interface Loopback1", f" description chaos-{device}-{seq}"]}, seq
        return via, device, {"kind": "command", "device": device,
                             "commands": ["show version"]}, None

    async def _submit(self, via: int, device: str, body: dict[str, Any],
                      seq: int | None) -> None:
        try:
            response = await self.clients[via].post("/jobs", json=body)
        except httpx.HTTPError as exc:
            self.no_answer[type(exc).__name__] += 1
        else:
            if response.status_code == 202:
                self.accepted.append(Accepted(str(response.json()["id"]), body["kind"], device,
                                              seq, via))
            else:
                self.rejected[str(response.status_code)] += 1
        finally:
            if seq is not None:  # the device's next config job may go now
                self._busy.discard(device)


# -- chaos -----------------------------------------------------------------------------------
async def _havoc(cluster: Cluster, kills: int, seconds: float, rng: random.Random,
                 started: float) -> list[dict[str, Any]]:
    """`kills` agent kills and `kills` Redis kills, in a seeded order at seeded moments,
    each in its own slot of the run, each followed by a restart a little later."""
    events = ["agent"] * kills + ["redis"] * kills
    rng.shuffle(events)
    slot = seconds * 0.8 / max(1, len(events))
    done: list[dict[str, Any]] = []
    for index, kind in enumerate(events):
        at = seconds * 0.1 + index * slot + rng.uniform(0, slot * 0.4)
        await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
        if kind == "agent":
            name = rng.choice(sorted(cluster.agents))
            victim, down = cluster.agents[name], rng.uniform(1.0, 4.0)
        else:
            name, victim, down = "redis", cluster.redis, rng.uniform(0.5, 3.0)
        pid = victim.pid
        killed = time.monotonic() - started
        await victim.kill()
        await asyncio.sleep(down)
        if kind == "agent":
            victim.start()
        else:
            await cluster.start_redis()
        done.append({"killed": name, "pid": pid, "at_s": round(killed, 2),
                     "down_s": round(time.monotonic() - started - killed, 2),
                     "new_pid": victim.pid})
    return done


# -- after: settle, read back, check -------------------------------------------------------
async def _statuses(client: httpx.AsyncClient) -> dict[str, str]:
    """Every job in the store (id -> status), through the listing."""
    found: dict[str, str] = {}
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if after is not None:
            params["after"] = after
        response = await client.get("/jobs", params=params)
        response.raise_for_status()
        page = response.json()
        found.update({j["id"]: j["status"] for j in page["jobs"]})
        after = page.get("next")
        if not after:
            return found


async def _settle(client: httpx.AsyncClient, accepted: Iterable[str], limit: float
                  ) -> tuple[float, dict[str, str]]:
    """Wait (at most `limit` seconds) until every accepted job is final; returns the seconds
    it took and every stored job's status at the end. (Failover takes at most the lease TTL
    plus 5 s and a job here runs in well under a second: the bound is generous.)"""
    started = time.monotonic()
    waiting = set(accepted)
    statuses: dict[str, str] = {}
    while True:
        with contextlib.suppress(httpx.HTTPError):
            statuses = await _statuses(client)
            waiting = {j for j in waiting if statuses.get(j) not in FINAL}
        if not waiting or time.monotonic() - started > limit:
            return time.monotonic() - started, statuses
        await asyncio.sleep(1.0)


async def _details(database_url: str, secret: str,
                   ids: list[str]) -> dict[str, dict[str, Any]]:
    """Every accepted job with its device results, read from the store in one transaction
    (hundreds of GETs to controllers still busy with a churning cluster can take minutes).
    A result's `child` is the per-device job id the agents and the trace name."""
    store = Store.from_settings(load_settings(database_url=database_url, secret_key=secret))
    found: dict[str, dict[str, Any]] = {}
    try:
        async with store.transaction(readonly=True) as tx:
            for job_id in ids:
                detail = await tx.jobs.get(job_id)
                found[job_id] = {"status": str(detail.job.status), "results": [{
                    "child": r.job_id, "status": str(r.status), "category": r.category,
                    "message": r.message, "attempt": r.attempt,
                    "queued_at": _iso(r.queued_at), "started_at": _iso(r.started_at),
                    "finished_at": _iso(r.finished_at)} for r in detail.results]}
    finally:
        await store.close()
    return found


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _at(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def _check_final(accepted: list[Accepted], details: dict[str, dict[str, Any]],
                 statuses: dict[str, str]) -> dict[str, Any]:
    by_status: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    categories: Counter[str] = Counter()
    attempts: Counter[int] = Counter()
    unfinished = []
    for job in accepted:
        body = details.get(job.id, {})
        status = str(body.get("status", statuses.get(job.id, "missing")))
        by_status[status] += 1
        by_kind.setdefault(job.kind, Counter())[status] += 1
        for result in body.get("results", []):
            attempts[int(result.get("attempt") or 1)] += 1
            if result["status"] != "succeeded":
                categories[f"{result['status']}/{result.get('category')}"] += 1
        if status not in FINAL:
            unfinished.append({
                "id": job.id, "kind": job.kind, "device": job.device, "seq": job.seq,
                "partition": partition_of(job.device, PARTITIONS), "status": status,
                "via": job.via, "results": [
                    {k: r.get(k) for k in ("child", "status", "category", "message",
                                           "attempt", "queued_at", "started_at",
                                           "finished_at")}
                    for r in body.get("results", [])]})
    return {"passed": not unfinished, "accepted": len(accepted),
            "by_status": dict(by_status), "by_kind": {k: dict(v) for k, v in by_kind.items()},
            "device_results_not_succeeded": dict(categories),
            "device_results_by_attempt": {str(k): v for k, v in sorted(attempts.items())},
            "unfinished": len(unfinished), "unfinished_examples": unfinished[:5]}


@dataclass(frozen=True, order=True, slots=True)
class _Ran:
    started: float
    finished: float
    seq: int
    attempt: int
    job: Accepted


def _check_order(accepted: list[Accepted], details: dict[str, dict[str, Any]],
                 runs: dict[tuple[str, int], tuple[str, float | None, float | None]],
                 begin: float) -> dict[str, Any]:
    """Every succeeded run of a config job, as recorded and as agents reported it (the tap:
    re-runs too, and runs whose reports were fenced): per device, no two at once, and each
    change's last run after the last run of every earlier change."""
    child_of = {r["child"]: job for job in accepted if job.seq is not None
                for r in details.get(job.id, {}).get("results", [])}
    seen: dict[tuple[str, int], tuple[str, float | None, float | None]] = dict(runs)
    for child, job in child_of.items():
        for r in details.get(job.id, {}).get("results", []):
            if r["child"] == child:
                seen.setdefault((child, int(r.get("attempt") or 1)), (
                    r["status"], _at(r.get("started_at")), _at(r.get("finished_at"))))
    ran: dict[str, list[_Ran]] = {}
    for (child, attempt), (status, started, finished) in seen.items():
        owner = child_of.get(child)
        if owner is None or owner.seq is None or status != "succeeded" \
                or started is None or finished is None:
            continue
        ran.setdefault(owner.device, []).append(
            _Ran(started, finished, owner.seq, attempt, owner))

    def shown(r: _Ran) -> dict[str, Any]:
        return {"seq": r.seq, "id": r.job.id, "via": r.job.via, "attempt": r.attempt,
                "started_s": round(r.started - begin, 3),
                "finished_s": round(r.finished - begin, 3)}

    violations = []
    reruns = 0
    for device, device_runs in sorted(ran.items()):
        device_runs.sort()
        # Every earlier-started run, not only the one before: a long run can overlap a later
        # change across a short re-run of its own change that sorts between them.
        for index, after in enumerate(device_runs):
            clash = next((before for before in device_runs[:index]
                          if after.started < before.finished and after.seq != before.seq),
                         None)
            if clash is not None:
                violations.append({"device": device, "why": "two changes at once",
                                   "jobs": [shown(clash), shown(after)]})
        last: dict[int, _Ran] = {}
        for r in device_runs:
            last[r.seq] = r
            reruns += r.attempt > 1
        ordered = [last[seq] for seq in sorted(last)]
        for before, after in itertools.pairwise(ordered):
            if after.started < before.finished:
                violations.append({"device": device,
                                   "why": "an earlier change last ran after a later one",
                                   "jobs": [shown(before), shown(after)]})
    return {"passed": not violations, "devices": len(ran),
            "succeeded_runs": sum(len(r) for r in ran.values()), "reruns": reruns,
            "violations": len(violations), "violation_examples": violations[:5]}


async def _check_configs(client: httpx.AsyncClient, accepted: list[Accepted],
                         details: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each device's running configuration, read over SSH through the API: the description
    its config jobs set must be the last succeeded one's (or a later one's that failed part
    way)."""
    highest: dict[str, int] = {}
    succeeded: dict[str, int] = {}
    for job in accepted:
        if job.seq is None:
            continue
        highest[job.device] = max(highest.get(job.device, 0), job.seq)
        if details.get(job.id, {}).get("status") == "succeeded":
            succeeded[job.device] = max(succeeded.get(job.device, 0), job.seq)
    if not succeeded:
        return {"passed": True, "devices": 0}
    body: dict[str, Any] = {}
    try:
        response = await client.post("/jobs", json={
            "kind": "command", "device": "*", "commands": ["show running-config"]})
        response.raise_for_status()
        job_id = response.json()["id"]
        for _ in range(12):  # (each wait well inside the client's timeout)
            body = (await client.get(f"/jobs/{job_id}", params={"wait": 10})).json()
            if body["status"] in FINAL:
                break
    except httpx.HTTPError as exc:
        return {"passed": False, "devices": len(succeeded),
                "error": f"reading the configs: {type(exc).__name__}: {exc}"}
    wrong, unread = [], []
    outputs = {r["device"]: r for r in body.get("results", [])}
    for device, want in sorted(succeeded.items()):
        result = outputs.get(device)
        if result is None or result["status"] != "succeeded":
            unread.append(device)
            continue
        text = "".join(o["output"] for o in result.get("outputs", []))
        found = [int(n) for n in re.findall(rf"description chaos-{re.escape(device)}-(\d+)",
                                            text)]
        if not found or not want <= found[-1] <= highest[device]:
            wrong.append({"device": device, "last_succeeded_seq": want,
                          "highest_seq": highest[device], "found": found})
    return {"passed": not wrong and not unread, "devices": len(succeeded),
            "wrong": len(wrong), "wrong_examples": wrong[:5], "unread": unread[:5]}


async def _check_samples(client: httpx.AsyncClient, devices: list[str], start: float,
                         end: float) -> dict[str, Any]:
    per_device: dict[str, Any] = {}
    duplicates = 0
    for device in devices:
        response = await client.get("/telemetry", params={
            "device": device, "metric": "cpu_percent", "limit": 10_000,
            "start": datetime.fromtimestamp(start, UTC).isoformat(),
            "end": datetime.fromtimestamp(end, UTC).isoformat()})
        response.raise_for_status()
        series: dict[str, list[float]] = {}
        for point in response.json()["points"]:
            label = json.dumps(point.get("labels") or {}, sort_keys=True)
            stamp = _at(point["time"])
            assert stamp is not None
            series.setdefault(label, []).append(stamp)
        times = sorted(t for ts in series.values() for t in ts)
        doubled = sum(len(ts) - len(set(ts)) for ts in series.values())
        pairs = [(a, b) for ts in series.values() for a, b in itertools.pairwise(sorted(ts))]
        gaps = [b - a for a, b in pairs]
        close = [[round(a - start, 2), round(b - start, 2)] for a, b in pairs if b - a < CLOSE]
        duplicates += doubled
        per_device[device] = {
            "samples": len(times), "duplicates": doubled,
            "samples_per_second": round(len(times) / max(1e-9, end - start), 2),
            # Two samples of one series closer than this: two pollers (or a rescheduled poll).
            "closer_than_half_interval": len(close), "close_pairs_at_s": close[:5],
            "longest_gap_s": round(max(gaps), 2) if gaps else None}
    silent = sorted(d for d, found in per_device.items() if not found["samples"])
    # A device with no sample at all would pass vacuously: that fails the check too.
    return {"passed": duplicates == 0 and not silent, "metric": "cpu_percent",
            "window_s": round(end - start, 1), "duplicates": duplicates,
            "devices_without_samples": silent, "devices": per_device}


# -- the run ---------------------------------------------------------------------------------
async def chaos(*, devices: int, seconds: float, kills: int, seed: int,
                postgres_admin_url: str, logs: Path | None = None) -> dict[str, Any]:
    """Run the cluster under load and chaos for `seconds`, settle, check; the JSON report.
    The processes' logs go to `logs` (kept) if given, else to a temporary directory."""
    rate = job_rate(devices)
    report: dict[str, Any] = {"benchmark": "chaos", "settings": {
        "devices": devices, "seconds": seconds, "kills": kills, "seed": seed,
        "platforms": list(PLATFORMS), "agents": list(AGENTS), "controllers": 2,
        "partitions": PARTITIONS, "lease_ttl_s": LEASE_TTL, "poll_interval_s": 1.0,
        "jobs_per_second": rate, "config_share": CONFIG_SHARE}}
    with tempfile.TemporaryDirectory(prefix="netfleet-chaos-") as tmp:
        work = Path(tmp)
        if logs is not None:
            await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
        fleet = work / "fleet.yaml"
        sim_args = ["--devices", str(devices), "--port", str(_free_port()),
                    "--base-ip", "127.9.0.1", "--degraded", "0", "--seed", str(seed),
                    "--command-jitter", "0.1s", "--out", str(fleet),
                    *(a for p in PLATFORMS for a in ("--platform", p))]
        async with simulator(sim_args, wait_devices=devices) as sim, \
                _database(postgres_admin_url) as database_url:
            secret = Fernet.generate_key().decode()
            token = await _prepare(database_url, secret, fleet)
            names = [d["name"] for d in yaml.safe_load(fleet.read_text())["devices"]]
            cluster = Cluster(work, logs or work, database_url, secret)
            cluster.sim_pid = sim.pid
            try:
                t0 = time.monotonic()
                await cluster.start()
                report["startup_s"] = round(time.monotonic() - t0, 1)
                await _run(cluster, token, names, seconds, kills, seed, rate, report)
            except Exception as exc:  # the report says what broke, with the logs
                report["passed"] = False
                report["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                await cluster.stop()
                report["tracebacks_in_logs"] = {c.name: c.count("Traceback")
                                                for c in cluster.children}
                report["leases_lost"] = {name: agent.count("partition lease lost")
                                         for name, agent in cluster.agents.items()}
                if not report.get("passed"):
                    report["logs"] = {c.name: c.tail() for c in cluster.children}
    return report


async def _run(cluster: Cluster, token: str, names: list[str], seconds: float, kills: int,
               seed: int, rate: float, report: dict[str, Any]) -> None:
    headers = {"X-API-Key": token}
    clients = [httpx.AsyncClient(base_url=url + "/api/v1", headers=headers,
                                 timeout=SUBMIT_TIMEOUT) for _, url in cluster.controllers]
    try:
        await _poll_everything(clients)
        sampled = sorted(random.Random(seed + 2).sample(names, min(SAMPLED_DEVICES,
                                                                   len(names))))
        report["warmup_s"] = round(await _until(lambda: _sampled(clients[0], sampled), 60,
                                                "a stored sample of every sampled device"), 1)
        load = Load(clients, names, random.Random(seed), rate)
        begin, started = time.time(), time.monotonic()
        cpu = {c.name: (c.pid, c.cpu()) for c in cluster.children}
        sim_cpu = cpu_seconds(cluster.sim_pid) if cluster.sim_pid else 0.0
        tap = Tap(cluster.redis_port, begin)
        tapping = asyncio.create_task(tap.run())
        try:
            _, kill_log = await asyncio.gather(
                load.run(seconds),
                _havoc(cluster, kills, seconds, random.Random(seed + 1), started))
            end = time.time()
            # CPU seconds per second of load (a process started again counts from its restart).
            report["cpu_share_during_load"] = {
                c.name: round((c.cpu() - (cpu[c.name][1] if cpu[c.name][0] == c.pid else 0))
                              / (end - begin), 2) for c in cluster.children}
            if cluster.sim_pid:
                report["cpu_share_during_load"]["simulator"] = round(
                    (cpu_seconds(cluster.sim_pid) - sim_cpu) / (end - begin), 2)
            report["load_average"] = [round(x, 2) for x in os.getloadavg()]
            report.update(load_started_at=datetime.fromtimestamp(begin, UTC).isoformat(),
                          load_s=round(end - begin, 1), kill_log=kill_log, submitted={
                              "accepted": len(load.accepted),
                              "rejected_by_status": dict(load.rejected),
                              "no_answer": dict(load.no_answer)})
            await _after(cluster, clients[0], load.accepted, sampled, begin, end, report,
                         tap.runs)
        finally:
            tap.stopped = True
            tapping.cancel()
            await asyncio.wait([tapping], timeout=10)
        if "held_up" in report:
            traces = report.get("traces", {})
            report["traces"] = {d: {**traces.get(d, {}), "timeline": tap.lines.get(d, [])}
                                for d in report["held_up"]}
    finally:
        for client in clients:
            await client.aclose()


async def _after(cluster: Cluster, client: httpx.AsyncClient, accepted: list[Accepted],
                 sampled: list[str], begin: float, end: float, report: dict[str, Any],
                 runs: dict[tuple[str, int], tuple[str, float | None, float | None]]) -> None:
    """Settle, read everything back, check; with what Redis and the recorders say."""
    ids = [a.id for a in accepted]
    devices = int(report["settings"]["devices"])
    settle_s, statuses = await _settle(client, ids, SETTLE_BASE + SETTLE_PER_DEVICE * devices)
    report["settle_s"] = round(settle_s, 1)
    details = await _details(cluster.database_url, cluster.secret, ids)
    checks = {
        "every_accepted_job_final": _check_final(accepted, details, statuses),
        "config_jobs_in_submission_order": _check_order(accepted, details, runs, begin),
        "devices_hold_the_last_change": await _check_configs(client, accepted, details),
        "no_sample_stored_twice": await _check_samples(client, sampled, begin, end),
    }
    report["checks"] = checks
    report["passed"] = all(c["passed"] for c in checks.values())
    # Jobs the store holds that were never accepted (answered 503, or not at all).
    known = set(ids)
    report["stored_but_not_accepted"] = dict(Counter(
        status for job, status in statuses.items() if job not in known))
    with contextlib.suppress(aioredis.RedisError, OSError, RuntimeError):
        report["work_pending_in_redis"] = await cluster.pending_work()
        held_up = sorted({j["device"] for j in checks["every_accepted_job_final"][
            "unfinished_examples"]} | {v["device"] for v in checks[
                "config_jobs_in_submission_order"]["violation_examples"]} | {
                w["device"] for w in checks["devices_hold_the_last_change"].get(
                    "wrong_examples", [])})
        if held_up:
            report["held_up"] = held_up
            report["traces"] = {d: await cluster.trace(d, begin - 5) for d in held_up}
    with contextlib.suppress(httpx.HTTPError):
        report["recorders"] = {f"controller-{i}": await _recorder_stats(url)
                               for i, (_, url) in enumerate(cluster.controllers)}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m netfleet.bench.chaos",
        description="Kill agents and Redis under load; check nothing accepted is lost.")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=90.0, help="of load and chaos")
    parser.add_argument("--kills", type=int, default=4, help="of each: agent, Redis")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres-admin-url", default=POSTGRES_ADMIN_URL,
                        help="a role allowed to CREATE DATABASE, and a database to do it from")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this directory")
    parser.add_argument("--json", action="store_true",
                        help="print the report on one line (default: indented)")
    args = parser.parse_args()

    async def run() -> dict[str, Any]:
        # SIGTERM cancels the run like Ctrl-C does: every process started is still stopped
        # and the database dropped (the default action would leave them all behind).
        main_task = asyncio.current_task()
        assert main_task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
        return await chaos(devices=args.devices, seconds=args.seconds, kills=args.kills,
                           seed=args.seed, postgres_admin_url=args.postgres_admin_url,
                           logs=args.logs)

    try:
        report = runtime.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise SystemExit("interrupted: every process stopped, the database dropped") from None
    print(json.dumps(report, indent=None if args.json else 2))
    raise SystemExit(0 if report.get("passed") else 1)


if __name__ == "__main__":
    main()
