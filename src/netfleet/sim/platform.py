"""Platforms as data: a YAML definition per platform (prompts, modes, commands, config grammar,
output templates, error strings), loaded into a `Platform` that the shell interprets.

Adding a platform means adding `platforms/<name>.yaml`; nothing here names a vendor.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

from netfleet.sim.state import DeviceConfig, Interface
from netfleet.sim.views import mac_colon, mac_dotted

if TYPE_CHECKING:
    from netfleet.sim.state import Device

PLACEHOLDER = re.compile(r"^<(\w+)(\.\.\.)?>$")
LITERAL_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")

# What a placeholder in a command's syntax accepts.
ARGUMENT_KINDS: dict[str, Callable[[str], bool]] = {
    "word": lambda s: bool(s),
    "int": str.isdigit,
    "ip": lambda s: _is_ip(s),
    "ifname": lambda s: bool(s),
}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


class PlatformError(ValueError):
    """A platform definition is malformed; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    prompt: str  # str.format with hostname, username
    parent: str | None = None
    config: bool = False
    banner: str | None = None  # a line shown above the prompt (Junos "[edit]"); "": a blank line


@dataclass(frozen=True, slots=True)
class Token:
    text: str  # keyword, or the placeholder name
    kind: str | None = None  # None for a keyword
    rest: bool = False  # <name...> takes the rest of the line


@dataclass(frozen=True, slots=True)
class CommandSpec:
    tokens: tuple[Token, ...]
    modes: frozenset[str]
    action: str
    params: Mapping[str, Any]
    output: str | None  # name of an output template
    hidden: bool = False  # matched only when typed in full (e.g. "exit configuration-mode")


@dataclass(frozen=True, slots=True)
class CommandMatch:
    spec: CommandSpec
    args: dict[str, str]


@dataclass(frozen=True, slots=True)
class CommandMiss:
    """Why no command matched: the token index that failed, and whether input ran out."""

    position: int
    incomplete: bool
    ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class ConfigRule:
    pattern: re.Pattern[str]
    action: str
    modes: frozenset[str]
    enter: str | None
    params: Mapping[str, Any]
    keywords: tuple[str, ...] = ()  # the literal words the pattern starts with

    @staticmethod
    def leading_keywords(pattern: str) -> tuple[str, ...]:
        words = []
        for word in pattern.removeprefix("^").removesuffix("$").split(" "):
            if not LITERAL_WORD.match(word):
                break
            words.append(word.lower())
        return tuple(words)


@dataclass(frozen=True, slots=True)
class HardwareModel:
    name: str
    ports: int
    memory_kb: int
    image: str


