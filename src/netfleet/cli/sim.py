"""`netfleet sim`: run the device simulator, or control a running one over its HTTP API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from netfleet import runtime
from netfleet.cli.options import duration, fraction
from netfleet.sim.platform import PlatformError, platforms
from netfleet.sim.runner import SimOptions, Started, serve
from netfleet.sim.state import DEFAULT_FAULTS, Faults

app = typer.Typer(help="Simulated network devices over real SSH.", no_args_is_help=False)
console = Console(stderr=True)
out = Console()

ControlUrl = Annotated[str, typer.Option(
    "--control", envvar="NETFLEET_SIM_CONTROL", help="URL of a running simulator's control API.")]
DEFAULT_CONTROL = "http://127.0.0.1:9022"


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    devices: Annotated[int, typer.Option(min=0, max=65_000, help="How many devices.")] = 50,
    port: Annotated[int, typer.Option(min=1, max=65_535, help="SSH port on every device.")]
    = 2222,
    base_ip: Annotated[str, typer.Option(help="First device address (127.x.y.z).")]
    = "127.1.0.1",
    platform: Annotated[list[str] | None, typer.Option(
        help="Platforms to mix, round-robin (repeat the option). Default: all.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds identities, telemetry and degradation.")] = 1,
    degraded: Annotated[str, typer.Option(help="Fraction of degraded devices (0.05 or 5%).")]
    = "0.05",
    login_delay: Annotated[str, typer.Option(help="Delay before login completes, e.g. 2s.")]
    = "0",
    command_delay: Annotated[str, typer.Option(help="Delay added to every command.")] = "0",
    command_jitter: Annotated[str, typer.Option(help="Random extra delay up to this.")] = "0",
    config_error_rate: Annotated[str, typer.Option(
        help="Probability a config line is rejected (0.05 or 5%).")] = "0",
    drop_probability: Annotated[str, typer.Option(
        help="Per command: probability the connection is cut.")] = "0",
    hang_pattern: Annotated[str | None, typer.Option(
        help="Regex: matching commands never return a prompt.")] = None,
    max_sessions: Annotated[int, typer.Option(min=0, help="Concurrent sessions per device "
                                                          "(vty lines).")] = 16,
    auth_fail: Annotated[bool, typer.Option(help="Reject every login.")] = False,
    password: Annotated[str | None, typer.Option(
        help="One password for every device (default: a password per device).")] = None,
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Write the inventory here (secrets go to <stem>.secrets.yaml).")] = None,
    control_port: Annotated[int, typer.Option(
        min=0, max=65_535, help="Control API port on 127.0.0.1 (0 = none).")] = 9022,
    host_key: Annotated[Path | None, typer.Option(
        help="Host key file (created if missing; default: a new key each run).")] = None,
) -> None:
    """Run a fleet of simulated devices until interrupted."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        known = platforms()
    except PlatformError as exc:
        raise typer.BadParameter(str(exc)) from None
    for name in platform or []:
        if name not in known:
            raise typer.BadParameter(f"unknown platform {name!r}; choose from "
                                     f"{', '.join(sorted(known))}", param_hint="--platform")
    faults = Faults(**{
        **DEFAULT_FAULTS.as_dict(),
        "login_delay": duration(login_delay),
        "command_delay": duration(command_delay),
        "command_jitter": duration(command_jitter),
        "config_error_rate": fraction(config_error_rate),
        "drop_probability": fraction(drop_probability),
        "hang_pattern": hang_pattern,
        "max_sessions": max_sessions,
        "auth_fail": auth_fail,
    })
    options = SimOptions(
        devices=devices, port=port, base_ip=base_ip, seed=seed, degraded=fraction(degraded),
        platforms=platform or None, faults=faults, control_port=control_port, out=out_file,
        host_key=host_key, password=password,
    )
    try:
        runtime.run(serve(options, on_ready=_print_ready))
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def _print_ready(started: Started) -> None:
    sim = started.sim
    table = Table(title=f"{len(sim.devices)} simulated devices up in {started.seconds:.2f}s",
                  show_lines=False)
    for column in ("name", "address", "platform", "model", "degraded"):
        table.add_column(column, no_wrap=column != "model")
    shown = list(sim.devices.values())[:8]
    for d in shown:
        table.add_row(d.name, f"{d.address}:{sim.port}", d.platform.name, d.model,
                      "yes" if d.degradation else "")
    console.print(table)
    if len(sim.devices) > len(shown):
        console.print(f"… and {len(sim.devices) - len(shown)} more.")
    if shown:
        first = shown[0]
        console.print(f"Log in:  [bold]ssh -p {sim.port} {first.username}@{first.address}[/bold]"
                      f"   (password: {first.password}"
                      + (f", enable secret: {first.enable_secret}" if first.enable_secret else "")
                      + ")")
    if started.secrets_file is not None:
        console.print(f"Inventory written; credentials for every device in "
                      f"{started.secrets_file}")
    if started.control_url:
        console.print(f"Control API: {started.control_url}/docs   "
                      f"(e.g. `netfleet sim devices`, `netfleet sim truth`)")
    console.print("Stop with Ctrl-C.")


