"""Cleaning raw CLI output: terminal escapes, line endings, echoed commands, secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable

# CSI (ESC [ ... final), OSC (ESC ] ... BEL/ST), charset selection (ESC ( B), and the two-byte
# forms (ESC 7, ESC =, ESC M ...). Devices send them for colour, cursor moves and line redraws.
ANSI = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[()#][0-9A-Za-z]|[0-Z\\-~])"
)
# NUL and BEL carry nothing for a reader; a lone CR (a line redraw) is dropped once CR LF is LF.
NOISE = re.compile(r"[\x00\x07\r]")
MASK = "********"
ECHO_SEARCH_LINES = 5  # unsolicited lines (a log message) may arrive before the echo


def normalise(raw: str) -> str:
    """Terminal output as plain text: no escape sequences, `\\n` line endings."""
    if "\x1b" in raw:  # the `in` tests skip the regexes for the usual plain output: this
        raw = ANSI.sub("", raw)  # runs on every chunk every poll reads
    raw = raw.replace("\r\n", "\n")
    if "\r" in raw or "\x00" in raw or "\x07" in raw:
        raw = NOISE.sub("", raw)
    return raw


def last_line(text: str) -> str:
    return text.rpartition("\n")[2]


def strip_echo(lines: list[str], command: str) -> list[str]:
    """Drop the device's echo of `command` (and anything unsolicited printed before it)."""
    typed = command.strip()
    for index, line in enumerate(lines[:ECHO_SEARCH_LINES]):
        if line.rstrip().endswith(typed) if typed else not line.strip():
            return lines[index + 1:]
    return lines


def trim_blank(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret a device might echo back with `********`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
