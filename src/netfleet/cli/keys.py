"""`netfleet keys`: API keys — create (the token is printed once), list, revoke."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from netfleet.cli.common import KeyOption, UrlOption, client

app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. ci-pipeline.")],
    role: Annotated[str, typer.Option(help="viewer (read), operator (jobs) or admin.")]
    = "viewer",
    as_json: Annotated[bool, typer.Option("--json", help="Print the key as JSON.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Create a key. Its token is printed (on stdout) this once: keep it."""
    with client(url, api_key) as sdk:
        key = sdk.create_key(name, role)
    if as_json:
        typer.echo(json.dumps(key, indent=2))
        return
    err.print(f"Created {escape(key['role'])} key {key['id']} ({escape(key['name'])}). "
              f"The token is shown once; send it as X-API-Key or NETFLEET_API_KEY:")
    typer.echo(key["token"])


@app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Keys with their role, prefix and last use (never the tokens)."""
    with client(url, api_key) as sdk:
        keys = sdk.keys()
    if as_json:
        typer.echo(json.dumps(keys, indent=2))
        return
    table = Table(title=f"{len(keys)} API keys")
    for column in ("id", "name", "role", "prefix", "created", "last used", "revoked"):
        table.add_column(column, overflow="fold")
    for k in keys:
        table.add_row(str(k["id"]), escape(k["name"]), k["role"], k["prefix"] + "…",
                      *(str(k[f] or "")[:19] for f in ("created_at", "last_used_at",
                                                       "revoked_at")))
    out.print(table)


@app.command("revoke")
def revoke(
    key_ids: Annotated[list[int], typer.Argument(help="Key ids (see `netfleet keys list`).")],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Revoke keys: they stop working at once."""
    with client(url, api_key) as sdk:
        for key_id in key_ids:
            key = sdk.revoke_key(key_id)
            out.print(f"Revoked key {key['id']} ({escape(key['name'])}).")
