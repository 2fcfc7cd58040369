"""Drivers are found through entry points; unknown names say what exists."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

import netfleet.drivers as registry
from netfleet.domain.errors import InvalidInput
from netfleet.domain.ports import Driver, Session, Target
from netfleet.drivers import available, driver_for, get_driver
from netfleet.drivers.asyncssh import AsyncSSHDriver
from netfleet.drivers.netmiko import NetmikoDriver


def test_the_builtins_are_registered_as_entry_points() -> None:
    names = {ep.name for ep in entry_points(group=registry.GROUP)}
    assert {"asyncssh", "netmiko"} <= names
    assert available()[:2] == ["asyncssh", "netmiko"]
    assert isinstance(get_driver("asyncssh"), AsyncSSHDriver)
    assert isinstance(get_driver("netmiko"), NetmikoDriver)
    assert get_driver("asyncssh") is get_driver("asyncssh")


def test_an_unknown_driver_names_the_field_and_the_choices() -> None:
    with pytest.raises(InvalidInput) as wrong:
        get_driver("telepathy")
    assert wrong.value.field == "driver"
    assert "asyncssh" in wrong.value.message and "netmiko" in wrong.value.message


def test_platforms_go_to_the_native_driver_first_and_netmiko_covers_the_rest() -> None:
    assert driver_for("cisco_ios").name == "asyncssh"
    assert driver_for("juniper_junos").name == "asyncssh"
    assert driver_for("cisco_ios", preferred="netmiko").name == "netmiko"
    assert driver_for("hp_comware").name == "netmiko"


def test_an_unknown_platform_names_the_field_and_what_is_supported() -> None:
    with pytest.raises(InvalidInput) as wrong:
        driver_for("toaster_os")
    assert wrong.value.field == "platform"
    assert "cisco_ios" in wrong.value.message and "arista_eos" in wrong.value.message

    with pytest.raises(InvalidInput) as wrong:
        driver_for("hp_comware", preferred="asyncssh")
    assert wrong.value.field == "platform"
    assert "juniper_junos" in wrong.value.message

    with pytest.raises(InvalidInput) as wrong:
        driver_for("cisco_ios", preferred="telepathy")
    assert wrong.value.field == "driver"


class _Toaster:
    name = "toaster"

    def supports(self, platform: str) -> bool:
        return platform == "toaster_os"

    async def open(self, target: Target) -> Session:
        raise NotImplementedError


def test_a_driver_registered_at_run_time_is_found_like_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_factories", {})
    monkeypatch.setattr(registry, "_instances", {})
    registry.register("toaster", _Toaster)
    driver: Driver = driver_for("toaster_os")
    assert driver.name == "toaster"
    assert "toaster" in available()
    assert driver_for("cisco_ios").name == "asyncssh"
