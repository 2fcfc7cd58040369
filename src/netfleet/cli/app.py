"""The `netfleet` command: one binary, one sub-command per role or tool."""

from __future__ import annotations

from typing import Annotated

import typer

from netfleet import __version__, log
from netfleet.cli import (
    bench,
    cluster,
    credentials,
    deploy,
    devices,
    jobs,
    keys,
    sim,
    telemetry,
    up,
)

app = typer.Typer(
    name="netfleet",
    help="A control plane for fleets of network devices.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(sim.app, name="sim")
app.add_typer(bench.app, name="bench")
app.add_typer(jobs.app, name="jobs")
app.add_typer(devices.app, name="devices")
app.add_typer(credentials.app, name="credentials")
app.add_typer(keys.app, name="keys")
app.add_typer(telemetry.app, name="telemetry")
app.add_typer(deploy.app, name="deploy")
app.command("run")(jobs.run)
app.command("bottlenecks")(telemetry.bottlenecks)
app.command("up")(up.up)
app.command("serve")(cluster.serve)
app.command("agent")(cluster.agent)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"netfleet {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    log_json: Annotated[bool, typer.Option("--log-json", help="Log JSON lines.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    version: Annotated[bool, typer.Option("--version", callback=_version,
                                          is_eager=True)] = False,
) -> None:
    """netfleet: commands and config over SSH, telemetry, deployments — and a fleet simulator."""
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("choose debug, info, warning or error", param_hint="--log-level")
    log.configure(json=log_json, level=log_level)


def main() -> None:
    """Entry point of the `netfleet` console script."""
    app()


if __name__ == "__main__":
    main()
