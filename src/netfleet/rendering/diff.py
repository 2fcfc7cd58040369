"""Predicting a config change for `dry_run`: the running config, the lines to apply → a diff.

The prediction is textual, not a model of any OS's parser. What it does:

IOS / EOS style (`predict_hierarchical`): a line's indentation places it. A top-level line opens a
section; more-indented lines that follow belong to it (nested sections work the same way).
`exit` closes the current section, `end` returns to the top.
  - a line already present (whitespace-insensitive) is a no-op;
  - `no X` removes the line `X` and every line that starts with `X ` (with its whole section:
    `no interface Loopback9`, `no description`, `no ip address`); if there is none, nothing;
  - `X` where `no X` is shown (`no shutdown` ↔ `shutdown`) replaces it in place;
  - a few single-valued commands replace their old value in place (`SINGLE_VALUED`: hostname,
    description, primary ip address, mtu, ...);
  - anything else is appended at the end of its section; a new top-level line or section goes
    just before `end`, indented like its siblings.

Junos (`predict_set`), against `show configuration | display set` text:
  - `set X` already present is a no-op; a few single-valued leaves (`SET_SINGLE_VALUED`:
    host-name, description, ...) replace the old value in place; otherwise the line is inserted
    after the last line sharing its longest statement prefix (where `display set` would show it);
  - `delete X` removes `set X` and every `set X ...` below it;
  - `commit`, `exit`, `quit`, `top` change nothing; any other statement (edit, rename,
    deactivate, insert, load, ...) raises InvalidInput rather than predicting wrongly.

Limits, said plainly: abbreviations are not expanded (`int gi1/0/1` is not
`interface GigabitEthernet1/0/1`); sub-mode lines must be indented (as `config_lines` keeps
them), because without a grammar an unindented `description x` is a top-level line; defaults the
OS hides or shows (`no ip domain lookup` appearing after `no ip domain lookup` was absent, or a
default line vanishing) are not modelled; multi-valued commands outside the lists above
accumulate (two `set system ntp server` lines both stay, as they should; two `ip helper-address`
lines too; but a single-valued command missing from the list would show both old and new).
The device's own `show | compare` (Junos) or config session diff (EOS) is the authority; this is
the honest preview for platforms that have none.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from netfleet.domain.errors import InvalidInput

SINGLE_VALUED = ("hostname", "description", "ip address", "mtu", "ip mtu", "speed", "duplex",
                 "bandwidth", "name", "switchport mode", "switchport access vlan",
                 "switchport trunk native vlan", "ip domain name", "ip domain-name",
                 "ip default-gateway", "enable secret", "clock timezone", "banner motd")
SET_SINGLE_VALUED = ("host-name", "domain-name", "description", "vlan-id", "mtu", "time-zone")
SET_STYLE_PREFIXES = ("juniper",)  # juniper, juniper_junos, juniper_screenos (netmiko names)

_SET_SINGLE = re.compile(
    r"^(?P<path>set .*? (?:" + "|".join(map(re.escape, SET_SINGLE_VALUED)) + r")) "
    r"(?P<value>\"[^\"]*\"|\S+)$")
_JUNOS_NO_CHANGE = ("commit", "exit", "quit", "top", "up")


def config_diff(running: str, lines: Sequence[str], *, platform: str) -> str:
    """A unified diff of `running` against the predicted config after `lines`; "" if none."""
    before = _lines(running)
    if platform.startswith(SET_STYLE_PREFIXES):
        after = predict_set(running, lines)
    else:
        after = predict_hierarchical(running, lines)
    return "\n".join(difflib.unified_diff(before, after, "running", "candidate", lineterm=""))


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _key(line: str) -> str:
    return " ".join(line.split())


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


# -- IOS / EOS: indentation-structured sections ---------------------------------------------------

@dataclass(eq=False)
class _Node:
    text: str
    children: list[_Node] = field(default_factory=list)

    @property
    def key(self) -> str:
        return _key(self.text)

    @property
    def indent(self) -> str:
        return _indent(self.text)

    def flatten(self, out: list[str]) -> list[str]:
        for child in self.children:
            out.append(child.text)
            child.flatten(out)
        return out


def _tree(lines: Sequence[str]) -> _Node:
    root = _Node("")
    stack: list[tuple[int, _Node]] = [(-1, root)]
    for line in lines:
        if not line.strip():
            # A blank line sits beside the line before it and never opens a section.
            stack[-2 if len(stack) > 1 else -1][1].children.append(_Node(line))
            continue
        depth = len(_indent(line))
        while stack[-1][0] >= depth:
            stack.pop()
        node = _Node(line)
        stack[-1][1].children.append(node)
        stack.append((depth, node))
    return root


def predict_hierarchical(running: str, lines: Sequence[str]) -> list[str]:
    """The running config's lines as they would read after applying `lines` (IOS/EOS style)."""
    before = _lines(running)
    root = _tree(before)
    unit = next((_indent(line) for line in before if line.strip() and _indent(line)), " ")
    stack: list[tuple[int, _Node]] = [(-1, root)]
    for raw in lines:
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("!"):
            continue
        depth = len(_indent(line))
        while stack[-1][0] >= depth:
            stack.pop()
        key = _key(line)
        if key == "end":
            stack = [(-1, root)]
        elif key == "exit" or key.startswith("exit-"):
            if len(stack) > 1:
                stack.pop()
        else:
            node = _apply(root, stack[-1][1], key, unit)
            if node is not None:
                stack.append((depth, node))
    return root.flatten([])


