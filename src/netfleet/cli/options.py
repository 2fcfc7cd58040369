"""Parsing helpers shared by commands."""

from __future__ import annotations

import re

import typer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


def duration(text: str) -> float:
    """`2s`, `500ms`, `1.5` (seconds) or `1m` -> seconds."""
    found = _DURATION.match(text)
    if not found:
        raise typer.BadParameter(f"{text!r} is not a duration; write e.g. 2s, 500ms or 1.5")
    return float(found.group(1)) * _UNITS[found.group(2)]


def fraction(text: str) -> float:
    """`0.05` or `5%` -> 0.05."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a fraction; write e.g. 0.05 or 5%") from None
    if not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"{text!r} is outside 0..1")
    return value
