"""A real cluster: `netfleet serve` and `netfleet agent` processes on the machine's Redis and
PostgreSQL, with the simulator (in this process) as the fleet."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from cryptography.fernet import Fernet

from netfleet.backends import keys
from netfleet.backends.partitions import partition_of
from netfleet.settings import load_settings
from netfleet.store import Store, migrate
from tests.conftest import PG_ADMIN, RunningSim, _admin, free_port

T = TypeVar("T")

REDIS_URL = os.environ.get("NETFLEET_TEST_REDIS", "redis://127.0.0.1:6379/14")
PARTITIONS = 8
LEASE_TTL = 2.0


def until(check: Callable[[], T], *, timeout: float = 30.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


class Proc:
    """One netfleet process, its output in a log file (shown when a test fails)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.popen: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen([sys.executable, "-m", "netfleet", *self.args],
                                          env=self.env, stdout=out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL: no goodbye, no drain, leases left to expire."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


class Cluster:
    def __init__(self, root: Path, database_url: str, redis_url: str = REDIS_URL,
                 simulator_url: str | None = None) -> None:
        self.root = root
        self.redis = redis.Redis.from_url(redis_url)
        self.redis.flushdb()
        self.env = {**os.environ, "NETFLEET_DATABASE_URL": database_url,
                    "NETFLEET_REDIS_URL": redis_url,
                    "NETFLEET_SECRET_KEY": Fernet.generate_key().decode(),
                    "NETFLEET_LEASE_TTL": str(LEASE_TTL),
                    "NETFLEET_PARTITIONS": str(PARTITIONS),
                    "NETFLEET_SECRET_KEY_FILE": str(root / "unused.key"),
                    **({"NETFLEET_SIMULATOR_URL": simulator_url} if simulator_url else {})}
        settings = load_settings(database_url=database_url,
                                 secret_key=self.env["NETFLEET_SECRET_KEY"])
        self.token = asyncio.run(_admin_key(settings))
        self.controllers: list[tuple[Proc, str]] = []
        self.agents: dict[str, Proc] = {}
        for _ in range(2):
            port = free_port()
            proc = Proc(["serve", "--port", str(port)], self.env,
                        root / f"controller-{port}.log")
            self.controllers.append((proc, f"http://127.0.0.1:{port}"))
        for name in ("agent-a", "agent-b"):
            self.start_agent(name)

    def stop_controllers(self) -> None:
        for proc, _ in self.controllers:
            proc.kill()

    def start_controllers(self) -> None:
        for proc, _ in self.controllers:
            proc.start()

    def start_agent(self, name: str) -> Proc:
        proc = self.agents[name] = Proc(["agent", "--name", name, "--drain", "5"], self.env,
                                        self.root / f"{name}.log")
        return proc

    def client(self, index: int) -> httpx.Client:
        return httpx.Client(base_url=self.controllers[index][1] + "/api/v1",
                            headers={"X-API-Key": self.token}, timeout=60)

    def ready(self) -> bool:
        """Both controllers answer /ready healthy, and every agent owns partitions."""
        for _, url in self.controllers:
            try:
                if httpx.get(url + "/ready", timeout=5).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
        owners = {self.owner(p) for p in range(PARTITIONS)}
        return owners == set(self.agents)

    def owner(self, partition: int) -> str | None:
        """The agent holding a partition's lease now (read from Redis)."""
        held = self.redis.get(keys.lease(keys.work_lease(partition)))
        return str(held.decode()).rsplit(" ", 1)[0] if isinstance(held, bytes) else None

    def owner_of(self, device: str) -> str | None:
        return self.owner(partition_of(device, PARTITIONS))

    def close(self) -> None:
        for proc in self.agents.values():
            proc.stop()
        for proc, _ in self.controllers:
            proc.stop()
        with contextlib.suppress(redis.RedisError):
            self.redis.flushdb()
        self.redis.close()

    def logs(self) -> str:
        procs = [p for p, _ in self.controllers] + list(self.agents.values())
        return "\n".join(f"--- {p.log.name}\n{p.output()}" for p in procs)


class RedisServer:
    """A Redis of the test's own (so it can be killed), persisting every write (AOF with
    appendfsync always): killed with SIGKILL and started again, it has lost nothing."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.popen: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with (self.root / "redis.log").open("ab") as out:
            self.popen = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                 "--dir", str(self.root)], stdout=out, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port)
        try:
            until(lambda: _pings(client), timeout=20, what="redis-server answering")
        finally:
            client.close()

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def wipe(self) -> None:
        """Forget everything (as a Redis without persistence would on restart)."""
        shutil.rmtree(self.root / "appendonlydir", ignore_errors=True)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.kill()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class Proxy:
    """A TCP proxy to PostgreSQL on its own thread: `cut()` drops every connection and
    refuses new ones (the database is down, as far as netfleet can tell), `mend()` lets
    connections through again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.up = True
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._links: set[asyncio.StreamWriter] = set()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._link, "127.0.0.1", self.port), self.loop).result(10)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._links -= {writer, up_writer}

    def cut(self) -> None:
        async def cut() -> None:
            self.up = False
            for writer in list(self._links):
                writer.transport.abort()
        asyncio.run_coroutine_threadsafe(cut(), self.loop).result(10)

    def mend(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()



async def _admin_key(settings: Any) -> str:
    store = Store.from_settings(settings)
    try:
        async with store.transaction() as tx:
            made = await tx.api_keys.create("cluster test", "admin")
        return str(made.token)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def cluster_database() -> Iterator[str]:
    name = f"netfleet_test_cluster_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    try:
        asyncio.run(migrate(url))
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_database: str,
            sim: RunningSim) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("cluster"), cluster_database,
                      simulator_url=sim.control())
    try:
        until(running.ready, timeout=60, what="two controllers ready, two agents owning "
                                              "every partition")
    except AssertionError:
        print(running.logs())
        running.close()
        raise
    yield running
    running.close()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "cluster" in request.fixturenames:
        print(request.getfixturevalue("cluster").logs())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
