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


@app.command("jobs")
def jobs(
    devices: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    samples: Annotated[int, typer.Option(min=10)] = 200,
    baseline_jobs: Annotated[int, typer.Option(min=3)] = 20,
) -> None:
    """Job latency (p50/p99), bulk device-commands/s, and a Netmiko FIFO-worker baseline."""
    from netfleet.bench import jobs as bench_jobs

    result = asyncio.run(bench_jobs.run(devices=devices, samples=samples,
                                        baseline_jobs=baseline_jobs))
    typer.echo(json.dumps(result, indent=2))
