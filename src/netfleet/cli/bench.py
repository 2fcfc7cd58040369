"""`netfleet bench …`: benchmarks that print JSON."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

app = typer.Typer(help="Benchmarks (JSON output).", no_args_is_help=True)


@app.command("sim")
def sim(
    devices: Annotated[int, typer.Option(min=1, max=60_000)] = 10_000,
    sessions: Annotated[int, typer.Option(min=1, max=5_000)] = 200,
    commands: Annotated[int, typer.Option(min=1)] = 5_000,
) -> None:
    """Memory per idle device and per session, CPU per 1,000 commands, time to bring N up."""
    from netfleet.bench import sim as bench_sim

    result = asyncio.run(bench_sim.run(devices=devices, sessions=sessions, commands=commands))
    typer.echo(json.dumps(result, indent=2))
