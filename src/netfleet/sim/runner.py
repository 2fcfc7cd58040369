"""Running a simulator process: build the fleet, listen, serve the control API until signalled."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import uvicorn

from netfleet.sim.control import create_app
from netfleet.sim.fleet import FleetFactory, write_inventory
from netfleet.sim.server import SimServer
from netfleet.sim.state import DEFAULT_FAULTS, Faults

log = structlog.get_logger("netfleet.sim")

FD_HEADROOM = 512  # control API, logs, and a few hundred sessions beyond one per device


@dataclass(slots=True)
class SimOptions:
    devices: int = 50
    port: int = 2222
    base_ip: str = "127.1.0.1"
    seed: int = 1
    degraded: float = 0.05
    platforms: Sequence[str] | None = None
    faults: Faults = field(default_factory=lambda: Faults(**DEFAULT_FAULTS.as_dict()))
    control_host: str = "127.0.0.1"
    control_port: int = 9022
    out: Path | None = None
    host_key: Path | None = None
    password: str | None = None
    enable_secret: str | None = None


@dataclass(frozen=True, slots=True)
class Started:
    sim: SimServer
    seconds: float
    control_url: str | None
    secrets_file: Path | None


def raise_fd_limit(devices: int) -> int:
    """Lift the soft open-file limit to the hard one; fail early if the fleet cannot fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if devices + FD_HEADROOM > soft:
        raise ValueError(
            f"--devices {devices} needs about {devices + FD_HEADROOM} open files (one listening "
            f"socket per device plus sessions) but the limit is {soft}; raise it with "
            f"`ulimit -n` or run fewer devices")
    return soft


async def serve(options: SimOptions, on_ready: Callable[[Started], None] | None = None) -> None:
    raise_fd_limit(options.devices)
    factory = FleetFactory(seed=options.seed, base_ip=options.base_ip,
                           degraded=options.degraded, platforms=options.platforms,
                           password=options.password, enable_secret=options.enable_secret)
    sim = SimServer(factory, port=options.port, faults=options.faults,
                    host_key=options.host_key)
    await sim.start()
    started = time.perf_counter()
    await sim.add(options.devices)
    seconds = time.perf_counter() - started
    secrets = None
    if options.out is not None:
        secrets = write_inventory(options.out, list(sim.devices.values()), options.port)
    control_url = (f"http://{options.control_host}:{options.control_port}"
                   if options.control_port else None)
    log.info("simulator up", devices=len(sim.devices), seconds=round(seconds, 2),
             port=options.port, control=control_url)
    try:
        if control_url is None:
            if on_ready is not None:
                on_ready(Started(sim, seconds, None, secrets))
            await _wait_for_signal()
            return
        config = uvicorn.Config(create_app(sim), host=options.control_host,
                                port=options.control_port, log_config=None, lifespan="off",
                                access_log=False, log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        # uvicorn offers only a `started` flag to learn that it is listening.
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if task.done():
            with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
                await task
            raise OSError(f"the control API could not listen on {control_url}; is another "
                          "simulator running? choose another --control-port")
        if on_ready is not None:
            on_ready(Started(sim, seconds, control_url, secrets))
        await task
    finally:
        await sim.stop()
        log.info("simulator stopped")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
