"""Fixtures for the per-platform simulator tests: each test module names its `PLATFORM`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from netmiko import ConnectHandler
from ntc_templates.parse import parse_output

from netfleet.sim.state import Device
from tests.conftest import RunningSim


@pytest.fixture
def device(sim: RunningSim, request: pytest.FixtureRequest) -> Device:
    """A fresh device of the test module's PLATFORM."""
    return sim.add(1, str(request.module.PLATFORM))[0]


@pytest.fixture
def conn(device: Device,
         netmiko_params: Callable[[Device], dict[str, Any]]) -> Iterator[Any]:
    """A Netmiko connection to it, enabled where the platform has enable."""
    connection = ConnectHandler(**netmiko_params(device))
    if device.enable_secret:
        connection.enable()
    yield connection
    connection.disconnect()


def ntc_parser(platform: str) -> Callable[[str, str], list[dict[str, Any]]]:
    """Parse a command's output with the platform's ntc-templates template."""
    def parse(command: str, output: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = parse_output(platform=platform, command=command,
                                                    data=output)
        return result

    return parse
