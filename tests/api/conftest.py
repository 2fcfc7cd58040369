"""A real netfleet API server (uvicorn on loopback) on SQLite and on PostgreSQL, with a real
simulator behind it. Tests talk HTTP to it, as any client would."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from sqlalchemy import delete
from sqlalchemy.exc import DBAPIError

from netfleet.bootstrap import Services, build_app, build_services
from netfleet.settings import load_settings
from netfleet.store.models import Base
from tests.conftest import RunningSim, free_port

T = TypeVar("T")


class ServerThread:
    def __init__(self, database_url: str, key_file: Path, **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = load_settings(database_url=database_url, secret_key_file=key_file, **settings)
        self.services: Services = self.call(build_services(config))
        app = build_app(self.services)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self._task = asyncio.run_coroutine_threadsafe(self.server.serve(), self.loop)
        self.call(self._started())

    async def _started(self) -> None:
        while not self.server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def key(self, role: str = "admin", name: str | None = None) -> str:
        _, token = self.call(self.services.keys.create(name or f"test-{role}", role))
        return token

    def client(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", headers={"X-API-Key": self.key(role)},
                            timeout=60)

    async def _reset(self) -> None:
        await self.services.deployments.reset()
        await self.services.jobs.engine.close()
        for attempt in range(1, 6):
            # The writers may be storing the last test's results and samples right now: on
            # PostgreSQL that can deadlock with the cascade of the deletes; try again.
            try:
                async with self.services.store.transaction() as tx:
                    for table in reversed(Base.metadata.sorted_tables):
                        await tx.session.execute(delete(table))
                break
            except DBAPIError:
                if attempt == 5:
                    raise
                await asyncio.sleep(0.2 * attempt)
        self.services.jobs.forget(list(self.services.jobs._targets))
        await self.services.telemetry.reset()

    def reset(self) -> None:
        self.call(self._reset())

    def close(self) -> None:
        self.server.should_exit = True
        self._task.result(30)
        self.call(self.services.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    url = str(request.getfixturevalue(f"{request.param}_url"))
    running = ServerThread(url, tmp_path_factory.mktemp("keys") / "secret.key")
    yield running
    running.close()


@pytest.fixture
def api(server: ServerThread) -> Iterator[ServerThread]:
    """The server with an empty database for this test. Emptied again after it: a server
    left polling would write into the database the store tests share."""
    server.reset()
    yield server
    server.reset()


def register(client: httpx.Client, sim: RunningSim, platform: str, count: int = 1,
             tags: list[str] | None = None) -> list[Any]:
    """Add simulator devices to the inventory through the API (one profile per device)."""
    devices = sim.add(count, platform)
    for d in devices:
        profile = {"name": f"{d.name}-creds", "username": d.username, "password": d.password}
        if d.enable_secret:
            profile["enable_secret"] = d.enable_secret
        assert client.post("/credentials", json=profile).status_code == 201
        body = {"name": d.name, "host": d.address, "port": sim.port, "platform": platform,
                "credentials": f"{d.name}-creds", "tags": tags or []}
        response = client.post("/devices", json=body)
        assert response.status_code == 201, response.text
    return devices
