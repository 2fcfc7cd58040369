"""`netfleet up`: everything in one process — API, engine, SQLite — with a simulated fleet."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import structlog
import typer
import uvicorn
import yaml
from rich.console import Console

from netfleet import runtime
from netfleet.bootstrap import Services, build_app, build_services
from netfleet.client import config_paths
from netfleet.domain.errors import NetfleetError
from netfleet.services.inventory import import_file
from netfleet.settings import Settings, load_settings
from netfleet.sim.control import create_app as sim_control_app
from netfleet.sim.fleet import FleetFactory, write_inventory
from netfleet.sim.runner import raise_fd_limit
from netfleet.sim.server import SimServer

console = Console(stderr=True)
log = structlog.get_logger("netfleet.up")
DATA = Path(".netfleet")


def up(
    simulate: Annotated[int, typer.Option(min=0, max=20_000,
                                          help="Also run N simulated devices and import them.")]
    = 0,
    port: Annotated[int, typer.Option(min=1, max=65_535, help="API port.")] = 8000,
    host: Annotated[str, typer.Option(help="API address.")] = "127.0.0.1",
    sim_port: Annotated[int, typer.Option(min=1, max=65_535)] = 2222,
    sim_base_ip: Annotated[str, typer.Option()] = "127.1.0.1",
    sim_control_port: Annotated[int, typer.Option(
        min=1, max=65_535, help="The simulator's control API (deployments allocate devices "
                                "through it).")] = 9022,
) -> None:
    """Run netfleet in one process (the database comes from NETFLEET_DATABASE_URL)."""
    try:
        extra = ({"simulator_url": f"http://127.0.0.1:{sim_control_port}"} if simulate else {})
        settings = load_settings(host=host, port=port, **extra)
        runtime.run(_serve(settings, simulate, sim_port, sim_base_ip, sim_control_port))
    except (NetfleetError, OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


async def _serve(settings: Settings, simulate: int, sim_port: int, sim_base_ip: str,
                 sim_control_port: int) -> None:
    sim: SimServer | None = None
    control: uvicorn.Server | None = None
    control_task: asyncio.Task[None] | None = None
    services = await build_services(settings)
    try:
        if simulate:
            raise_fd_limit(simulate)
            sim = SimServer(FleetFactory(seed=1, base_ip=sim_base_ip, degraded=0.05),
                            port=sim_port)
            await sim.start()
            await sim.add(simulate)
            fleet = await asyncio.to_thread(_write_fleet, sim)
            report = await import_file(services.store, fleet)
            console.print(f"Simulated {simulate} devices on {sim_base_ip}…:{sim_port}; "
                          f"imported ({report.devices.created} new, "
                          f"{report.devices.updated} updated).")
            polled = await _poll_simulated(services, sim)
            console.print(f"Polling telemetry from {polled} devices (the built-in "
                          f"`<platform>-default` profiles).")
            # Deployments allocate new simulated devices through the control API.
            control = uvicorn.Server(uvicorn.Config(
                sim_control_app(sim), host="127.0.0.1", port=sim_control_port,
                log_config=None, log_level="warning", lifespan="off"))
            control_task = asyncio.create_task(control.serve())
            console.print(f"Simulator control API: {settings.simulator_url} (deployments "
                          f"with provider=simulator allocate devices there).")
        url = f"http://{settings.host}:{settings.port}"
        await _first_key(services, url)
        server = uvicorn.Server(uvicorn.Config(build_app(services), host=settings.host,
                                               port=settings.port, log_config=None,
                                               log_level="warning", lifespan="off"))
        console.print(f"API: {url}/docs    Try: [bold]netfleet run \"show version\" "
                      f"--where platform=cisco_ios[/bold]    Stop with Ctrl-C.")
        await server.serve()
    finally:
        await services.close()
        if control is not None and control_task is not None:
            control.should_exit = True
            await asyncio.gather(control_task, return_exceptions=True)
        if sim is not None:
            await sim.stop()


async def _poll_simulated(services: Services, sim: SimServer) -> int:
    """Switch on each platform's built-in profile for the simulated devices of that platform
    (a profile only ever polls devices of its own platform)."""
    platforms = sorted({d.platform.name for d in sim.devices.values()})
    for platform in platforms:
        profile = await services.telemetry.profile(f"{platform}-default")
        if not profile.where:  # an operator's own assignment is left as it is
            await services.telemetry.assign(profile.profile.name,
                                            where=[f"platform={platform}"])
    return await services.telemetry.apply()


def _write_fleet(sim: SimServer) -> Path:
    DATA.mkdir(exist_ok=True)
    fleet = DATA / "fleet.yaml"
    write_inventory(fleet, list(sim.devices.values()), sim.port)
    return fleet


async def _first_key(services: Services, url: str) -> None:
    """On first start: an admin key, printed once and saved for the CLI (mode 0600)."""
    async with services.store.transaction(readonly=True) as tx:
        existing = await tx.api_keys.all()
    path = config_paths()[0]
    exists: bool = await asyncio.to_thread(path.exists)
    if existing and exists:
        return
    _, token = await services.keys.create("admin (netfleet up)", "admin")
    await asyncio.to_thread(_save_client_config, path, url, token)
    console.print(f"Admin API key (shown once, saved in {path}): [bold]{token}[/bold]")


def _save_client_config(path: Path, url: str, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(yaml.safe_dump({"url": url, "api_key": token}))
