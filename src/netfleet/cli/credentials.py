"""`netfleet credentials`: login profiles. Secrets are read from the environment or a hidden
prompt, never from the command line (it ends up in shell history and `ps`), and never shown."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from netfleet.cli.common import KeyOption, UrlOption, client

app = typer.Typer(help="Credentials profiles: add, list, rm.", no_args_is_help=True)
out = Console()


def _from_env(var: str, option: str) -> str:
    value = os.environ.get(var)
    if not value:
        raise typer.BadParameter(f"the environment variable {var} is not set or empty",
                                 param_hint=option)
    return value


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Profile name (devices refer to it).")],
    username: Annotated[str, typer.Option("--username", "-u", help="Login name.")],
    password_env: Annotated[str | None, typer.Option(
        help="Read the password from this environment variable (otherwise it is prompted "
             "for, hidden).", metavar="VAR")] = None,
    no_password: Annotated[bool, typer.Option(
        "--no-password", help="No password (an SSH key logs in).")] = False,
    enable_secret_env: Annotated[str | None, typer.Option(
        help="Read the enable secret from this environment variable.", metavar="VAR")] = None,
    enable_secret: Annotated[bool, typer.Option(
        "--enable-secret", help="Prompt (hidden) for an enable secret.")] = False,
    ssh_key_file: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, readable=True, help="Private key file to log in with.")]
    = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Add a credentials profile; the secrets are stored encrypted and never shown again."""
    password: str | None = None
    if password_env:
        password = _from_env(password_env, "--password-env")
    elif not no_password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True,
                                err=True)
    secret: str | None = None
    if enable_secret_env:
        secret = _from_env(enable_secret_env, "--enable-secret-env")
    elif enable_secret:
        secret = typer.prompt("Enable secret", hide_input=True, confirmation_prompt=True,
                              err=True)
    body = {"name": name, "username": username, "password": password,
            "enable_secret": secret,
            "ssh_key": ssh_key_file.read_text() if ssh_key_file else None}
    with client(url, api_key) as sdk:
        profile = sdk.add_credentials(**body)
    out.print(f"Added credentials profile {escape(profile['name'])} "
              f"(user {escape(profile['username'])}; {_secrets(profile)}).")


def _secrets(profile: dict[str, object]) -> str:
    held = [label for label, key in (("password", "has_password"),
                                     ("enable secret", "has_enable_secret"),
                                     ("SSH key", "has_ssh_key")) if profile[key]]
    return ", ".join(held) if held else "no secrets"


@app.command("list")
def list_credentials(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Profiles and which secrets each holds (never the secrets)."""
    with client(url, api_key) as sdk:
        profiles = sdk.credentials()
    if as_json:
        typer.echo(json.dumps(profiles, indent=2))
        return
    table = Table(title=f"{len(profiles)} credentials profiles")
    for column in ("name", "username", "secrets", "updated"):
        table.add_column(column, overflow="fold")
    for p in profiles:
        table.add_row(escape(p["name"]), escape(p["username"]), _secrets(p),
                      str(p["updated_at"])[:19])
    out.print(table)


@app.command("rm")
def remove(
    names: Annotated[list[str], typer.Argument(help="Profile names.")],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Remove profiles (one still used by a device is refused)."""
    with client(url, api_key) as sdk:
        for name in names:
            sdk.remove_credentials(name)
            out.print(f"Removed credentials profile {escape(name)}.")
