"""What every client command shares: the SDK client from flags/env/config, and clean errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from netfleet.client import Client
from netfleet.domain.errors import InvalidInput, NetfleetError
from netfleet.domain.selectors import Selector

err = Console(stderr=True)

UrlOption = Annotated[str | None, typer.Option(
    "--url", envvar="NETFLEET_URL", help="netfleet API URL (default: the config file, then "
                                         "http://127.0.0.1:8000).")]
KeyOption = Annotated[str | None, typer.Option(
    "--api-key", envvar="NETFLEET_API_KEY", help="API key (default: the config file that "
                                                 "`netfleet up` writes).", show_default=False)]


@contextmanager
def client(url: str | None, api_key: str | None) -> Iterator[Client]:
    """An SDK client; a netfleet error becomes one red line and exit code 1."""
    try:
        with Client.from_env(url, api_key) as sdk:
            yield sdk
    except NetfleetError as exc:
        field = getattr(exc, "field", "")
        fix = getattr(exc, "fix", "")
        text = exc.message + (f" (field: {field})" if field else "") + (
            f" — {fix}" if fix else "")
        err.print(f"[red]error:[/red] {escape(text)}")
        raise typer.Exit(1) from None


def where_terms(terms: list[str] | None) -> list[str] | None:
    """Option callback: selector terms that do not parse are a usage error naming the fix."""
    if terms:
        try:
            Selector.parse(list(terms))
        except InvalidInput as exc:
            raise typer.BadParameter(f"{exc.message}; {exc.fix}" if exc.fix else exc.message
                                     ) from None
    return terms