@dataclass(slots=True)
class Platform:
    name: str
    vendor: str
    os_name: str
    initial_mode: str
    modes: dict[str, Mode]
    commands: list[CommandSpec]
    config_rules: list[ConfigRule]
    errors: dict[str, str]
    models: list[HardwareModel]
    versions: list[str]
    interface_types: dict[str, str]  # canonical type name -> "physical" | "logical"
    physical_name: str  # format string with {n}
    first_port: int
    abbreviate_interfaces: bool
    paging_length: int
    more_prompt: str
    more_erase: str
    candidate_config: bool
    has_enable: bool
    serial_format: str
    banner: str
    templates: dict[str, jinja2.Template] = field(repr=False)
    constants: dict[str, Any] = field(default_factory=dict)
    # Uncommitted candidate changes survive leaving configuration mode (and the session):
    # the next `configure` continues from them. Only with candidate_config.
    keep_candidate: bool = False
    _by_mode: dict[str, list[CommandSpec]] = field(default_factory=dict, repr=False)

    # -- commands --------------------------------------------------------------------------
    def commands_for(self, mode: str) -> list[CommandSpec]:
        specs = self._by_mode.get(mode)
        if specs is None:
            specs = [c for c in self.commands if mode in c.modes]
            self._by_mode[mode] = specs
        return specs

    def match(self, words: list[str], mode: str) -> CommandMatch | CommandMiss:
        """Match typed words against the mode's commands, accepting unique keyword prefixes."""
        best_miss = CommandMiss(position=0, incomplete=False)
        candidates: list[tuple[tuple[int, int], CommandMatch]] = []
        for spec in self.commands_for(mode):
            outcome = _match_spec(spec, words)
            if isinstance(outcome, CommandMatch):
                exact = sum(1 for tok, word in zip(spec.tokens, words, strict=False)
                            if tok.kind is None and tok.text == word.lower())
                # A word a keyword accepts is that keyword, not an argument (`sh int st`).
                keywords = sum(1 for tok in spec.tokens[:len(words)] if tok.kind is None)
                candidates.append(((exact, keywords), outcome))
            elif (outcome.position, outcome.incomplete) > (best_miss.position,
                                                           best_miss.incomplete):
                best_miss = outcome
        if not candidates:
            return best_miss
        candidates.sort(key=lambda c: c[0], reverse=True)
        if len(candidates) > 1 and candidates[0][0] == candidates[1][0]:
            first, second = candidates[0][1].spec, candidates[1][1].spec
            if len(first.tokens) == len(second.tokens):
                return CommandMiss(position=0, incomplete=False, ambiguous=True)
        return candidates[0][1]

    # -- config ----------------------------------------------------------------------------
    def config_rule(self, line: str, mode: str) -> tuple[ConfigRule, dict[str, str]] | int:
        """The rule a config line matches and its fields, or the index of the first bad word
        (== the word count when every word was a keyword: the line is incomplete).

        Leading keywords may be abbreviated to a unique prefix (`int gi1/0/1`, `no shut`).
        """
        words = line.split()
        rules = [r for r in self.config_rules if mode in r.modes]
        known = 0
        for i, word in enumerate(words):
            options = {r.keywords[i] for r in rules if len(r.keywords) > i}
            if not options:
                break
            lowered = word.lower()
            hits = [lowered] if lowered in options else [k for k in options
                                                         if k.startswith(lowered)]
            if len(hits) != 1:
                break
            words[i] = hits[0]
            rules = [r for r in rules if len(r.keywords) > i and r.keywords[i] == hits[0]]
            known = i + 1
        expanded = " ".join(words)
        for rule in self.config_rules:
            if mode not in rule.modes:
                continue
            found = rule.pattern.match(expanded)
            if found:
                groups = {k: v for k, v in found.groupdict().items() if v is not None}
                return rule, groups
        return known

    # -- interfaces ------------------------------------------------------------------------
    def canonical_interface(self, text: str) -> str | None:
        """`gi1/0/1` -> `GigabitEthernet1/0/1` (IOS-style abbreviations); None if unknown type."""
        if not self.abbreviate_interfaces:
            return text
        found = re.match(r"^([A-Za-z][A-Za-z-]*?)\s*(\d[\d/.:]*)$", text)
        if not found:
            return None
        prefix, number = found.group(1).lower(), found.group(2)
        for type_name in self.interface_types:
            if type_name.lower().startswith(prefix):
                return f"{type_name}{number}"
        return None

    def interface_kind(self, name: str) -> str | None:
        for type_name, kind in self.interface_types.items():
            if name.startswith(type_name):
                return kind
        return None

    def initial_config(self, device: Device) -> DeviceConfig:
        ports = next((m.ports for m in self.models if m.name == device.model), 8)
        interfaces: dict[str, Interface] = {}
        for port in range(ports):
            name = self.physical_name.format(n=port + self.first_port)
            interfaces[name] = Interface(name=name, port=port,
                                         shutdown=port >= ports - 2)
        config = DeviceConfig(hostname=device.name, interfaces=interfaces, vlans={1: "default"})
        for name, spec in self.constants.get("extra_interfaces", {}).items():
            interfaces[name] = Interface(name=name, port=-1, **spec)
        return config

    def render(self, template: str, **context: Any) -> str:
        try:
            tpl = self.templates[template]
        except KeyError:
            raise PlatformError(f"{self.name}: no output template {template!r}") from None
        return tpl.render(**context)


def _match_spec(spec: CommandSpec, words: list[str]) -> CommandMatch | CommandMiss:
    args: dict[str, str] = {}
    for i, token in enumerate(spec.tokens):
        if i >= len(words):
            return CommandMiss(position=i, incomplete=True)
        word = words[i]
        if token.kind is None:
            hit = token.text == word.lower() if spec.hidden else token.text.startswith(
                word.lower())
            if not hit:
                return CommandMiss(position=i, incomplete=False)
        elif token.rest:
            args[token.text] = " ".join(words[i:])
            return CommandMatch(spec, args)
        elif ARGUMENT_KINDS[token.kind](word):
            args[token.text] = word
        else:
            return CommandMiss(position=i, incomplete=False)
    if len(words) > len(spec.tokens):
        return CommandMiss(position=len(spec.tokens), incomplete=False)
    return CommandMatch(spec, args)


# -- loading -------------------------------------------------------------------------------

def _parse_syntax(syntax: str, where: str) -> tuple[Token, ...]:
    tokens: list[Token] = []
    for part in syntax.split():
        found = PLACEHOLDER.match(part)
        if not found:
            tokens.append(Token(part.lower()))
            continue
        name = found.group(1)
        kind = name if name in ARGUMENT_KINDS else "word"
        tokens.append(Token(name, kind=kind, rest=bool(found.group(2))))
    if not tokens:
        raise PlatformError(f"{where}: empty command syntax")
    return tuple(tokens)


