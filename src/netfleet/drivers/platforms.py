"""Platforms as data: what the native driver needs to know about a network OS's CLI.

Prompts, privilege escalation, paging, configuration modes, saving, and the strings that mean a
line was refused. Written to the real devices' behaviour (as Netmiko and scrapli model them);
adding a platform means adding one `Platform` value below and nothing else.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from netfleet.domain.errors import InvalidInput

_LINE = re.IGNORECASE
_OUTPUT = re.MULTILINE


@dataclass(frozen=True, slots=True)
class Answer:
    """A question a command may ask before the prompt returns, and the reply to type."""

    question: re.Pattern[str]  # matched against the last line received
    reply: str


@dataclass(frozen=True, slots=True)
class Step:
    """One command the driver types, with the questions it may have to answer."""

    command: str
    answers: tuple[Answer, ...] = ()


@dataclass(frozen=True, slots=True)
class Enable:
    """How to reach privileged mode from a login that lands unprivileged."""

    command: str
    password_prompt: re.Pattern[str]
    unprivileged: re.Pattern[str]  # a prompt that still needs `command`


@dataclass(frozen=True, slots=True)
class Platform:
    name: str
    prompt: re.Pattern[str]  # the last line is a prompt, in any mode
    config_prompt: re.Pattern[str]  # ... a configuration-mode prompt
    enable: Enable | None
    on_open: tuple[str, ...]  # paging off, wide terminal
    config_enter: str
    config_exit: Step  # leave configuration mode (without committing)
    commit: Step | None  # candidate-config platforms: apply, and leave configuration mode
    discard: Step | None  # drop uncommitted changes before leaving after a refused line
    save: Step | None  # None: committing already saved
    show_running: str
    errors: tuple[re.Pattern[str], ...]  # a line of output matching one means "refused"
    context_lines: tuple[re.Pattern[str], ...] = ()  # lines printed above a prompt, not output

    def rejection(self, output: str, *, first_lines: int | None = None) -> str | None:
        """The error line in `output` if the device refused the command, else None.

        A device prints its refusal right after the echo; `first_lines` limits the search to
        there, so a `show log` that merely contains "error:" is not mistaken for one.
        """
        lines = (ln for ln in output.split("\n") if ln.strip())
        for line in itertools.islice(lines, first_lines):
            for pattern in self.errors:
                if pattern.search(line):
                    return line.strip()
        return None

    def is_context(self, line: str) -> bool:
        return any(pattern.search(line.strip()) for pattern in self.context_lines)


def _errors(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, _OUTPUT) for p in patterns)


_CISCO_ENABLE_PROMPT = re.compile(r"^(?:enable\s)?password:\s?$", _LINE)
_UNPRIVILEGED = re.compile(r">\s?$")

CISCO_IOS = Platform(
    name="cisco_ios",
    # `R1>`, `R1#`, `R1(config-if)#`; IOS cuts the hostname to 20 characters in config modes.
    prompt=re.compile(r"^[\w.\-@/:]{1,63}(?:\((?!tcl)[\w.\-@/:+]{0,32}\))?[>#]\s?$", _LINE),
    config_prompt=re.compile(r"\(config[\w.\-@/:+]{0,32}\)#\s?$", _LINE),
    enable=Enable("enable", _CISCO_ENABLE_PROMPT, _UNPRIVILEGED),
    on_open=("terminal length 0", "terminal width 511"),
    config_enter="configure terminal",
    config_exit=Step("end"),
    commit=None,
    discard=None,
    # `write memory` does not ask; `copy run start` would ("Destination filename [...]?").
    save=Step("write memory", (Answer(re.compile(r"Destination filename \[[^\]]*\]\?\s*$"), ""),)),
    show_running="show running-config",
    errors=_errors(r"^\s*% ?Invalid input", r"^\s*% ?Incomplete command",
                   r"^\s*% ?Ambiguous command", r"^\s*% ?Unknown command"),
)

ARISTA_EOS = Platform(
    name="arista_eos",
    # `sw1>`, `sw1#`, `sw1(config-if-Et1)#`; a supervisor tag may follow the hostname: `sw1(s1)#`.
    prompt=re.compile(
        r"^[\w.\-@/:]{1,63}(?:\(s\d+\))?(?:\([\w.\-@/:]{0,63}\))?[>#]\s?$", _LINE),
    config_prompt=re.compile(r"\(config[\w.\-@/:]{0,63}\)#\s?$", _LINE),
    enable=Enable("enable", re.compile(r"^password:\s?$", _LINE), _UNPRIVILEGED),
    on_open=("terminal length 0", "terminal width 511"),
    config_enter="configure terminal",
    config_exit=Step("end"),
    commit=None,
    discard=None,
    save=Step("copy running-config startup-config"),
    show_running="show running-config",
    errors=_errors(r"^\s*% ?Invalid input", r"^\s*% ?Incomplete command",
                   r"^\s*% ?Ambiguous command", r"^\s*% ?Unavailable command"),
)

_EXIT_UNCOMMITTED = Answer(
    re.compile(r"Exit with uncommitted changes\?\s*\[yes,no\]\s*(?:\(\w+\))?\s*$", _LINE), "yes")

JUNIPER_JUNOS = Platform(
    name="juniper_junos",
    # `user@host> ` / `user@host# `; EX and MX print `{master:0}` (config: `{master:0}[edit]`)
    # on the line above.
    prompt=re.compile(r"^[\w.\-@()/:]{1,63}[>#]\s?$", _LINE),
    config_prompt=re.compile(r"#\s?$"),
    enable=None,
    on_open=("set cli screen-length 0", "set cli screen-width 511",
             "set cli complete-on-space off"),
    config_enter="configure",
    config_exit=Step("exit configuration-mode", (_EXIT_UNCOMMITTED,)),
    commit=Step("commit and-quit", (_EXIT_UNCOMMITTED,)),
    discard=Step("rollback 0"),
    save=None,
    show_running="show configuration",
    errors=_errors(r"^\s*syntax error", r"^\s*unknown command", r"^\s*error:",
                   r"^\s*missing argument", r"is ambiguous\.?\s*$"),
    context_lines=(re.compile(r"^\{[\w:]+\}$"), re.compile(r"^(?:\{[\w:]+\})?\[edit.*\]$")),
)

PLATFORMS: Mapping[str, Platform] = {p.name: p for p in (CISCO_IOS, ARISTA_EOS, JUNIPER_JUNOS)}


def get_platform(name: str) -> Platform:
    """The platform called `name` (a Netmiko-style `_ssh` suffix is accepted)."""
    platform = PLATFORMS.get(name.removesuffix("_ssh"))
    if platform is None:
        raise InvalidInput(f"no platform definition for {name!r}; known: "
                           f"{', '.join(sorted(PLATFORMS))}", field="platform",
                           fix="use one of the known platforms or the netmiko driver")
    return platform
