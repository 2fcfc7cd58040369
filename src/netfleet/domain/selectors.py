"""Selectors: how a set of devices is named everywhere (jobs, listings, CLI `--where`).

    name=ios-0*  tag=core  platform=cisco_ios  site=lab1

Clauses of different fields are AND-ed. Several `name=` clauses are alternatives (a device has
one name); several `tag=` clauses must all match. Names are exact or globs, where `*` matches any
run of characters and `?` exactly one; nothing else is special and matching is case-sensitive,
so the store can run the same match in SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from netfleet.domain.errors import InvalidInput

FIELDS = ("name", "tag", "platform", "site")
GLOB_CHARS = frozenset("*?")
_EXAMPLE = "write field=value with field one of name, tag, platform, site (e.g. tag=core)"


class DeviceLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def platform(self) -> str: ...
    @property
    def site(self) -> str | None: ...
    @property
    def tags(self) -> Sequence[str]: ...


def is_glob(pattern: str) -> bool:
    return any(c in GLOB_CHARS for c in pattern)


@lru_cache(maxsize=1024)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """The pattern as an anchored regex; unlike fnmatch, `[` is an ordinary character."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _check_value(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"selector {field} must be a non-empty string, not {value!r}",
                           field=field, fix=f"give a value, e.g. {field}=…")
    if value != value.strip() or any(c.isspace() for c in value):
        raise InvalidInput(f"selector {field} {value!r} contains whitespace", field=field,
                           fix="device names, tags, platforms and sites have no spaces")
    return value


@dataclass(frozen=True, slots=True)
class Selector:
    """A set of devices. The empty selector matches every device."""

    names: Sequence[str] = ()
    tags: Sequence[str] = ()
    platform: str | None = None
    site: str | None = None

    def __post_init__(self) -> None:
        # Stored as tuples: a selector is a value (hashable, safe to share).
        object.__setattr__(self, "names", tuple(_check_value("name", n) for n in self.names))
        object.__setattr__(self, "tags", tuple(_check_value("tag", t) for t in self.tags))
        for field in ("platform", "site"):
            value = getattr(self, field)
            if value is not None:
                _check_value(field, value)

    @property
    def is_empty(self) -> bool:
        return not (self.names or self.tags or self.platform or self.site)

    def matches(self, device: DeviceLike) -> bool:
        if self.names and not any(_name_matches(p, device.name) for p in self.names):
            return False
        if self.platform is not None and device.platform != self.platform:
            return False
        if self.site is not None and device.site != self.site:
            return False
        return all(tag in device.tags for tag in self.tags)

    @classmethod
    def parse(cls, clauses: Iterable[str]) -> Selector:
        """`["tag=core", "name=ios-0*"]` -> Selector. Raises InvalidInput naming the clause."""
        names: list[str] = []
        tags: list[str] = []
        single: dict[str, str] = {}
        for clause in clauses:
            field, sep, value = clause.partition("=")
            field = field.strip()
            if not sep:
                raise InvalidInput(f"selector clause {clause!r} has no '='", field="selector",
                                   fix=_EXAMPLE)
            if field not in FIELDS:
                raise InvalidInput(f"selector field {field!r} is unknown", field="selector",
                                   fix=_EXAMPLE)
            value = _check_value(field, value.strip())
            if field == "name":
                names.append(value)
            elif field == "tag":
                tags.append(value)
            elif single.setdefault(field, value) != value:
                raise InvalidInput(f"selector gives {field} twice ({single[field]!r} and "
                                   f"{value!r}); a device has one {field}", field=field,
                                   fix=f"give {field}= once")
        return cls(names=names, tags=tags, platform=single.get("platform"),
                   site=single.get("site"))

    def clauses(self) -> list[str]:
        """The inverse of `parse`."""
        out = [f"name={n}" for n in self.names]
        out += [f"tag={t}" for t in self.tags]
        out += [f"{f}={v}" for f, v in (("platform", self.platform), ("site", self.site)) if v]
        return out

    def __str__(self) -> str:
        return " ".join(self.clauses()) or "all devices"

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "tags": list(self.tags), "platform": self.platform,
                "site": self.site}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selector:
        unknown = set(data) - {"names", "tags", "platform", "site"}
        if unknown:
            raise InvalidInput(f"selector has unknown keys {sorted(unknown)}", field="selector",
                               fix="use names, tags, platform and site")
        for key in ("names", "tags"):
            if not isinstance(data.get(key, []), list | tuple):
                raise InvalidInput(f"selector {key} must be a list", field=key,
                                   fix=f'write e.g. "{key}": ["core"]')
        return cls(names=data.get("names", ()), tags=data.get("tags", ()),
                   platform=data.get("platform"), site=data.get("site"))


def _name_matches(pattern: str, name: str) -> bool:
    if is_glob(pattern):
        return glob_regex(pattern).fullmatch(name) is not None
    return pattern == name
