"""Telemetry profiles from YAML: the built-in ones shipped here, and users' own files.

A file holds one profile (a mapping with `name`) or several under `profiles:`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from netfleet.domain.errors import InvalidInput
from netfleet.domain.telemetry import Profile

__all__ = ["BUILTIN_DIR", "builtin_profiles", "load_profiles"]

BUILTIN_DIR = Path(__file__).parent
_SHOWN_ERRORS = 5


def load_profiles(path: Path) -> list[Profile]:
    """The profiles in one YAML file.

    Raises InvalidInput naming the file and the field (`profiles[1].commands[0].metrics[2].kind`)
    when the file cannot be read, is not YAML, or a profile is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read the profile file: {exc}", field="path",
                           fix="give the path of a readable UTF-8 YAML file") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}", field="path",
                           fix="fix the YAML syntax at the line shown") from exc
    items, prefix = _entries(path, data)
    profiles: list[Profile] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"{prefix}[{i}]" if prefix else ""
        try:
            profile = Profile.model_validate(item)
        except ValidationError as exc:
            raise _invalid(path, where, exc) from None
        if profile.name in seen:
            raise InvalidInput(
                f"{path}: {where}.name: profile {profile.name!r} is already defined at "
                f"{prefix}[{seen[profile.name]}]", field=f"{where}.name",
                fix="give every profile in a file its own name")
        seen[profile.name] = i
        profiles.append(profile)
    return profiles


def _entries(path: Path, data: Any) -> tuple[list[Any], str]:
    if isinstance(data, dict) and "profiles" in data:
        extra = sorted(str(k) for k in data if k != "profiles")
        if extra:
            raise InvalidInput(f"{path}: unexpected top-level keys {extra} next to `profiles`",
                               field=extra[0], fix="put every profile under `profiles:`")
        items = data["profiles"]
        if not isinstance(items, list) or not items:
            raise InvalidInput(f"{path}: profiles: expected a non-empty list of profiles",
                               field="profiles",
                               fix="list profiles under `profiles:`, each as `- name: ...`")
        return items, "profiles"
    if isinstance(data, dict):
        return [data], ""
    raise InvalidInput(f"{path}: expected one profile (a mapping with `name`, `platform`, "
                       f"`commands`) or a list under `profiles:`; found "
                       f"{type(data).__name__}", field="profiles",
                       fix="start the file with `name:` or `profiles:`")


def _invalid(path: Path, where: str, exc: ValidationError) -> InvalidInput:
    problems = []
    for error in exc.errors()[:_SHOWN_ERRORS]:
        field = _join(where, error["loc"])
        problems.append(f"{field or '(profile)'}: {error['msg']}")
    more = len(exc.errors()) - _SHOWN_ERRORS
    if more > 0:
        problems.append(f"... and {more} more")
    first = _join(where, exc.errors()[0]["loc"]) or where or "profile"
    return InvalidInput(f"{path}: invalid profile: " + "; ".join(problems), field=first,
                        fix="correct the field named; see netfleet.domain.telemetry.Profile")


def _join(where: str, loc: tuple[int | str, ...]) -> str:
    out = where
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@functools.cache
def _builtin() -> dict[str, Profile]:
    profiles: dict[str, Profile] = {}
    for path in sorted(BUILTIN_DIR.glob("*.yaml")):
        for profile in load_profiles(path):
            if profile.name in profiles:
                raise InvalidInput(f"{path}: built-in profile {profile.name!r} is defined twice",
                                   field="name", fix="rename one of them")
            profiles[profile.name] = profile
    return profiles


def builtin_profiles() -> dict[str, Profile]:
    """The built-in profiles by name (`<platform>-default`, `<platform>-cpu`); read once."""
    return dict(_builtin())
