"""`netfleet telemetry` and `netfleet bottlenecks`: polling profiles, latest values, stored
samples and outliers among peers, through the REST API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from netfleet.cli.common import KeyOption, UrlOption, client, where_terms
from netfleet.domain.errors import InvalidInput
from netfleet.domain.telemetry import Profile
from netfleet.engine.profiles import load_profiles

app = typer.Typer(help="Telemetry: profiles (list, show, apply, assign, rm), latest values, "
                       "stored samples.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
MAX_POINTS = 10_000  # the API's largest answer to a samples query

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class Method(StrEnum):
    ROBUST = "robust"
    ZSCORE = "zscore"


# -- option checks: a bad value is a usage error (exit 2) naming the option and the fix -------
def seconds(text: str) -> float:
    """`90`, `90s`, `5m`, `1h`, `7d` -> seconds."""
    found = _DURATION.match(text)
    if found is None or float(found.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r} is not a duration; write e.g. 30s, 5m, 1h or 7d")
    return float(found.group(1)) * _UNIT[found.group(2)]


def _duration(text: str | None) -> str | None:
    if text is not None:
        seconds(text)
    return text


def _positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter(f"{value:g} is not above 0; write e.g. 2 (standard "
                                 f"deviations)")
    return value


WhereOption = Annotated[list[str] | None, typer.Option(
    "--where", "-w", callback=where_terms,
    help="Selector term, repeatable: tag=core, name=ios-*, platform=cisco_ios, site=lab1.")]
DeviceOption = Annotated[str | None, typer.Option("--device", "-d",
                                                  help="One device (or a name glob).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _refuse_file(exc: InvalidInput) -> NoReturn:
    """The profile file is wrong: one line naming the file and field, and the fix."""
    err.print(f"[red]error:[/red] {escape(exc.message)}"
              + (f" — {escape(exc.fix)}" if exc.fix else ""), soft_wrap=True)
    raise typer.Exit(2)


# -- profiles -----------------------------------------------------------------------------
@app.command("profiles")
def profiles(as_json: JsonOption = False, url: UrlOption = None,
             api_key: KeyOption = None) -> None:
    """Every profile: its platform, interval, which devices it selects and how many poll it."""
    with client(url, api_key) as sdk:
        found = sdk.telemetry_profiles()
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table(title=f"{len(found)} telemetry profiles")
    table.add_column("name", no_wrap=True)
    for column in ("platform", "interval", "where", "enabled", "builtin", "devices"):
        table.add_column(column, overflow="fold")
    for p in found:
        table.add_row(*(escape(str(v)) for v in (
            p["name"], p["platform"], f"{p['interval']:g}s", " ".join(p["where"]) or "—",
            _yes(p["enabled"]), _yes(p["builtin"]), p["devices"])))
    out.print(table)


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Profile name.")],
         as_json: Annotated[bool, typer.Option("--json", help="Print the profile, its "
                                                              "assignment and device count "
                                                              "as JSON.")] = False,
         url: UrlOption = None, api_key: KeyOption = None) -> None:
    """A profile as YAML, ready to edit and `netfleet telemetry apply`."""
    with client(url, api_key) as sdk:
        view = sdk.telemetry_profile(name)
    if as_json:
        typer.echo(json.dumps(view, indent=2))
        return
    typer.echo(f"# {_assignment(view)}")
    typer.echo(yaml.dump(_compact(view["profile"]), Dumper=_BlockDumper, sort_keys=False,
                         allow_unicode=True, width=100), nl=False)


@app.command("apply")
def apply(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         metavar="FILE.yaml",
                                         help="One profile, or several under `profiles:`.")],
    where: WhereOption = None,
    enabled: Annotated[bool | None, typer.Option(
        "--enable/--disable", help="Poll (the default for a new profile) or store without "
                                   "polling. Default for a replaced profile: as it was.")]
    = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Create or replace profiles from a YAML file, checked here first. Without --where a new
    profile polls no device and a replaced one keeps its devices."""
    try:
        loaded = load_profiles(path)
    except InvalidInput as exc:
        _refuse_file(exc)
    with client(url, api_key) as sdk:
        existing = {p["name"]: p for p in sdk.telemetry_profiles()}
        for profile in loaded:
            current = existing.get(profile.name)
            terms = where or (current["where"] if current else [])
            on = enabled if enabled is not None else (current["enabled"] if current else True)
            view = sdk.replace_telemetry_profile(profile, terms, enabled=on)
            out.print(f"{'Replaced' if current else 'Created'} telemetry profile "
                      f"{escape(profile.name)} ({escape(profile.platform)}, every "
                      f"{profile.interval:g}s): {escape(_assignment(view))}.")


