"""Building a fleet: each device's identity, credentials and address, derived from the seed.

The same (seed, index, platform) always yields the same device, so runs are reproducible and a
device added later looks the same whether it is added at start or at run time.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from netfleet.sim.platform import Platform, get_platform
from netfleet.sim.platform import platforms as all_platforms
from netfleet.sim.state import Device
from netfleet.sim.telemetry import degradation_for, mix, unit

NAME_PREFIX = {"cisco_ios": "ios", "arista_eos": "eos", "juniper_junos": "junos"}
USERNAMES = {"juniper_junos": "netops"}


class FleetFactory:
    """Makes devices for a simulator: deterministic identities from (seed, index)."""

    def __init__(self, *, seed: int, base_ip: str, degraded: float,
                 platforms: Sequence[str] | None = None, password: str | None = None,
                 enable_secret: str | None = None, started: float | None = None) -> None:
        if not ipaddress.IPv4Address(base_ip).is_loopback:
            raise ValueError(f"base IP {base_ip} is not a loopback address; use 127.x.y.z")
        self.seed = seed
        self.base_ip = base_ip
        self.degraded = degraded
        self.platforms = [get_platform(p) for p in (platforms or sorted(all_platforms()))]
        self.password = password
        self.enable_secret = enable_secret
        self.started = started if started is not None else time.time()
        self._next_address = int(ipaddress.IPv4Address(base_ip))

    def _allocate(self) -> str:
        while self._next_address & 0xFF in (0, 255):
            self._next_address += 1
        address = ipaddress.IPv4Address(self._next_address)
        if not address.is_loopback:
            raise ValueError(f"no loopback address left after {self.base_ip}; lower --base-ip")
        self._next_address += 1
        return str(address)

    def make(self, index: int, platform: Platform | None = None) -> Device:
        platform = platform or self.platforms[index % len(self.platforms)]
        h = mix(self.seed, index, 0x1D)
        model = platform.models[h % len(platform.models)]
        version = platform.versions[(h >> 8) % len(platform.versions)]
        prefix = NAME_PREFIX.get(platform.name, platform.name.split("_")[0])
        secret = f"{mix(self.seed, index, 0x5E) & 0xFFFFFFFF:08x}"
        return Device(
            index=index,
            name=f"{prefix}-{index + 1:05d}",
            address=self._allocate(),
            platform=platform,
            model=model.name,
            os_version=version,
            serial=platform.serial_format.format(n=mix(self.seed, index, 0x5A) & 0xFFFFFFFF),
            username=USERNAMES.get(platform.name, "admin"),
            password=self.password or f"pw-{secret}",
            enable_secret=(self.enable_secret or f"en-{secret[::-1]}") if platform.has_enable
            else None,
            boot_time=self.started - 3600 - unit(self.seed, index, 0xB0) * 400 * 86_400,
            seed=self.seed,
            degradation=degradation_for(self.seed, index, self.degraded),
        )


def inventory(devices: Iterable[Device], port: int) -> dict[str, Any]:
    """The inventory file: what netfleet imports. Secrets live in a separate file."""
    return {
        "devices": [
            {"name": d.name, "host": d.address, "port": port, "platform": d.platform.name,
             "credentials": d.name, "vars": {"model": d.model, "serial": d.serial}}
            for d in devices
        ],
    }


def credentials(devices: Iterable[Device]) -> dict[str, Any]:
    return {
        "credentials": {
            d.name: {"username": d.username, "password": d.password,
                     **({"enable_secret": d.enable_secret} if d.enable_secret else {})}
            for d in devices
        },
    }


def write_inventory(path: Path, devices: Sequence[Device], port: int) -> Path:
    """Write `path` (inventory) and `<stem>.secrets.yaml` beside it, readable by owner only."""
    secrets_path = path.with_name(f"{path.stem}.secrets.yaml")
    data = inventory(devices, port)
    data["credentials_file"] = secrets_path.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    secrets_path.touch(mode=0o600, exist_ok=True)
    secrets_path.chmod(0o600)
    secrets_path.write_text(yaml.safe_dump(credentials(devices), sort_keys=False))
    return secrets_path
