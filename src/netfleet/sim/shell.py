"""The CLI a simulated device runs for one SSH session: modes, commands, config, pager.

Synchronous and free of I/O: the session feeds it lines (or single keys at a `--More--`) and
writes back what it returns. Everything platform-specific comes from the `Platform` data.
"""

from __future__ import annotations

import ipaddress
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netfleet.sim.platform import CommandMatch, CommandSpec, Platform
from netfleet.sim.state import Device, DeviceConfig, Interface, StaticRoute
from netfleet.sim.views import DeviceView

NL = "\r\n"
ASK = "\0"  # a command's output that starts with this is a question: no prompt follows
MAX_FAILED_SECRETS = 3
MAX_PING_COUNT = 1000  # a typed count beyond this would only stall the simulator's loop


@dataclass(slots=True)
class Reply:
    text: str = ""
    close: bool = False


Question = Callable[[str], Reply]


class Shell:
    """One session's CLI state: mode, context, terminal settings, pager."""

    def __init__(self, device: Device, username: str, *, config_error_rate: float = 0.0,
                 rng: random.Random | None = None) -> None:
        self.device = device
        self.platform: Platform = device.platform
        self.username = username
        self.mode = self.platform.initial_mode
        self.length = self.platform.paging_length
        self.width = 80
        self.config_error_rate = config_error_rate
        self.rng = rng or random.Random()
        self.closed = False
        self.echo = True  # False while a secret is typed
        self._question: Question | None = None
        self._pages: list[str] = []  # lines not yet shown by the pager
        self._candidate: DeviceConfig | None = None
        self._context: dict[str, Any] = {}
        self._failed_secrets = 0
        self._no_more = False

    # -- what the session shows ------------------------------------------------------------
    @property
    def paging(self) -> bool:
        return bool(self._pages)

    def greeting(self) -> str:
        banner = self.platform.banner.format(**self._vars())
        return (banner.replace("\n", NL) + NL if banner else "") + self.prompt_block()

    def prompt(self) -> str:
        return self.platform.modes[self.mode].prompt.format(**self._vars())

    def prompt_block(self) -> str:
        banner = self.platform.modes[self.mode].banner
        if banner is None:
            return self.prompt()
        return NL + (banner + NL if banner else "") + self.prompt()  # "": just a blank line

    def _vars(self) -> dict[str, str]:
        interface = str(self._context.get("interface", ""))
        return {"hostname": self.device.hostname, "username": self.username,
                "model": self.device.model, "version": self.device.os_version,
                # what a submode is editing, for prompts like `(config-if-Et1)#`
                "interface": interface, "interface_short": _short_interface(interface),
                "vlan": str(self._context.get("vlan", ""))}

    # -- input ----------------------------------------------------------------------------
    def handle_line(self, line: str) -> Reply:
        """A line the user typed and ended with Enter (already echoed by the session)."""
        if self._question is not None:
            question, self._question = self._question, None
            self.echo = True
            return question(line)
        line = line.strip()
        if not line:
            return Reply(self.prompt_block())
        self.device.commands += 1
        body, close = self._execute(line)
        if body.startswith(ASK):
            return Reply(body[1:].replace("\n", NL))
        if close:
            self.closed = True
            return Reply(body + NL if body else "", close=True)
        return self._show(body)

    def handle_key(self, key: str) -> Reply:
        """A key pressed at the `--More--` prompt: space = next page, Enter = next line."""
        erase = self.platform.more_erase
        if key == " ":
            return Reply(erase + self._next_page(self.length - 1))
        if key in ("\r", "\n"):
            return Reply(erase + self._next_page(1))
        self._pages = []
        return Reply(erase + self.prompt_block())

    def interrupt(self) -> Reply:
        """Ctrl-C: abandon a pending question (a secret, a confirmation) or the pager."""
        self._question, self._pages, self.echo = None, [], True
        return Reply("^C" + NL + self.prompt_block())

    # -- output paging ---------------------------------------------------------------------
    def _show(self, body: str) -> Reply:
        no_more, self._no_more = self._no_more, False
        if not body:
            return Reply(self.prompt_block())
        lines = body.split("\n")
        if no_more or self.length <= 0 or len(lines) < self.length:
            return Reply(NL.join(lines) + NL + self.prompt_block())
        self._pages = lines
        return Reply(self._next_page(self.length - 1))

    def _next_page(self, count: int) -> str:
        shown, self._pages = self._pages[:count], self._pages[count:]
        text = NL.join(shown) + NL
        if self._pages:
            return text + self.platform.more_prompt
        return text + self.prompt_block()

    # -- commands --------------------------------------------------------------------------
    def _execute(self, line: str) -> tuple[str, bool]:
        command, _, pipe = line.partition(" | ")
        words = command.split()
        found = self.platform.match(words, self.mode)
        if isinstance(found, CommandMatch):
            return self._run(found, pipe.strip())
        if self.platform.modes[self.mode].config and not found.ambiguous:
            return self._configure(command.strip()), False
        return self._reject(words, found.position, found.incomplete, found.ambiguous,
                            line), False

    def _reject(self, words: list[str], position: int, incomplete: bool, ambiguous: bool,
                line: str) -> str:
        errors = self.platform.errors
        if ambiguous:
            return errors["ambiguous"].format(line=line)
        if incomplete or not words:
            marker = " " * (len(self.prompt()) + len(line.rstrip()) + 1) + "^"
            key = "config_invalid" if self._in_config() and "config_invalid" in errors \
                else "incomplete"
            return errors[key].format(marker=marker, token=len(words) + 1, index=len(words),
                                      word="", line=line)
        position = min(position, len(words) - 1)
        offset = 0
        for i in range(position):
            offset = line.index(words[i], offset) + len(words[i])
        offset = line.index(words[position], offset)
        marker = " " * (len(self.prompt()) + offset) + "^"
        # Optional refinements: a first word that names no command at all (`unknown`), and
        # a different wording for configuration modes (`config_invalid`).
        key = "invalid"
        if position == 0 and "unknown" in errors:
            key = "unknown"
        elif self._in_config() and "config_invalid" in errors:
            key = "config_invalid"
        return errors[key].format(marker=marker, token=position + 1, index=position,
                                  word=words[position], line=line)

    def _in_config(self) -> bool:
        return self.platform.modes[self.mode].config

    def _run(self, found: CommandMatch, pipe: str) -> tuple[str, bool]:
        spec = found.spec
        handler = getattr(self, f"_do_{spec.action}", None)
        if handler is None:
            return self.platform.errors["unsupported"].format(line=spec.action), False
        result: str | tuple[str, bool] = handler(spec, found.args)
        body, close = result if isinstance(result, tuple) else (result, False)
        if pipe:
            body = self._pipe(body, pipe, spec, found.args)
        return body, close

    def _render(self, template: str, **extra: Any) -> str:
        view = DeviceView(self.device, self.platform, time.time())
        return self.platform.render(template, d=view, cfg=self._config_for_show(),
                                    username=self.username, **extra)

    def _config_for_show(self) -> DeviceConfig:
        if self._candidate is not None and self.platform.modes[self.mode].config:
            return self._candidate
        return self.device.running

    def _pipe(self, body: str, pipe: str, spec: CommandSpec, args: dict[str, str]) -> str:
        for stage in pipe.split(" | "):
            verb, _, arg = stage.strip().partition(" ")
            verb = verb.lower()
            lines = body.split("\n")
            if "include".startswith(verb) or verb == "match":
                body = "\n".join(ln for ln in lines if re.search(arg, ln))
            elif "exclude".startswith(verb) or verb == "except":
                body = "\n".join(ln for ln in lines if not re.search(arg, ln))
            elif "begin".startswith(verb):
                start = next((i for i, ln in enumerate(lines) if re.search(arg, ln)), len(lines))
                body = "\n".join(lines[start:])
            elif "section".startswith(verb):
                body = "\n".join(_section(lines, arg))
            elif "count".startswith(verb):
                n = sum(1 for ln in lines if re.search(arg or ".", ln))
                body = f"Count: {n} lines"
            elif verb == "no-more":
                self._no_more = True
            elif "display".startswith(verb) and arg == "set" and "set_output" in spec.params:
                body = self._render(str(spec.params["set_output"]), args=args)
            elif stage.strip() in spec.params.get("pipes", {}):
                body = self._render(str(spec.params["pipes"][stage.strip()]), args=args,
                                    params=spec.params)
            else:
                return self.platform.errors["invalid"].format(
                    marker=" " * len(self.prompt()) + "^", token=1, index=0, word=verb,
                    line=stage)
        return body

    # -- command actions (named by `action:` in the platform file) -------------------------
    def _do_output(self, spec: CommandSpec, args: dict[str, str]) -> str:
        assert spec.output is not None
        return self._render(spec.output, args=args, params=spec.params)

    def _do_text(self, spec: CommandSpec, args: dict[str, str]) -> str:
        return str(spec.params.get("text", "")).format(**{**self._vars(), **args})

    def _do_terminal_length(self, spec: CommandSpec, args: dict[str, str]) -> str:
        self.length = int(args.get("int", "0"))
        return self._do_text(spec, args)

    def _do_terminal_width(self, spec: CommandSpec, args: dict[str, str]) -> str:
        self.width = int(args.get("int", "80"))
        return self._do_text(spec, args)

    def _do_enable(self, spec: CommandSpec, args: dict[str, str]) -> str:
        target = str(spec.params.get("mode", "privileged"))
        if self.mode == target:
            return ""
        secret = self.device.enable_secret
        if not secret:
            self.mode = target
            return ""
        self._ask_secret(secret, target)
        return ASK + self.platform.errors["secret_prompt"]

    def _ask_secret(self, secret: str, target: str) -> None:
        def answer(typed: str) -> Reply:
            if typed == secret:
                self.mode, self._failed_secrets = target, 0
                return Reply(self.prompt_block())
            self._failed_secrets += 1
            if self._failed_secrets >= MAX_FAILED_SECRETS:
                self._failed_secrets = 0
                return Reply(self.platform.errors["bad_secret"] + NL + self.prompt_block())
            self._ask_secret(secret, target)
            return Reply(self.platform.errors["secret_prompt"])

        self._question, self.echo = answer, False

    def _do_disable(self, spec: CommandSpec, args: dict[str, str]) -> str:
        self.mode = str(spec.params.get("mode", self.platform.initial_mode))
        return ""

    def _do_configure(self, spec: CommandSpec, args: dict[str, str]) -> str:
        self.mode = str(spec.params["mode"])
        self._context = {}
        if self.platform.candidate_config and self._candidate is None:
            kept = self.device.candidate if self.platform.keep_candidate else None
            self._candidate = kept if kept is not None else self.device.running.clone()
        text = self._do_text(spec, args)
        if self._uncommitted() and "pending_text" in spec.params:
            text += "\n" + str(spec.params["pending_text"])
        return text

    def _do_end(self, spec: CommandSpec, args: dict[str, str]) -> str | tuple[str, bool]:
        return self._leave_config(spec, args)

    def _do_exit(self, spec: CommandSpec, args: dict[str, str]) -> str | tuple[str, bool]:
        mode = self.platform.modes[self.mode]
        if not mode.config:
            return "", True
        parent = self.platform.modes[mode.parent] if mode.parent else None
        if parent is not None and parent.config:
            self.mode = parent.name
            return ""
        return self._leave_config(spec, args)

    def _leave_config(self, spec: CommandSpec, args: dict[str, str]) -> str:
        target = str(spec.params.get("mode", "privileged"))
        if self._uncommitted():
            self._ask_leave(target)
            return ASK + self.platform.errors["uncommitted"]
        self._close_config(target)
        return self._do_text(spec, args) if "text" in spec.params else ""

    def _close_config(self, target: str) -> None:
        """Leave configuration modes; uncommitted changes are dropped unless the platform
        keeps the candidate for the next `configure` (any session)."""
        if self.platform.keep_candidate:
            self.device.candidate = self._candidate if self._uncommitted() else None
        self.mode, self._candidate, self._context = target, None, {}

    def _uncommitted(self) -> bool:
        return self._candidate is not None and self._candidate != self.device.running

    def _ask_leave(self, target: str) -> None:
        def answer(typed: str) -> Reply:
            if typed.strip().lower() in ("", "y", "yes"):
                self._close_config(target)
                return Reply(self.platform.errors["left_uncommitted"].replace("\n", NL) + NL
                             + self.prompt_block())
            return Reply(self.prompt_block())

        self._question = answer

    def _do_save(self, spec: CommandSpec, args: dict[str, str]) -> str:
        confirm = spec.params.get("confirm")
        if confirm:
            def answer(typed: str) -> Reply:
                self.device.save()
                return Reply(str(spec.params.get("text", "")).replace("\n", NL) + NL
                             + self.prompt_block())

            self._question = answer
            return ASK + str(confirm)
        self.device.save()
        return self._do_text(spec, args)

    def _do_commit(self, spec: CommandSpec, args: dict[str, str]) -> str:
        if self._candidate is not None and not spec.params.get("check"):
            self.device.running = self._candidate.clone()
        if "leave" in spec.params:
            self._close_config(str(spec.params["leave"]))
        return self._do_text(spec, args)

    def _do_rollback(self, spec: CommandSpec, args: dict[str, str]) -> str:
        self._candidate = self.device.running.clone()
        return self._do_text(spec, args)

    def _do_ping(self, spec: CommandSpec, args: dict[str, str]) -> str:
        target = args["ip"]
        count = min(int(args.get("int", spec.params.get("count", 5))), MAX_PING_COUNT)
        rtts = self.device.telemetry.rtt_samples(time.time(), int(ipaddress.IPv4Address(target)),
                                                 count)
        return self._render(str(spec.output), args=args, target=target, rtts=rtts, count=count)

    def _do_do(self, spec: CommandSpec, args: dict[str, str]) -> str:
        saved = self.mode
        self.mode = str(spec.params.get("mode", "privileged"))
        try:
            body, _ = self._execute(args["command"])
        finally:
            self.mode = saved
        return body

    def _do_quit(self, spec: CommandSpec, args: dict[str, str]) -> tuple[str, bool]:
        return "", True

    # -- configuration lines ---------------------------------------------------------------
    def _configure(self, line: str) -> str:
        found = self.platform.config_rule(line, self.mode)
        words = line.split()
        if isinstance(found, int):
            return self._reject(words, found, found >= len(words), False, line)
        rule, groups = found
        if self.config_error_rate and self.rng.random() < self.config_error_rate:
            return self.platform.errors["config_failed"].format(
                marker=" " * len(self.prompt()) + "^", token=1, index=0, word=words[0],
                line=line)
        target = self._candidate if self._candidate is not None else self.device.running
        action = CONFIG_ACTIONS[rule.action]
        error = action(self, target, {**rule.params, **groups})
        if error:
            return self._reject(words, len(words) - 1, False, False, line) if error == "invalid" \
                else error
        if rule.enter:
            self.mode = rule.enter
        return ""

    def interface(self, config: DeviceConfig, name: str) -> Interface | None:
        canonical = self.platform.canonical_interface(name)
        if canonical is None:
            return None
        existing = config.interfaces.get(canonical)
        if existing is not None:
            return existing
        if self.platform.interface_kind(canonical) != "logical":
            return None
        created = Interface(name=canonical, port=-1)
        config.interfaces[canonical] = created
        return created


