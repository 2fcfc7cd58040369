"""`netfleet bench …`: benchmarks that print JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from netfleet import runtime

app = typer.Typer(help="Benchmarks (JSON output).", no_args_is_help=True)


@app.command("sim")
def sim(
    devices: Annotated[int, typer.Option(min=1, max=60_000)] = 10_000,
    sessions: Annotated[int, typer.Option(min=1, max=5_000)] = 200,
    commands: Annotated[int, typer.Option(min=1)] = 5_000,
) -> None:
    """Memory per idle device and per session, CPU per 1,000 commands, time to bring N up."""
    from netfleet.bench import sim as bench_sim

    result = runtime.run(bench_sim.run(devices=devices, sessions=sessions, commands=commands))
    typer.echo(json.dumps(result, indent=2))


@app.command("jobs")
def jobs(
    devices: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    samples: Annotated[int, typer.Option(min=10)] = 200,
    baseline_jobs: Annotated[int, typer.Option(min=3)] = 20,
) -> None:
    """Job latency (p50/p99), bulk device-commands/s, and a Netmiko FIFO-worker baseline."""
    from netfleet.bench import jobs as bench_jobs

    result = runtime.run(bench_jobs.run(devices=devices, samples=samples,
                                        baseline_jobs=baseline_jobs))
    typer.echo(json.dumps(result, indent=2))


@app.command("detect")
def detect(
    devices: Annotated[int, typer.Option(min=10, max=100_000)] = 1000,
    fraction: Annotated[list[float] | None, typer.Option(
        min=0.0, max=0.5, help="Degraded fraction (repeat for several).")] = None,
    window: Annotated[int, typer.Option(min=1, max=60, help="Window in minutes.")] = 10,
    seed: Annotated[int, typer.Option()] = 1,
    polled: Annotated[bool, typer.Option(
        "--polled", help="Poll a simulator over SSH (the whole pipeline) instead of "
                         "computing samples from its model; --devices then defaults to 300.")]
    = False,
) -> None:
    """Bottleneck detection: precision, recall and F1 of robust and zscore at 5/10/20% degraded."""
    from netfleet.bench import detect as bench_detect

    fractions = tuple(fraction or (0.05, 0.10, 0.20))
    if polled:
        result = runtime.run(bench_detect.run_polled(
            devices=300 if devices == 1000 else devices, fractions=fractions, seed=seed))
    else:
        result = runtime.run(bench_detect.run(devices=devices, fractions=fractions,
                                              window_minutes=window, seed=seed))
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))


@app.command("poll")
def poll(
    devices: Annotated[int, typer.Option(min=1, max=20_000)] = 2000,
    interval: Annotated[float, typer.Option(min=1.0, help="Poll interval, seconds.")] = 2.0,
    seconds: Annotated[float, typer.Option(min=5.0, help="Measuring time.")] = 20.0,
    ingest_samples: Annotated[int, typer.Option(min=10_000)] = 200_000,
    query_devices: Annotated[int, typer.Option(min=10)] = 10_000,
    postgres_admin_url: Annotated[str, typer.Option(
        help="A PostgreSQL database to create the benchmark's database from; '' skips it.")]
    = "postgresql://postgres@127.0.0.1:5432/test",
) -> None:
    """Device-polls per CPU-second, memory per polled device, sample ingest rate (SQLite and
    PostgreSQL) and the bottleneck query over 10,000 devices."""
    from netfleet.bench import poll as bench_poll

    result = runtime.run(bench_poll.run(devices=devices, interval=interval, seconds=seconds,
                                        ingest_samples=ingest_samples,
                                        query_devices=query_devices,
                                        postgres_admin_url=postgres_admin_url or None))
    typer.echo(json.dumps(result, indent=2))


@app.command("deploy")
def deploy(
    nodes: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    config_error_rate: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of config lines the simulator refuses.")] = 0.05,
    timeout: Annotated[float, typer.Option(min=10.0, help="Give up after, seconds.")] = 900.0,
    postgres_admin_url: Annotated[str, typer.Option(
        help="Run on a new PostgreSQL database made from this one; '' runs on SQLite.")]
    = "",
) -> None:
    """A deployment of N simulated nodes from create to all running or failed, then a
    generation rollout to every running node."""
    from netfleet.bench import deploy as bench_deploy

    result = runtime.run(bench_deploy.run(nodes=nodes, config_error_rate=config_error_rate,
                                          timeout=timeout,
                                          postgres_admin_url=postgres_admin_url or None))
    typer.echo(json.dumps(result, indent=2))


@app.command("cluster")
def cluster(
    devices: Annotated[int, typer.Option(min=10, max=20_000)] = 2000,
    seconds: Annotated[float, typer.Option(min=5.0, help="Measuring time per run.")] = 15.0,
    jobs: Annotated[int, typer.Option(min=10)] = 1000,
    lease_ttl: Annotated[float, typer.Option(min=1.0, help="For the failover run.")] = 10.0,
    postgres_admin_url: Annotated[str, typer.Option(
        help="Run on a new PostgreSQL database made from this one; '' runs on SQLite.")]
    = "postgresql://postgres@127.0.0.1:5432/test",
) -> None:
    """Cluster: polls/s and jobs/s with 1 and 2 agent processes, failover after a SIGKILL,
    and the Redis backend's overhead against the memory backend."""
    from netfleet.bench import cluster as bench_cluster

    result = runtime.run(bench_cluster.cluster(devices=devices, seconds=seconds, jobs=jobs,
                                               lease_ttl=lease_ttl,
                                               postgres_admin_url=postgres_admin_url or None))
    typer.echo(json.dumps(result, indent=2))


@app.command("chaos")
def chaos(
    devices: Annotated[int, typer.Option(min=2, max=5_000)] = 100,
    seconds: Annotated[float, typer.Option(min=5.0, help="Of load and chaos.")] = 90.0,
    kills: Annotated[int, typer.Option(min=0, help="Of each: an agent, Redis.")] = 4,
    seed: Annotated[int, typer.Option()] = 1,
    postgres_admin_url: Annotated[str, typer.Option(
        help="The benchmark's database is made from this one.")]
    = "postgresql://postgres@127.0.0.1:5432/test",
) -> None:
    """A cluster under load while agents and Redis are killed (SIGKILL) and started again;
    then checks that every accepted job ended, per-device order held, no sample is stored
    twice. Exits 1 when a check failed."""
    from netfleet.bench import chaos as bench_chaos

    result = runtime.run(bench_chaos.chaos(devices=devices, seconds=seconds, kills=kills,
                                           seed=seed, postgres_admin_url=postgres_admin_url))
    typer.echo(json.dumps(result, indent=2))
    if not result.get("passed"):
        raise typer.Exit(1)
