"""Driver registry: drivers are found through the `netfleet.drivers` entry-point group.

The built-ins (`asyncssh`, `netmiko`) are declared there exactly as a third-party package would
declare its own, so `get_driver` and `driver_for` treat every driver the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import entry_points

import structlog

from netfleet.domain.errors import InvalidInput
from netfleet.domain.ports import Driver

__all__ = ["GROUP", "available", "driver_for", "get_driver", "register"]

GROUP = "netfleet.drivers"
# Tried in this order when the caller has no preference; other drivers follow by name.
PREFERENCE = ("asyncssh", "netmiko")
LISTED_PLATFORMS = 12  # a driver supporting hundreds is summarised, not listed in full

log = structlog.get_logger("netfleet.drivers")

_factories: dict[str, Callable[[], Driver]] = {}
_instances: dict[str, Driver] = {}


def register(name: str, factory: Callable[[], Driver]) -> None:
    """Add a driver at run time (tests, embedding); the entry-point group is the usual way."""
    _factories[name] = factory
    _instances.pop(name, None)


@functools.cache
def _installed() -> frozenset[str]:
    """Driver names from installed packages' entry points, read once: a scan opens every
    distribution's metadata, far too slow for each of thousands of session opens."""
    return frozenset(ep.name for ep in entry_points(group=GROUP))


def available() -> list[str]:
    """Every driver name, in preference order."""
    names = set(_factories) | _installed()
    preferred = [n for n in PREFERENCE if n in names]
    return preferred + sorted(names - set(preferred))


def get_driver(name: str) -> Driver:
    """The driver registered as `name`; one shared instance per name."""
    driver = _instances.get(name)
    if driver is None:
        driver = _load(name)()
        _instances[name] = driver
    return driver


def driver_for(platform: str, preferred: str | None = None) -> Driver:
    """The driver for `platform`: `preferred` if given (it must support the platform), else
    the first driver in preference order that does."""
    if preferred is not None:
        driver = get_driver(preferred)
        if not driver.supports(platform):
            raise InvalidInput(f"driver {preferred!r} does not support platform {platform!r}; "
                               f"{_describe([preferred])}", field="platform",
                               fix="pick a supported platform or another driver")
        return driver
    names = available()
    for name in names:
        try:
            driver = get_driver(name)
        except InvalidInput as exc:  # one broken plugin must not hide the working ones
            log.warning("driver unavailable", driver=name, error=exc.message)
            continue
        if driver.supports(platform):
            return driver
    raise InvalidInput(f"no driver supports platform {platform!r}; {_describe(names)}",
                       field="platform", fix="use a platform one of the drivers supports")


def _load(name: str) -> Callable[[], Driver]:
    factory = _factories.get(name)
    if factory is not None:
        return factory
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise InvalidInput(f"unknown driver {name!r}; available: {', '.join(available())}",
                           field="driver", fix=f"use one of: {', '.join(available())}")
    try:
        loaded: Callable[[], Driver] = found[0].load()
    except ImportError as exc:
        package = (exc.name or found[0].value.partition(":")[0]).partition(".")[0]
        raise InvalidInput(f"driver {name!r} cannot be loaded: {exc}", field="driver",
                           fix=f"pip install {package}") from exc
    return loaded


def _describe(names: list[str]) -> str:
    """What each driver supports, for error messages."""
    parts = []
    for name in names:
        try:
            driver = get_driver(name)
        except InvalidInput:
            continue
        listing = getattr(driver, "platforms", None)
        if not callable(listing):
            parts.append(f"{name}: (does not list its platforms)")
            continue
        platforms: list[str] = list(listing())
        shown = ", ".join(platforms[:LISTED_PLATFORMS])
        more = len(platforms) - LISTED_PLATFORMS
        parts.append(f"{name}: {shown}" + (f" and {more} more" if more > 0 else ""))
    return "supported: " + "; ".join(parts)