def _short_interface(name: str) -> str:
    """`Ethernet1` -> `Et1`, `Port-Channel2` -> `Po2`: the two-letter form CLIs print."""
    return re.sub(r"^([A-Za-z]{2})[A-Za-z-]*", r"\1", name)


def _section(lines: list[str], pattern: str) -> list[str]:
    out: list[str] = []
    inside = False
    for line in lines:
        if line and not line[0].isspace():
            inside = bool(re.search(pattern, line))
        if inside:
            out.append(line)
    return out


# -- config actions ------------------------------------------------------------------------
ConfigAction = Callable[[Shell, DeviceConfig, dict[str, Any]], str | None]


def _target_interface(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> Interface | None:
    name = g.get("ifname") or shell._context.get("interface")
    return shell.interface(config, str(name)) if name else None


def _act_hostname(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> str | None:
    config.hostname = str(g["hostname"])
    return None


def _act_interface(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> str | None:
    intf = shell.interface(config, str(g["ifname"]))
    if intf is None:
        return "invalid"
    shell._context = {"interface": intf.name}
    return None


def _with_interface(fn: Callable[[Interface, dict[str, Any]], str | None]) -> ConfigAction:
    def action(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> str | None:
        intf = _target_interface(shell, config, g)
        return "invalid" if intf is None else fn(intf, g)

    return action


def _set_description(intf: Interface, g: dict[str, Any]) -> None:
    intf.description = str(g.get("description", "")).strip().strip('"')


def _set_address(intf: Interface, g: dict[str, Any]) -> str | None:
    try:
        if "mask" in g:
            intf.address = ipaddress.IPv4Interface(f"{g['address']}/{g['mask']}")
        else:
            intf.address = ipaddress.IPv4Interface(str(g["address"]))
    except ValueError:
        return "invalid"
    return None


def _set_field(name: str, value: Any) -> Callable[[Interface, dict[str, Any]], None]:
    def apply(intf: Interface, g: dict[str, Any]) -> None:
        setattr(intf, name, value)

    return apply


def _set_access_vlan(intf: Interface, g: dict[str, Any]) -> None:
    intf.access_vlan = int(g["vlan"])


def _set_mtu(intf: Interface, g: dict[str, Any]) -> None:
    intf.mtu = int(g["mtu"])


def _act_vlan(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> str | None:
    vlan = int(g["vlan"])
    if not 1 <= vlan <= 4094:
        return "invalid"
    name = g.get("name")
    config.vlans.setdefault(vlan, f"VLAN{vlan:04d}")
    if name:
        for other, other_name in list(config.vlans.items()):
            if other_name == name and other != vlan:
                del config.vlans[other]
        config.vlans[vlan] = str(name)
    shell._context = {"vlan": vlan}
    return None


def _act_vlan_name(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> str | None:
    vlan = shell._context.get("vlan")
    if vlan is None:
        return "invalid"
    config.vlans[int(vlan)] = str(g["name"])
    return None


def _act_no_vlan(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> str | None:
    if "vlan" in g:
        config.vlans.pop(int(g["vlan"]), None)
    else:
        for vlan, name in list(config.vlans.items()):
            if name == g.get("name"):
                del config.vlans[vlan]
    return None


def _route(g: dict[str, Any]) -> StaticRoute:
    prefix = f"{g['prefix']}/{g['mask']}" if "mask" in g else str(g["prefix"])
    return StaticRoute(prefix=ipaddress.IPv4Network(prefix, strict=False),
                       next_hop=str(g["next_hop"]))


def _act_route_add(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> str | None:
    try:
        route = _route(g)
        ipaddress.IPv4Address(route.next_hop)
    except ValueError:
        return "invalid"
    if route not in config.routes:
        config.routes.append(route)
    return None


def _act_route_del(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> str | None:
    try:
        prefix = _route({**g, "next_hop": g.get("next_hop", "")}).prefix
    except ValueError:
        return "invalid"
    config.routes = [r for r in config.routes if not (
        r.prefix == prefix and (not g.get("next_hop") or r.next_hop == g["next_hop"]))]
    return None


def _act_domain(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> str | None:
    config.domain_name = str(g.get("domain", ""))
    return None


def _act_ntp(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> str | None:
    server = str(g["server"])
    if g.get("remove"):
        config.ntp_servers = [s for s in config.ntp_servers if s != server]
    elif server not in config.ntp_servers:
        config.ntp_servers.append(server)
    return None


def _act_accept(shell: Shell, config: DeviceConfig, g: dict[str, Any]) -> str | None:
    return None


CONFIG_ACTIONS: dict[str, ConfigAction] = {
    "hostname": _act_hostname,
    "interface": _act_interface,
    "description": _with_interface(_set_description),
    "no_description": _with_interface(_set_field("description", "")),
    "address": _with_interface(_set_address),
    "no_address": _with_interface(_set_field("address", None)),
    "shutdown": _with_interface(_set_field("shutdown", True)),
    "no_shutdown": _with_interface(_set_field("shutdown", False)),
    "access_vlan": _with_interface(_set_access_vlan),
    "mtu": _with_interface(_set_mtu),
    "vlan": _act_vlan,
    "vlan_name": _act_vlan_name,
    "no_vlan": _act_no_vlan,
    "route_add": _act_route_add,
    "route_del": _act_route_del,
    "domain": _act_domain,
    "ntp": _act_ntp,
    "accept": _act_accept,
}
