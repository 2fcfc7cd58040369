"""`netfleet run` and `netfleet jobs`: submit work, watch it, read results."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from netfleet.cli.common import KeyOption, UrlOption, client
from netfleet.client import Client
from netfleet.domain.jobs import JobView, Status

app = typer.Typer(help="Jobs: list, show, cancel.", no_args_is_help=True)
out = Console()


def run(
    commands: Annotated[list[str], typer.Argument(help="Commands, or config lines with "
                                                       "--config.")],
    where: Annotated[list[str] | None, typer.Option(
        "--where", "-w", help="Selector term, repeatable: tag=core, name=ios-*, "
                              "platform=cisco_ios, site=lab1.")] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", help="One device.")] = None,
    config: Annotated[bool, typer.Option("--config", help="Send as config lines.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Config: show the diff only.")]
    = False,
    save: Annotated[bool, typer.Option("--save", help="Config: save afterwards.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per device.")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Run commands (or config with --config) on devices and show the results."""
    body = {"kind": "config" if config else "command", "device": device, "where": where or [],
            "timeout": timeout}
    if config:
        body.update(lines=commands, dry_run=dry_run, save=save)
    else:
        body["commands"] = commands
    with client(url, api_key) as sdk:
        job = sdk.submit(body)
        done = _follow(sdk, job, quiet=as_json)
    if as_json:
        out.print_json(done.model_dump_json())
    else:
        _table(done)
    if done.status != Status.SUCCEEDED:
        raise typer.Exit(1)


def _follow(sdk: Client, job: JobView, *, quiet: bool) -> JobView:
    if quiet:
        while not Status(job.status).final:
            job = sdk.job(job.id, wait=10)
        return job
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        bar = progress.add_task(f"job {job.id[:8]}", total=job.devices)
        while not Status(job.status).final:
            job = sdk.job(job.id, wait=1)
            progress.update(bar, completed=job.devices - job.counts.get("pending", 0))
            if not Status(job.status).final:
                time.sleep(0.1)
        return sdk.job(job.id)


def _table(job: JobView) -> None:
    table = Table(title=f"job {job.id} — {job.status} ({job.devices} devices)")
    for column in ("device", "status", "category", "output / message"):
        table.add_column(column, overflow="fold")
    for r in job.results:
        text = r.message or ""
        if r.diff:
            text = r.diff
        elif r.outputs:  # the first lines of each output; --json has everything
            text = "\n".join("\n".join(o.output.splitlines()[:6]) for o in r.outputs)
        style = "green" if r.status == Status.SUCCEEDED else "red"
        table.add_row(r.device, f"[{style}]{r.status}[/{style}]", r.category or "",
                      text[:2000])
    out.print(table)


@app.command("list")
def list_jobs(
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, …")] = None,
    kind: Annotated[str | None, typer.Option(help="command, config or facts")] = None,
    device: Annotated[str | None, typer.Option(help="Jobs that ran on this device.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Recent jobs, newest first."""
    with client(url, api_key) as sdk:
        jobs = sdk.jobs(status=status, kind=kind, device=device, limit=limit)
    if as_json:
        out.print_json(json.dumps([j.model_dump(mode="json") for j in jobs]))
        return
    table = Table(title="jobs")
    for column in ("id", "kind", "status", "devices", "succeeded", "failed", "created"):
        table.add_column(column)
    for j in jobs:
        table.add_row(j.id, j.kind, j.status, str(j.devices), str(j.counts.get("succeeded", 0)),
                      str(j.counts.get("failed", 0)), j.created_at.isoformat(timespec="seconds"))
    out.print(table)


@app.command("show")
def show(job_id: str, wait: Annotated[float, typer.Option(help="Wait up to N s.")] = 0,
         as_json: Annotated[bool, typer.Option("--json")] = False,
         url: UrlOption = None, api_key: KeyOption = None) -> None:
    """One job with its per-device results."""
    with client(url, api_key) as sdk:
        job = sdk.job(job_id, wait=wait)
    if as_json:
        out.print_json(job.model_dump_json())
    else:
        _table(job)


@app.command("cancel")
def cancel(job_id: str, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Cancel what has not run yet (and stop what is running)."""
    with client(url, api_key) as sdk:
        job = sdk.cancel(job_id)
    out.print(f"job {job.id}: {job.status}")
