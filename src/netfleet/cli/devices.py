"""`netfleet devices`: the inventory through the REST API — add, import, list, show, rm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from netfleet.cli.common import KeyOption, UrlOption, client

app = typer.Typer(help="Devices: add, import, list, show, rm.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
PAGE = 1000  # the API's largest page

WhereOption = Annotated[list[str] | None, typer.Option(
    "--where", "-w", help="Selector term, repeatable: tag=core, name=ios-*, "
                          "platform=cisco_ios, site=lab1.")]


def _vars(pairs: list[str]) -> dict[str, Any]:
    """`asn=65001` -> {"asn": 65001}: values are read as YAML scalars, so numbers stay numbers."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--var")
        try:
            found[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            found[key.strip()] = value
    return found


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Unique device name.")],
    host: Annotated[str, typer.Option(help="IP address or DNS name.")],
    platform: Annotated[str, typer.Option(help="cisco_ios, arista_eos, juniper_junos, …")],
    port: Annotated[int, typer.Option(min=1, max=65_535, help="SSH port.")] = 22,
    credentials: Annotated[str | None, typer.Option(
        "--credentials", "-c", help="Credentials profile (`netfleet credentials add`).")]
    = None,
    site: Annotated[str | None, typer.Option(help="Site name.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t",
                                                  help="Tag, repeatable.")] = None,
    var: Annotated[list[str] | None, typer.Option("--var", help="KEY=VALUE, repeatable.")]
    = None,
    driver: Annotated[str | None, typer.Option(help="asyncssh or netmiko (default: by "
                                                    "platform).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the device as JSON.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Add one device."""
    body = {"name": name, "host": host, "port": port, "platform": platform,
            "credentials": credentials, "site": site, "tags": tag or [],
            "vars": _vars(var or []), "driver": driver}
    with client(url, api_key) as sdk:
        device = sdk.add_device(**body)
    if as_json:
        typer.echo(json.dumps(device, indent=2))
    else:
        out.print(f"Added {escape(device['name'])} ({escape(device['host'])}:{device['port']}, "
                  f"{escape(device['platform'])}).")


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="YAML (e.g. netfleet sim's fleet.yaml) or CSV.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Import an inventory file: every device or none. The secrets file its
    `credentials_file` names is sent along when it is beside it."""
    with client(url, api_key) as sdk:
        report = sdk.import_inventory(path)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    d, c = report["devices"], report["credentials"]
    out.print(f"Imported {escape(path.name)}: devices {d['created']} created, {d['updated']} "
              f"updated, {d['unchanged']} unchanged; credentials profiles {c['created']} "
              f"created, {c['updated']} updated, {c['unchanged']} unchanged.")


@app.command("list")
def list_devices(
    where: WhereOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most N devices.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Devices matching the selector (all without --where), by name."""
    devices: list[dict[str, Any]] = []
    cursor: str | None = None
    with client(url, api_key) as sdk:
        while True:
            page = sdk.devices(where, limit=min(PAGE, limit - len(devices)), after=cursor)
            devices += page["devices"]
            cursor = page["next"]
            if cursor is None or len(devices) >= limit:
                break
    if as_json:
        typer.echo(json.dumps(devices, indent=2))
    else:
        _table(devices)
    if cursor is not None:
        err.print(f"showing the first {len(devices)}; more match (raise --limit)")


def _table(devices: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(devices)} devices")
    table.add_column("name", no_wrap=True)
    for column in ("host", "port", "platform", "site", "tags", "credentials", "model"):
        table.add_column(column, overflow="fold")
    for d in devices:
        facts = d.get("facts") or {}
        table.add_row(*(escape(str(v)) for v in (
            d["name"], d["host"], d["port"], d["platform"], d["site"] or "",
            ",".join(d["tags"]), d["credentials"] or "", facts.get("model") or "")))
    out.print(table)


@app.command("show")
def show(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the device as JSON.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """One device with its facts and their history."""
    with client(url, api_key) as sdk:
        device = sdk.device(name)
    if as_json:
        typer.echo(json.dumps(device, indent=2))
        return
    table = Table(title=escape(device["name"]), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field in ("host", "port", "platform", "driver", "site", "credentials"):
        table.add_row(field, escape(str(device[field] if device[field] is not None else "")))
    table.add_row("tags", escape(", ".join(device["tags"])))
    table.add_row("vars", escape(json.dumps(device["vars"])) if device["vars"] else "")
    for field, value in (device.get("facts") or {}).items():
        table.add_row(field, escape(str(value if value is not None else "")))
    out.print(table)
    if device["facts_history"]:
        history = Table(title="facts history")
        for column in ("at", "field", "old", "new"):
            history.add_column(column, overflow="fold")
        for change in device["facts_history"]:
            history.add_row(*(escape(str(change[c] or "")) for c in ("at", "field", "old", "new")))
        out.print(history)


@app.command("rm")
def remove(
    names: Annotated[list[str], typer.Argument(help="Device names.")],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Remove devices from the inventory."""
    with client(url, api_key) as sdk:
        for name in names:
            sdk.remove_device(name)
            out.print(f"Removed {escape(name)}.")
