"""The device repository, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from netfleet.domain.errors import Conflict, InvalidInput, NotFound
from netfleet.domain.selectors import Selector
from netfleet.store import Store
from netfleet.store.records import CredentialSpec, DeviceSpec, DeviceUpdate, Facts


def spec(name: str, **kw: Any) -> DeviceSpec:
    values: dict[str, Any] = {"host": "192.0.2.1", "platform": "cisco_ios"} | kw
    return DeviceSpec(name=name, **values)


async def test_a_created_device_reads_back_as_given(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.credentials.create(CredentialSpec("lab", "admin", password="pw"))
        await tx.devices.create(spec("ios-1", host="sw1.example.net", port=2222, site="lab1",
                                     tags=["core", "lab"], vars={"asn": 65001},
                                     credentials="lab"))
    async with store.transaction(readonly=True) as tx:
        device = await tx.devices.get("ios-1")
    assert (device.host, device.port, device.platform, device.driver) == (
        "sw1.example.net", 2222, "cisco_ios", None)
    assert (device.site, device.tags, device.vars, device.credentials) == (
        "lab1", ("core", "lab"), {"asn": 65001}, "lab")
    assert device.created_at.tzinfo is not None
    assert device.facts is None


async def test_names_are_unique(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.devices.create(spec("ios-1"))
    with pytest.raises(Conflict, match="already exists"):
        async with store.transaction() as tx:
            await tx.devices.create(spec("ios-1", host="192.0.2.2"))


async def test_a_device_cannot_name_a_profile_that_does_not_exist(store: Store) -> None:
    with pytest.raises(InvalidInput) as caught:
        async with store.transaction() as tx:
            await tx.devices.create(spec("ios-1", credentials="nope"))
    assert caught.value.field == "credentials"
    async with store.transaction() as tx:
        assert await tx.devices.count() == 0


async def test_unknown_devices_are_not_found(store: Store) -> None:
    async with store.transaction() as tx:
        with pytest.raises(NotFound):
            await tx.devices.get("ghost")
        with pytest.raises(NotFound):
            await tx.devices.delete("ghost")
        with pytest.raises(NotFound):
            await tx.devices.update("ghost", DeviceUpdate(port=23))


async def test_update_changes_only_what_it_names(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.devices.create(spec("ios-1", site="lab1", tags=["core"]))
        before = await tx.devices.get("ios-1")
    async with store.transaction() as tx:
        after = await tx.devices.update("ios-1", DeviceUpdate(port=2200, site=None))
    assert (after.port, after.site, after.tags, after.host) == (2200, None, ("core",),
                                                                "192.0.2.1")
    assert after.updated_at > before.updated_at


async def test_rename_and_rename_onto_another_device(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.devices.create(spec("ios-1"))
        await tx.devices.create(spec("ios-2"))
        renamed = await tx.devices.update("ios-1", DeviceUpdate(name="ios-9"))
    assert renamed.name == "ios-9"
    with pytest.raises(Conflict):
        async with store.transaction() as tx:
            await tx.devices.update("ios-9", DeviceUpdate(name="ios-2"))


async def test_updates_are_validated_like_creates(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.devices.create(spec("ios-1"))
        with pytest.raises(InvalidInput) as caught:
            await tx.devices.update("ios-1", DeviceUpdate(port=70000))
    assert caught.value.field == "port"


async def test_delete_takes_facts_and_history_with_it(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.devices.create(spec("ios-1"))
        await tx.devices.record_facts("ios-1", Facts(model="C9300", os_version="17.9"))
        await tx.devices.delete("ios-1")
        await tx.devices.create(spec("ios-1"))
        assert (await tx.devices.get("ios-1")).facts is None
        assert await tx.devices.facts_history("ios-1") == []


FLEET = [
    spec("ios-00001", site="lab1", tags=["core", "lab"]),
    spec("ios-00002", site="lab1", tags=["edge"]),
    spec("ios-10001", site="lab2", tags=["core"]),
    spec("ios_x1", tags=["odd"]),              # '_' must not act as a wildcard in SQL
    spec("iosXx1", tags=["odd"]),
    spec("eos-00001", platform="arista_eos", site="lab2", tags=["core", "edge"]),
    spec("junos-00001", platform="juniper_junos", tags=[]),
    spec("IOS-00003", tags=["core"]),
]

SELECTORS = [
    [], ["name=ios-0*"], ["name=ios_*"], ["name=ios?x1"], ["name=*-00001"], ["name=IOS-*"],
    ["name=ios-00001"], ["name=ios-00001", "name=eos-*"], ["tag=core"], ["tag=core", "tag=edge"],
    ["tag=lab", "site=lab1"], ["platform=arista_eos"], ["site=lab2", "tag=core"],
    ["name=ios*", "tag=core", "site=lab1"], ["tag=nothing"], ["name=nothing*"],
]


@pytest.mark.parametrize("clauses", SELECTORS, ids=lambda c: " ".join(c) or "all")
async def test_selectors_in_sql_match_exactly_what_matches_says(store: Store,
                                                               clauses: list[str]) -> None:
    selector = Selector.parse(clauses)
    async with store.transaction() as tx:
        await tx.devices.upsert_many(FLEET)
        page = await tx.devices.find(selector, limit=100)
        count = await tx.devices.count(selector)
    expected = sorted(s.name for s in FLEET if selector.matches(s))
    assert [d.name for d in page.items] == expected
    assert count == len(expected)


async def test_pages_walk_the_whole_fleet_in_name_order(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.devices.upsert_many(FLEET)
    seen: list[str] = []
    cursor: str | None = None
    async with store.transaction(readonly=True) as tx:
        while True:
            page = await tx.devices.find(limit=3, after=cursor)
            seen += [d.name for d in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert seen == sorted(s.name for s in FLEET)
    with pytest.raises(InvalidInput):
        async with store.transaction(readonly=True) as tx:
            await tx.devices.find(limit=0)


async def test_upsert_counts_created_updated_and_unchanged(store: Store) -> None:
    async with store.transaction() as tx:
        first = await tx.devices.upsert_many(FLEET[:3])
    async with store.transaction() as tx:
        second = await tx.devices.upsert_many([FLEET[0], spec("ios-00002", port=23),
                                               FLEET[3]])
        device = await tx.devices.get("ios-00002")
    assert (first.created, first.updated, first.unchanged) == (3, 0, 0)
    assert (second.created, second.updated, second.unchanged) == (1, 1, 1)
    assert (device.port, device.tags) == (23, ())


async def test_upsert_refuses_a_device_given_twice(store: Store) -> None:
    async with store.transaction() as tx:
        with pytest.raises(InvalidInput, match="twice"):
            await tx.devices.upsert_many([spec("ios-1"), spec("ios-1", port=23)])


async def test_facts_keep_a_history_of_what_changed(store: Store) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    async with store.transaction() as tx:
        await tx.devices.create(spec("ios-1"))
        first = await tx.devices.record_facts("ios-1", Facts(
            model="C9300", serial="FOC1", os_version="17.9.1", uptime_seconds=100,
            hostname="ios-1", collected_at=t0))
        again = await tx.devices.record_facts("ios-1", Facts(
            model="C9300", serial="FOC1", os_version="17.12.2", uptime_seconds=50,
            hostname="ios-1", collected_at=t0 + timedelta(hours=1)))
        # A collection that could not read the serial keeps the one we know.
        await tx.devices.record_facts("ios-1", Facts(uptime_seconds=60,
                                                     collected_at=t0 + timedelta(hours=2)))
        device = await tx.devices.get("ios-1")
        history = await tx.devices.facts_history("ios-1")
    assert {c.field for c in first} == {"model", "serial", "os_version", "hostname"}
    assert [(c.field, c.old, c.new) for c in again] == [("os_version", "17.9.1", "17.12.2")]
    assert device.facts is not None
    assert (device.facts.serial, device.facts.os_version, device.facts.uptime_seconds) == (
        "FOC1", "17.12.2", 60)
    assert device.facts.collected_at == t0 + timedelta(hours=2)
    assert (history[0].field, history[0].new, history[0].at) == (
        "os_version", "17.12.2", t0 + timedelta(hours=1))
    assert len(history) == 5
    assert all(c.field != "uptime_seconds" for c in history)


async def test_targets_carry_decrypted_credentials_for_the_engine(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.credentials.create(CredentialSpec("lab", "admin", password="pw-1",
                                                   enable_secret="en-1"))
        await tx.devices.create(spec("ios-1", port=2222, credentials="lab"))
        await tx.devices.create(spec("ios-2"))
        targets = await tx.devices.targets(["ios-1", "ios-2", "ghost"])
    target = targets["ios-1"]
    assert target is not None
    assert (target.host, target.port, target.username, target.password,
            target.enable_secret) == ("192.0.2.1", 2222, "admin", "pw-1", "en-1")
    assert "pw-1" not in repr(target)
    assert targets["ios-2"] is None
    assert "ghost" not in targets


@pytest.mark.parametrize("kw, field", [
    ({"name": "ios 1"}, "name"), ({"name": "ios/1"}, "name"), ({"name": "ios-*"}, "name"),
    ({"host": "not a host"}, "host"), ({"port": 0}, "port"), ({"port": "22"}, "port"),
    ({"platform": "Cisco IOS"}, "platform"), ({"tags": "core"}, "tags"),
    ({"tags": ["a b"]}, "tags"), ({"site": "lab 1"}, "site"), ({"vars": {"t": {1, 2}}}, "vars"),
])
def test_bad_device_fields_are_named_with_a_fix(kw: dict[str, Any], field: str) -> None:
    values = {"name": "ios-1", "host": "192.0.2.1", "platform": "cisco_ios"} | kw
    with pytest.raises(InvalidInput) as caught:
        DeviceSpec(**values)
    assert caught.value.field == field
    assert caught.value.fix
