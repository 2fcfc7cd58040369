"""Importing inventories: the simulator's fleet.yaml as it is written, other YAML, and CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from netfleet.domain.errors import InvalidInput
from netfleet.services.inventory import InventoryError, import_file, load
from netfleet.sim.fleet import FleetFactory, write_inventory
from netfleet.sim.state import Device as SimDevice
from netfleet.store import Store
from netfleet.store.records import CredentialSpec, DeviceUpdate


def sim_fleet(tmp_path: Path, count: int = 30) -> tuple[Path, list[SimDevice]]:
    factory = FleetFactory(seed=11, base_ip="127.3.0.1", degraded=0.0)
    devices = [factory.make(i) for i in range(count)]
    path = tmp_path / "fleet.yaml"
    write_inventory(path, devices, port=2222)
    return path, devices


async def device_count(store: Store) -> tuple[int, int]:
    async with store.transaction(readonly=True) as tx:
        return await tx.devices.count(), len(await tx.credentials.all())


async def test_the_simulators_fleet_file_imports_as_is(store: Store, tmp_path: Path) -> None:
    path, devices = sim_fleet(tmp_path)
    report = await import_file(store, path)
    assert (report.devices.created, report.credentials.created) == (30, 30)
    async with store.transaction(readonly=True) as tx:
        targets = await tx.devices.targets([d.name for d in devices])
        stored = await tx.devices.get(devices[0].name)
    assert stored.vars == {"model": devices[0].model, "serial": devices[0].serial}
    for sim in devices:
        target = targets[sim.name]
        assert target is not None
        assert (target.host, target.port, target.platform, target.username) == (
            sim.address, 2222, sim.platform.name, sim.username)
        assert (target.password, target.enable_secret) == (sim.password, sim.enable_secret)


async def test_importing_again_changes_nothing_and_keeps_what_the_file_omits(
        store: Store, tmp_path: Path) -> None:
    path, devices = sim_fleet(tmp_path, 6)
    await import_file(store, path)
    async with store.transaction() as tx:
        await tx.devices.update(devices[0].name, DeviceUpdate(tags=["core"], site="lab1"))
    again = await import_file(store, path)
    async with store.transaction(readonly=True) as tx:
        kept = await tx.devices.get(devices[0].name)
    assert (again.devices.unchanged, again.credentials.unchanged) == (6, 6)
    assert (kept.tags, kept.site) == (("core",), "lab1")


async def test_yaml_with_inline_credentials(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "lab.yml"
    path.write_text(
        "credentials:\n"
        "  lab: {username: admin, password: 1234, ssh_key: KEYTEXT}\n"
        "devices:\n"
        "  - {name: r1, host: 192.0.2.1, platform: juniper_junos, credentials: lab,\n"
        "     site: lab1, tags: [core, edge], driver: netmiko}\n"
        "  - {name: r2, host: r2.example.net, port: 830, platform: cisco_xr}\n")
    report = await import_file(store, path)
    async with store.transaction(readonly=True) as tx:
        r1, r2 = await tx.devices.get("r1"), await tx.devices.get("r2")
        secrets = await tx.credentials.reveal("lab")
    assert report.devices.created == 2
    assert (r1.credentials, r1.site, r1.tags, r1.driver, r1.port) == (
        "lab", "lab1", ("core", "edge"), "netmiko", 22)
    assert (r2.port, r2.credentials) == (830, None)
    assert (secrets.password, secrets.ssh_key) == ("1234", "KEYTEXT")


async def test_csv_with_tags_and_an_existing_profile(store: Store, tmp_path: Path) -> None:
    async with store.transaction() as tx:
        await tx.credentials.create(CredentialSpec("lab", "admin", password="pw"))
    path = tmp_path / "fleet.csv"
    path.write_text(
        "name,host,port,platform,site,tags,credentials\n"
        "ios-1,192.0.2.1,22,cisco_ios,lab1,core;edge,lab\n"
        "\n"
        "eos-1,192.0.2.2,,arista_eos,,,\n")
    report = await import_file(store, path)
    async with store.transaction(readonly=True) as tx:
        ios, eos = await tx.devices.get("ios-1"), await tx.devices.get("eos-1")
    assert report.devices.created == 2
    assert (ios.tags, ios.site, ios.credentials) == (("core", "edge"), "lab1", "lab")
    assert (eos.port, eos.tags, eos.site, eos.credentials) == (22, (), None, None)


async def test_every_problem_is_reported_and_nothing_is_imported(store: Store,
                                                                tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "credentials:\n"
        "  lab: {username: admin, password: pw}\n"
        "devices:\n"
        "  - {name: ok-1, host: 192.0.2.1, platform: cisco_ios, credentials: lab}\n"
        "  - {name: r2, host: 192.0.2.2, platform: cisco_ios, port: 99999}\n"
        "  - {name: r3, platform: cisco_ios}\n"
        "  - {name: r4, host: 192.0.2.4, platfrom: cisco_ios}\n"
        "  - {name: ok-1, host: 192.0.2.5, platform: cisco_ios}\n")
    with pytest.raises(InventoryError) as caught:
        await import_file(store, path)
    fields = [p.field for p in caught.value.problems]
    assert fields == ["devices[1].port", "devices[2].host", "devices[3]", "devices[4].name"]
    message = str(caught.value)
    assert "4 problems; nothing was imported" in message
    assert "platfrom" in message and "65535" in message
    assert await device_count(store) == (0, 0)


async def test_a_missing_profile_found_in_the_store_rolls_everything_back(
        store: Store, tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "credentials:\n"
        "  lab: {username: admin, password: pw}\n"
        "devices:\n"
        "  - {name: r1, host: 192.0.2.1, platform: cisco_ios, credentials: lab}\n"
        "  - {name: r2, host: 192.0.2.2, platform: cisco_ios, credentials: nowhere}\n")
    with pytest.raises(InventoryError) as caught:
        await import_file(store, path)
    assert caught.value.field == "devices[1].credentials"
    assert "'nowhere' does not exist" in str(caught.value)
    assert await device_count(store) == (0, 0)


@pytest.mark.parametrize("name, text, field, says", [
    ("f.csv", "name,host,platform,colour\n", "line 1", "unknown columns ['colour']"),
    ("f.csv", "name,host\n", "line 1", "missing columns ['platform']"),
    ("f.csv", "name,host,port,platform\nr1,192.0.2.1,ssh,cisco_ios\n", "line 2.port",
     "not a number"),
    ("f.csv", "name,host,platform\nr1,192.0.2.1,cisco_ios\nr1,192.0.2.2,cisco_ios\n",
     "line 3.name", "also at line 2"),
    ("f.yaml", "devices:\n  - {name: r1\n", "line 3", "not valid YAML"),
    ("f.yaml", "devices: []\ncredentials_file: missing.yaml\n", "credentials_file",
     "does not exist"),
    ("f.yaml", "- just\n- a list\n", "(top)", "not a mapping"),
    ("f.yaml", "credentials:\n  lab: {password: pw}\n", "credentials.lab.username",
     "not valid"),
    ("f.txt", "", "path", "suffix"),
])
def test_bad_files_name_the_row_and_field(tmp_path: Path, name: str, text: str, field: str,
                                          says: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        load(path)
    assert caught.value.field == field
    assert says in str(caught.value)
    assert caught.value.fix
