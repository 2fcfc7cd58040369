"""Shared fixtures: a real simulator serving real SSH on loopback, in a background thread."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest
import uvicorn

from netfleet.sim.control import create_app
from netfleet.sim.fleet import FleetFactory
from netfleet.sim.server import SimServer
from netfleet.sim.state import Device, Faults
from netfleet.store import create_engine, migrate

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RunningSim:
    """A SimServer on its own event loop thread; tests call into it with `call`."""

    def __init__(self, base_ip: str, port: int, degraded: float = 0.0, seed: int = 7) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        factory = FleetFactory(seed=seed, base_ip=base_ip, degraded=degraded)
        self.server = SimServer(factory, port=port)
        self.port = port
        self.call(self.server.start())
        self._control: uvicorn.Server | None = None
        self._control_task: asyncio.Task[None] | None = None
        self.control_url = ""

    def control(self) -> str:
        """The simulator's control API (as `netfleet sim` serves it), started on first use."""
        if self._control is None:
            port = free_port()
            self._control = uvicorn.Server(uvicorn.Config(
                create_app(self.server), host="127.0.0.1", port=port, log_config=None,
                log_level="warning", lifespan="off"))

            async def serve() -> None:
                assert self._control is not None
                self._control_task = asyncio.create_task(self._control.serve())
                while not self._control.started:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)

            self.call(serve())
            self.control_url = f"http://127.0.0.1:{port}"
        return self.control_url

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def run(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the simulator's loop (device state is not thread-safe)."""
        async def wrapper() -> T:
            return fn()

        return self.call(wrapper())

    def add(self, count: int, platform: str) -> list[Device]:
        return self.call(self.server.add(count, [platform]))

    def set_faults(self, device: Device, **faults: Any) -> None:
        def apply() -> None:
            device.faults = Faults(**faults)

        self.run(apply)

    def close(self) -> None:
        if self._control is not None and self._control_task is not None:
            self._control.should_exit = True
            task = self._control_task

            async def stopped() -> None:
                await task

            self.call(stopped())
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


_subnet = iter(range(10, 250))


@pytest.fixture(scope="session")
def sim() -> Iterator[RunningSim]:
    """One simulator for the whole run; tests add the devices they need (fresh state each)."""
    running = RunningSim(base_ip=f"127.{next(_subnet)}.0.1", port=free_port())
    yield running
    running.close()


@pytest.fixture
def netmiko_params(sim: RunningSim) -> Callable[[Device], dict[str, Any]]:
    def params(device: Device) -> dict[str, Any]:
        out: dict[str, Any] = {
            "device_type": device.platform.name, "host": device.address, "port": sim.port,
            "username": device.username, "password": device.password,
            "conn_timeout": 10, "auth_timeout": 10, "banner_timeout": 10,
            "fast_cli": False,
        }
        if device.enable_secret:
            out["secret"] = device.enable_secret
        return out

    return params


# -- databases: SQLite files and the real PostgreSQL on this machine --------------------

# A role allowed to CREATE DATABASE, and a database to connect to while doing it.
PG_ADMIN = os.environ.get("NETFLEET_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")


async def _admin(sql: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction.
    engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(sql)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    name = f"netfleet_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    try:
        asyncio.run(migrate(url))
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'netfleet.db'}"
    asyncio.run(migrate(url))
    return url
