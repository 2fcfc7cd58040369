"""Driver test helpers: targets for simulated devices, per-platform cases, opened sessions."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from netfleet.domain.ports import Session, Target
from netfleet.drivers import get_driver
from netfleet.sim.state import Device
from tests.conftest import RunningSim

DRIVERS = ["asyncssh", "netmiko"]


@dataclass(frozen=True)
class Case:
    """What a user does on one platform, in that platform's own CLI."""

    platform: str
    identity: str  # an operational command whose output names the device
    config: tuple[str, ...]  # lines that set a description
    shows: str  # what the running configuration shows afterwards
    other: tuple[str, ...]  # a second, different change
    other_shows: str
    bogus: str  # a line every release refuses


CASES = {
    "cisco_ios": Case(
        "cisco_ios", "show version",
        ("interface GigabitEthernet1/0/2", "description uplink-to-core"),
        "description uplink-to-core",
        ("interface GigabitEthernet1/0/3", "description printer"), "description printer",
        "frobnicate the widgets"),
    "arista_eos": Case(
        # EOS `show version` does not name the host; `show hostname` does.
        "arista_eos", "show hostname",
        ("interface Ethernet2", "description uplink-to-core"), "description uplink-to-core",
        ("interface Ethernet3", "description printer"), "description printer",
        "frobnicate the widgets"),
    "juniper_junos": Case(
        "juniper_junos", "show version",
        ("set interfaces ge-0/0/2 description uplink-to-core",),
        "description uplink-to-core;",
        ("set interfaces ge-0/0/3 description printer",), "description printer;",
        "set frobnicate widgets"),
}


def target_for(sim: RunningSim, device: Device, **changes: object) -> Target:
    target = Target(
        name=device.name, host=device.address, port=sim.port, platform=device.platform.name,
        username=device.username, password=device.password,
        enable_secret=device.enable_secret, connect_timeout=5.0, command_timeout=5.0,
    )
    return dataclasses.replace(target, **changes)  # type: ignore[arg-type]


@asynccontextmanager
async def opened(driver: str, target: Target) -> AsyncIterator[Session]:
    session = await get_driver(driver).open(target)
    try:
        yield session
    finally:
        await session.close()
