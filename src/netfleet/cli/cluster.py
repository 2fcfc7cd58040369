"""`netfleet serve` (a controller) and `netfleet agent` (owns devices): the cluster's roles.

Both read NETFLEET_* settings. With NETFLEET_REDIS_URL set, `serve` is a stateless controller
(API, recorder, deployment planners when it leads) and agents do the device work; without it,
`serve` runs the work itself, as `netfleet up` does, minus the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Annotated

import structlog
import typer
import uvicorn
from rich.console import Console

from netfleet import runtime
from netfleet.bootstrap import build_agent, build_app, build_services
from netfleet.domain.errors import NetfleetError
from netfleet.settings import Settings, load_settings

console = Console(stderr=True)
log = structlog.get_logger("netfleet.cluster")


def serve(
    port: Annotated[int | None, typer.Option(min=1, max=65_535,
                                             help="API port (default NETFLEET_PORT, 8000).")]
    = None,
    host: Annotated[str | None, typer.Option(help="API address (default NETFLEET_HOST).")]
    = None,
) -> None:
    """Run a controller: the REST API, the recorder and (when it leads) the deployment
    planners. Start as many as you like against the same Redis and database."""
    try:
        overrides = {k: v for k, v in (("port", port), ("host", host)) if v is not None}
        settings = load_settings(**overrides)
        runtime.run(_serve(settings))
    except (NetfleetError, OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


async def _serve(settings: Settings) -> None:
    services = await build_services(settings)
    try:
        server = uvicorn.Server(uvicorn.Config(build_app(services), host=settings.host,
                                               port=settings.port, log_config=None,
                                               log_level="warning", lifespan="off"))
        if services.cluster is None:
            mode = ("single process, work straight to its engine (no NETFLEET_REDIS_URL; "
                    "NETFLEET_EMBEDDED=direct)")
        elif services.cluster.agent is not None:
            mode = ("single process on the memory backend (no NETFLEET_REDIS_URL: an agent "
                    "and a recorder in this process)")
        else:
            mode = "controller of the cluster at Redis"
        console.print(f"netfleet serve: {mode}; API on http://{settings.host}:{settings.port}")
        await server.serve()
    finally:
        await services.close()


def agent(
    procs: Annotated[str, typer.Option(
        help="Agent processes to run: a number, or `auto` for one per CPU core.")] = "1",
    name: Annotated[str | None, typer.Option(
        help="This agent's name in the cluster (default: host-pid-random). With --procs "
             "above 1, each process gets the name with -1, -2, … added.")] = None,
    drain: Annotated[float, typer.Option(
        min=0, help="On stop, seconds to let held work finish before leaving it to the "
                    "next owner.")] = 30.0,
) -> None:
    """Run an agent: owns partitions of devices (SSH sessions, jobs, polling), talks to Redis
    only. Needs NETFLEET_REDIS_URL and the controllers' NETFLEET_SECRET_KEY."""
    try:
        count = _procs(procs)
        settings = load_settings()
        if count > 1:
            raise typer.Exit(_supervise(count, name, drain))
        runtime.run(_agent(settings, name, drain))
    except NetfleetError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def _procs(value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 1024:
        console.print(f"[red]error:[/red] --procs {value!r}: use a number from 1 to 1024, "
                      f"or auto (one per CPU core)")
        raise typer.Exit(2)
    return count


async def _agent(settings: Settings, name: str | None, drain: float) -> None:
    running = build_agent(settings, name=name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await running.start()
    console.print(f"netfleet agent {running.name}: {running.partitions} partitions in the "
                  f"cluster; stop with Ctrl-C or SIGTERM")
    try:
        await stop.wait()
    finally:
        await running.stop(drain=drain)


def _supervise(count: int, name: str | None, drain: float) -> int:
    """Run `count` agent processes; restart one that dies (backoff), stop all on a signal."""
    def start(index: int) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "netfleet", "agent", "--procs", "1",
                "--drain", str(drain)]
        if name:
            args += ["--name", f"{name}-{index + 1}"]
        return subprocess.Popen(args)

    children = [start(i) for i in range(count)]
    started = [time.monotonic()] * count
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    console.print(f"netfleet agent: {count} processes")
    while not stopping:
        time.sleep(0.5)
        for i, child in enumerate(children):
            if child.poll() is not None and not stopping:
                quick = time.monotonic() - started[i] < 10
                console.print(f"agent process {child.pid} exited ({child.returncode}); "
                              f"restarting")
                if quick:
                    time.sleep(2)
                children[i], started[i] = start(i), time.monotonic()
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=drain + 30)
    return 0