def _expand_modes(names: list[str], modes: dict[str, Mode], where: str) -> frozenset[str]:
    out: set[str] = set()
    for name in names:
        if name == "config*":
            out.update(m.name for m in modes.values() if m.config)
        elif name == "*":
            out.update(modes)
        elif name in modes:
            out.add(name)
        else:
            raise PlatformError(f"{where}: unknown mode {name!r}; known: {sorted(modes)}")
    return frozenset(out)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=False, autoescape=False,
    )
    env.filters["ljust"] = lambda s, n: str(s).ljust(int(n))
    env.filters["rjust"] = lambda s, n: str(s).rjust(int(n))
    env.filters["mac_dotted"] = mac_dotted
    env.filters["mac_colon"] = mac_colon
    # IOS reports whole milliseconds and never less than 1.
    env.filters["whole_ms"] = lambda values: [max(1, round(v)) for v in values]
    return env


def load_platform(name: str, data: dict[str, Any]) -> Platform:
    where = f"platform {name}"
    try:
        modes = {
            mode_name: Mode(name=mode_name, prompt=m["prompt"], parent=m.get("parent"),
                            config=bool(m.get("config", False)), banner=m.get("banner"))
            for mode_name, m in data["modes"].items()
        }
        commands = [
            CommandSpec(
                tokens=_parse_syntax(c["syntax"], f"{where} command {c['syntax']!r}"),
                modes=_expand_modes(c["modes"], modes, f"{where} command {c['syntax']!r}"),
                action=c.get("action", "output"),
                params=c.get("params", {}),
                output=c.get("output"),
                hidden=bool(c.get("exact", False)),
            )
            for c in data["commands"]
        ]
        rules = [
            ConfigRule(
                pattern=re.compile(r["match"], re.IGNORECASE if r.get("nocase") else 0),
                action=r["action"],
                modes=_expand_modes(r["modes"], modes, f"{where} config rule {r['match']!r}"),
                enter=r.get("enter"),
                params=r.get("params", {}),
                keywords=ConfigRule.leading_keywords(r["match"]),
            )
            for r in data.get("config", [])
        ]
        env = _environment()
        # Templates can `{% import 'name' as m %}` each other: shared macros, written once.
        env.loader = jinja2.DictLoader(dict(data["templates"]))
        templates = {k: env.from_string(v) for k, v in data["templates"].items()}
        interfaces = data["interfaces"]
        paging = data.get("paging", {})
        platform = Platform(
            name=name,
            vendor=data["vendor"],
            os_name=data["os_name"],
            initial_mode=data["initial_mode"],
            modes=modes,
            commands=commands,
            config_rules=rules,
            errors=dict(data["errors"]),
            models=[HardwareModel(**m) for m in data["models"]],
            versions=list(data["versions"]),
            interface_types=dict(interfaces["types"]),
            physical_name=interfaces["physical"],
            first_port=int(interfaces.get("first", 0)),
            abbreviate_interfaces=bool(interfaces.get("abbreviate", True)),
            paging_length=int(paging.get("length", 24)),
            more_prompt=paging.get("more", " --More-- "),
            more_erase=paging.get("erase", "\r          \r"),
            candidate_config=bool(data.get("candidate_config", False)),
            has_enable=bool(data.get("enable", False)),
            serial_format=data.get("serial_format", "SIM{n:08d}"),
            banner=data.get("banner", ""),
            templates=templates,
            constants=data.get("constants", {}),
            keep_candidate=bool(data.get("keep_candidate", False)),
        )
    except KeyError as exc:
        raise PlatformError(f"{where}: missing field {exc.args[0]!r}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise PlatformError(f"{where}: template error at line {exc.lineno}: {exc}") from None
    for spec in platform.commands:
        if spec.output is not None and spec.output not in platform.templates:
            raise PlatformError(f"{where}: command output {spec.output!r} has no template")
    if platform.initial_mode not in modes:
        raise PlatformError(f"{where}: initial_mode {platform.initial_mode!r} is not a mode")
    return platform


@cache
def platforms() -> dict[str, Platform]:
    """Every built-in platform, keyed by name (the file name without .yaml)."""
    found: dict[str, Platform] = {}
    for entry in resources.files("netfleet.sim.platforms").iterdir():
        if entry.name.endswith(".yaml"):
            name = entry.name.removesuffix(".yaml")
            found[name] = load_platform(name, yaml.safe_load(entry.read_text()))
    return found


def get_platform(name: str) -> Platform:
    known = platforms()
    try:
        return known[name]
    except KeyError:
        raise PlatformError(
            f"unknown platform {name!r}; choose one of: {', '.join(sorted(known))}") from None