# -- control commands ----------------------------------------------------------------------

def _call(control: str, method: str, path: str, body: dict[str, Any] | None = None,
          params: dict[str, Any] | None = None) -> Any:
    try:
        response = httpx.request(method, control.rstrip("/") + path, json=body, params=params,
                                 timeout=30)
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] no simulator control API at {control} ({exc}); "
                      "start one with `netfleet sim` or pass --control")
        raise typer.Exit(2) from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        console.print(f"[red]error {response.status_code}:[/red] {detail}")
        raise typer.Exit(1)
    return response.json() if response.content else None


@app.command("devices")
def list_devices(
    control: ControlUrl = DEFAULT_CONTROL,
    platform: Annotated[str | None, typer.Option(help="Only this platform.")] = None,
    degraded: Annotated[bool | None, typer.Option(help="Only (not) degraded.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the devices of a running simulator."""
    params = {k: v for k, v in {"platform": platform, "degraded": degraded}.items()
              if v is not None}
    data = _call(control, "GET", "/devices", params={**params, "limit": 10_000})
    if as_json:
        out.print_json(json.dumps(data))
        return
    table = Table(title=f"{data['total']} devices")
    for column in ("name", "host", "platform", "model", "sessions", "degraded"):
        table.add_column(column)
    for d in data["devices"]:
        table.add_row(d["name"], d["host"], d["platform"], d["model"], str(d["sessions"]),
                      "yes" if d["degraded"] else "")
    out.print(table)


@app.command("add")
def add_devices(
    count: Annotated[int, typer.Argument(min=1, max=10_000)] = 1,
    platform: Annotated[list[str] | None, typer.Option(help="Platforms, round-robin.")] = None,
    control: ControlUrl = DEFAULT_CONTROL,
) -> None:
    """Add devices to a running simulator."""
    data = _call(control, "POST", "/devices", {"count": count, "platforms": platform})
    for d in data["devices"]:
        out.print(f"{d['name']}  {d['host']}:{data['port']}  {d['platform']}")


@app.command("rm")
def remove_device(name: str, control: ControlUrl = DEFAULT_CONTROL) -> None:
    """Remove a device (its sessions are cut)."""
    _call(control, "DELETE", f"/devices/{name}")
    out.print(f"removed {name}")


@app.command("faults")
def faults(
    device: Annotated[str | None, typer.Argument(help="A device; omit for fleet-wide.")] = None,
    login_delay: Annotated[str | None, typer.Option(help="e.g. 2s")] = None,
    command_delay: Annotated[str | None, typer.Option()] = None,
    command_jitter: Annotated[str | None, typer.Option()] = None,
    config_error_rate: Annotated[str | None, typer.Option(help="0.05 or 5%")] = None,
    drop_probability: Annotated[str | None, typer.Option()] = None,
    hang_pattern: Annotated[str | None, typer.Option()] = None,
    hang_probability: Annotated[str | None, typer.Option()] = None,
    max_sessions: Annotated[int | None, typer.Option(min=0)] = None,
    auth_fail: Annotated[bool | None, typer.Option()] = None,
    clear: Annotated[bool, typer.Option(help="Drop the device's own overrides.")] = False,
    control: ControlUrl = DEFAULT_CONTROL,
) -> None:
    """Show or change faults, fleet-wide or for one device."""
    changes: dict[str, Any] = {}
    for name, value, parse in (
        ("login_delay", login_delay, duration), ("command_delay", command_delay, duration),
        ("command_jitter", command_jitter, duration),
        ("config_error_rate", config_error_rate, fraction),
        ("drop_probability", drop_probability, fraction),
        ("hang_probability", hang_probability, fraction),
    ):
        if value is not None:
            changes[name] = parse(value)
    for name, raw in (("hang_pattern", hang_pattern), ("max_sessions", max_sessions),
                      ("auth_fail", auth_fail)):
        if raw is not None:
            changes[name] = raw
    if device is None:
        data = (_call(control, "PATCH", "/faults", changes) if changes
                else _call(control, "GET", "/faults"))
    elif clear:
        _call(control, "DELETE", f"/devices/{device}/faults")
        data = _call(control, "GET", f"/devices/{device}")["effective_faults"]
    elif changes:
        data = _call(control, "PATCH", f"/devices/{device}/faults", changes)["effective"]
    else:
        data = _call(control, "GET", f"/devices/{device}")["effective_faults"]
    out.print_json(json.dumps(data))


@app.command("truth")
def truth(control: ControlUrl = DEFAULT_CONTROL) -> None:
    """Which devices are degraded, and how (ground truth for bottleneck detection)."""
    out.print_json(json.dumps(_call(control, "GET", "/truth")))


@app.command("stats")
def stats(control: ControlUrl = DEFAULT_CONTROL) -> None:
    """Sessions, commands, logins and resource use of a running simulator."""
    out.print_json(json.dumps(_call(control, "GET", "/stats")))
