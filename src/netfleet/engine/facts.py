"""Discovered facts: which command reveals them and which parsed fields hold them, per platform."""

from __future__ import annotations

import re
from typing import Any

FACTS_COMMAND = {"juniper_junos": "show version"}
DEFAULT_FACTS_COMMAND = "show version"

# parsed `show version` field -> fact, per platform (ntc-templates field names)
FIELDS: dict[str, dict[str, str]] = {
    "cisco_ios": {"hostname": "hostname", "version": "os_version", "hardware": "model",
                  "serial": "serial", "uptime": "uptime"},
    "arista_eos": {"hostname": "hostname", "image": "os_version", "model": "model",
                   "serial_number": "serial", "uptime": "uptime"},
    "juniper_junos": {"hostname": "hostname", "junos_version": "os_version", "model": "model",
                      "serial_number": "serial"},
}

_UPTIME_UNITS = {"year": 31_536_000, "week": 604_800, "day": 86_400, "hour": 3_600,
                 "minute": 60, "second": 1}


def facts_command(platform: str) -> str:
    return FACTS_COMMAND.get(platform, DEFAULT_FACTS_COMMAND)


def uptime_seconds(text: str) -> int | None:
    """`1 year, 2 weeks, 3 days, 4 hours, 5 minutes` -> seconds."""
    total = 0
    for amount, unit in re.findall(r"(\d+)\s+(year|week|day|hour|minute|second)s?", text):
        total += int(amount) * _UPTIME_UNITS[unit]
    return total or None


def extract(platform: str, parsed: list[dict[str, Any]]) -> dict[str, Any]:
    """Facts from parsed `show version` records; fields a platform lacks are left out."""
    if not parsed:
        return {}
    record = parsed[0]
    facts: dict[str, Any] = {}
    for field, fact in FIELDS.get(platform, {}).items():
        value = record.get(field)
        if isinstance(value, list):
            value = value[0] if value else None
        if value in (None, ""):
            continue
        facts[fact] = value
    if "uptime" in facts:
        facts["uptime_seconds"] = uptime_seconds(str(facts.pop("uptime")))
    return facts