def _apply(root: _Node, parent: _Node, key: str, unit: str) -> _Node | None:
    """Apply one line under `parent`; return the node later, deeper lines belong to."""
    present = _find(parent, key)
    if present is not None:
        return present
    if key.startswith("no "):
        target = key[3:]
        parent.children = [c for c in parent.children
                           if not (c.key == target or c.key.startswith(target + " "))]
        return None
    replaced = _find(parent, "no " + key) or next(
        (c for c in parent.children if _replaces(key, c.key)), None)
    if replaced is not None:
        replaced.text = replaced.indent + key
        return replaced
    node = _Node(_child_indent(root, parent, unit) + key)
    ends = [i for i, c in enumerate(parent.children) if c.key == "end"] if parent is root else []
    parent.children.insert(ends[-1] if ends else len(parent.children), node)
    return node


def _find(parent: _Node, key: str) -> _Node | None:
    return next((c for c in parent.children if c.key == key), None)


def _replaces(new: str, old: str) -> bool:
    for command in SINGLE_VALUED:
        if new.startswith(command + " ") and old.startswith(command + " "):
            # `ip address A M secondary` adds an address; only the primary is single-valued.
            return not (command == "ip address"
                        and (new.endswith(" secondary") or old.endswith(" secondary")))
    return False


def _child_indent(root: _Node, parent: _Node, unit: str) -> str:
    if parent is root:
        return ""
    sibling = next((c for c in parent.children if c.text.strip()), None)
    return sibling.indent if sibling is not None else parent.indent + unit


# -- Junos: `display set` statements ------------------------------------------------------------

def predict_set(running: str, lines: Sequence[str]) -> list[str]:
    """`show configuration | display set` lines as they would read after `lines` (set/delete)."""
    result = _lines(running)
    for line in result:
        if line.rstrip().endswith("{") and not line.lstrip().startswith("#"):
            raise InvalidInput("the running config is in curly-brace form; a Junos dry run needs "
                               "`show configuration | display set` text", field="running",
                               fix="read it with `show configuration | display set`")
    for raw in lines:
        key = _key(raw)
        if not key or key.startswith("#"):
            continue
        verb = key.split()[0]
        if verb == "set":
            _set(result, key)
        elif verb == "delete":
            _delete(result, key.removeprefix("delete").strip())
        elif verb not in _JUNOS_NO_CHANGE:
            raise InvalidInput(f"a dry run cannot predict the Junos statement {raw.strip()!r}",
                               field="lines", fix="express the change as set/delete lines")
    return result


def _set(result: list[str], key: str) -> None:
    keys = [_key(line) for line in result]
    if key in keys:
        return
    single = _SET_SINGLE.match(key)
    if single:
        prefix = single["path"] + " "
        for i, existing in enumerate(keys):
            if existing.startswith(prefix) and _SET_SINGLE.match(existing):
                result[i] = key
                return
    words = key.split()
    best, at = 1, len(result)  # share at least `set <stanza>`, else append
    for i, existing in enumerate(keys):
        shared = _shared_words(words, existing.split())
        if shared > 1 and shared >= best:
            best, at = shared, i + 1
    result.insert(at, key)


def _shared_words(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _delete(result: list[str], path: str) -> None:
    statement = "set " + path
    result[:] = [line for line in result
                 if not (_key(line) == statement or _key(line).startswith(statement + " "))]
