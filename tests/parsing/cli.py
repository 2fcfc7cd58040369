"""Real device output without SSH: the simulator's CLI interpreter, driven line by line."""

from __future__ import annotations

from netfleet.sim.fleet import FleetFactory
from netfleet.sim.shell import Shell
from netfleet.sim.state import Device

PAGING_OFF = {"juniper_junos": "set cli screen-length 0"}


def session(platform: str, seed: int = 3) -> tuple[Device, Shell]:
    """A logged-in, enabled CLI on a fresh device, paging off."""
    device = FleetFactory(seed=seed, base_ip="127.200.0.1", degraded=0.0,
                          platforms=[platform]).make(0)
    shell = Shell(device, device.username)
    if device.enable_secret:
        shell.handle_line("enable")
        shell.handle_line(device.enable_secret)
    shell.handle_line(PAGING_OFF.get(platform, "terminal length 0"))
    return device, shell


def run(shell: Shell, command: str) -> str:
    """The command's output as a driver returns it: without the trailing prompt."""
    text = shell.handle_line(command).text
    return text[: text.rfind("\n") + 1]


def output(platform: str, command: str) -> tuple[Device, str]:
    device, shell = session(platform)
    return device, run(shell, command)