@app.command("assign")
def assign(
    name: Annotated[str, typer.Argument(help="Profile name.")],
    where: WhereOption = None,
    off: Annotated[bool, typer.Option("--off", help="Stop polling (the selector is kept).")]
    = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Poll the devices --where selects (of the profile's platform, with credentials), or
    stop polling with --off."""
    if where and off:
        raise typer.BadParameter("give --where to poll or --off to stop, not both",
                                 param_hint="--where/--off")
    if not where and not off:
        raise typer.BadParameter("give --where TERM (repeatable) to choose the devices to poll, "
                                 "or --off to stop polling", param_hint="--where/--off")
    with client(url, api_key) as sdk:
        view = sdk.assign_telemetry_profile(name, where or None, enabled=not off)
    out.print(f"Telemetry profile {escape(view['name'])}: {escape(_assignment(view))}.")


@app.command("rm")
def remove(names: Annotated[list[str], typer.Argument(help="Profile names.")],
           url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Delete profiles; their devices stop polling them. (A deleted built-in profile comes
    back, assigned to no device, when the server restarts.)"""
    with client(url, api_key) as sdk:
        for name in names:
            sdk.remove_telemetry_profile(name)
            out.print(f"Removed telemetry profile {escape(name)}.")


def _assignment(view: dict[str, Any]) -> str:
    where = " ".join(view["where"])
    if not view["enabled"]:
        return "disabled" + (f" (where {where})" if where else "")
    if not where:
        return "assigned to no device (give --where)"
    return f"polls {view['devices']} device{'' if view['devices'] == 1 else 's'} (where {where})"


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    """The profile without its defaults (what remains is what its author chose), but always
    with its name, platform and interval."""
    profile = Profile.model_validate(body)
    full = profile.model_dump(mode="json")
    chosen = profile.model_dump(mode="json", exclude_defaults=True)
    return {k: chosen.get(k, v) for k, v in full.items()
            if k in chosen or k in ("name", "platform", "interval")}


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (TextFSM templates) as `|` blocks, as a person would write them."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _str)


# -- values -------------------------------------------------------------------------------
@app.command("latest")
def latest(where: WhereOption = None, device: DeviceOption = None,
           metric: Annotated[str | None, typer.Option("--metric", "-m",
                                                      help="One metric.")] = None,
           as_json: JsonOption = False, url: UrlOption = None,
           api_key: KeyOption = None) -> None:
    """The newest value of every series; values from a failed or late poll are marked stale,
    with the reason."""
    with client(url, api_key) as sdk:
        rows = sdk.telemetry_latest(metric=metric, device=device, where=where)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} series")
    for column in ("device", "metric", "labels", "value", "unit", "time", "state"):
        table.add_column(column, overflow="fold", justify="right" if column == "value"
                         else "left")
    for r in rows:
        state = f"[red]stale: {escape(r['reason'] or '')}[/red]" if r["stale"] else "fresh"
        table.add_row(escape(r["device"]), escape(r["metric"]), escape(_labels(r["labels"])),
                      _number(r["value"]), escape(r["unit"]), _time(r["time"]), state)
    out.print(table)
    if not rows:
        err.print("no values: does a profile poll these devices? (netfleet telemetry "
                  "profiles)")


@app.command("query")
def query(
    metric: Annotated[str, typer.Option("--metric", "-m", help="Metric, e.g. cpu_percent.")],
    device: DeviceOption = None,
    where: WhereOption = None,
    since: Annotated[str, typer.Option(callback=_duration, help="How far back: 30m, 1h, "
                                                                "7d.")] = "1h",
    step: Annotated[str | None, typer.Option(
        callback=_duration, help="One point per series per step (average, min, max), "
                                 "e.g. 5m.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_POINTS, help="At most N points.")]
    = 1000,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Stored samples of one metric, newest first."""
    end = datetime.now(UTC)
    start = datetime.fromtimestamp(end.timestamp() - seconds(since), UTC)
    with client(url, api_key) as sdk:
        answer = sdk.telemetry_samples(metric=metric, device=device, where=where, start=start,
                                       end=end, limit=limit, step=step)
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    points = answer["points"]
    table = Table(title=f"{len(points)} points of {escape(metric)} since {escape(since)}"
                        + (f", per {escape(step)}" if step else ""))
    columns = ["time", "device", "labels", "avg" if step else "value"]
    columns += ["min", "max", "count"] if step else []
    for column in columns:
        table.add_column(column, overflow="fold",
                         justify="right" if column in ("avg", "value", "min", "max", "count")
                         else "left")
    for p in points:
        row = [_time(p["time"]), escape(p["device"]), escape(_labels(p["labels"])),
               _number(p["value"])]
        if step:
            row += [_number(p["min"]), _number(p["max"]), str(p["count"])]
        table.add_row(*row)
    out.print(table)
    if len(points) >= limit:
        err.print(f"showing the first {len(points)}; more match (raise --limit or --step)")


def bottlenecks(
    window: Annotated[str, typer.Option(callback=_duration, help="Averaging window: 10m, "
                                                                 "1h.")] = "10m",
    where: WhereOption = None,
    method: Annotated[Method, typer.Option(help="robust: median and MAD (outliers do not "
                                                "skew the baseline); zscore: mean and "
                                                "standard deviation.")] = Method.ROBUST,
    threshold: Annotated[float, typer.Option(callback=_positive,
                                             help="z at which a device is flagged.")] = 2.0,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Devices whose latency, throughput or error rate stand out from their peers (the devices
    --where selects), worst first."""
    with client(url, api_key) as sdk:
        answer = sdk.bottlenecks(window=window, where=where, method=method.value,
                                 threshold=threshold)
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    found = answer["bottlenecks"]
    summary = (f"among {answer['devices_compared']} devices over {escape(window)} "
               f"({method.value}, threshold {threshold:g})")
    if not found:
        out.print(f"No bottlenecks {summary}.")
        return
    table = Table(title=f"{len(found)} bottlenecks {summary}")
    table.add_column("device", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("reason", overflow="fold")
    for b in found:
        table.add_row(escape(b["device"]), f"{b['deviation_score']:.2f}", escape(b["reason"]))
    out.print(table)


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1e6 else f"{value:.6g}"


def _time(iso: str) -> str:
    """`2025-01-01T12:00:00.123Z` -> `2025-01-01 12:00:00` (UTC, as the API gives it)."""
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return escape(iso)
