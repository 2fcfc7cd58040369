"""One conformance suite, run on both backends: the memory one and Redis on this machine."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from netfleet.backends import Backend, MemoryBackend, RedisBackend, keys
from netfleet.domain.errors import BackendUnavailable

REDIS_URL = os.environ.get("NETFLEET_TEST_REDIS_BACKEND", "redis://127.0.0.1:6379/15")
S1, S2 = keys.work(1), keys.work(2)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    made: Backend
    if request.param == "memory":
        made = MemoryBackend()
    else:
        admin = aioredis.Redis.from_url(REDIS_URL)
        await admin.flushdb()
        await admin.aclose()
        made = RedisBackend(REDIS_URL)
    yield made
    await made.close()


async def test_a_group_hands_each_entry_to_one_consumer_in_order(backend: Backend) -> None:
    await backend.add({S1: [{"n": i} for i in range(5)], S2: [{"n": 99}]})
    first = await backend.read("g", "a", [S1], count=3, block=0)
    second = await backend.read("g", "b", [S1, S2], count=10, block=0)
    assert [m.body["n"] for m in first] == [0, 1, 2]
    assert [m.body["n"] for m in second if m.stream == S1] == [3, 4]
    assert [m.body["n"] for m in second if m.stream == S2] == [99]
    assert await backend.read("g", "a", [S1], count=10, block=0) == []
    ids = [m.id for m in first + second if m.stream == S1]
    assert ids == sorted(ids, key=lambda i: tuple(int(x) for x in i.split("-")))
    # Another group sees everything again.
    assert len(await backend.read("h", "x", [S1], count=10, block=0)) == 5


async def test_unacknowledged_entries_are_taken_over_in_order_with_their_deliveries(
        backend: Backend) -> None:
    await backend.add({S1: [{"n": i} for i in range(4)]})
    read = await backend.read("g", "dead", [S1], count=4, block=0)
    await backend.ack("g", S1, [read[1].id])
    assert await backend.backlog("g", S1) == 3  # three pending, none new
    await backend.add({S1: [{"n": 4}]})
    assert await backend.backlog("g", S1) == 4
    taken = await backend.takeover("g", "alive", S1)
    assert [(m.body["n"], m.deliveries) for m in taken] == [(0, 2), (2, 2), (3, 2)]
    again = await backend.takeover("g", "other", S1)
    assert [m.deliveries for m in again] == [3, 3, 3]
    await backend.ack("g", S1, [m.id for m in again])
    assert await backend.takeover("g", "alive", S1) == []
    [new] = await backend.read("g", "alive", [S1], count=10, block=0)
    assert new.body == {"n": 4} and new.deliveries == 1


async def test_trimmed_pending_entries_are_left_out_of_a_takeover(backend: Backend) -> None:
    await backend.add({S1: [{"n": i} for i in range(3)]})
    await backend.read("g", "a", [S1], count=3, block=0)
    await backend.add({S1: [{"n": i} for i in range(3, 400)]}, maxlen=10)
    assert await backend.length(S1) < 400
    assert await backend.takeover("g", "b", S1) == []  # the pending three were trimmed
    assert await backend.takeover("g", "c", S1) == []  # and acknowledged: gone for good
    left = await backend.read("g", "b", [S1], count=1000, block=0)
    assert left and all(m.body["n"] >= 3 for m in left)


async def test_a_blocked_read_wakes_when_an_entry_arrives(backend: Backend) -> None:
    await backend.read("g", "a", [S1], count=1, block=0)  # the group exists
    reader = asyncio.create_task(backend.read("g", "a", [S1], count=1, block=5))
    await asyncio.sleep(0.2)
    await backend.add({S1: [{"hello": "world"}]})
    [message] = await asyncio.wait_for(reader, 5)
    assert message.body == {"hello": "world"}
    assert await backend.read("g", "a", [S1], count=1, block=0.2) == []


async def test_leases_are_exclusive_fenced_and_expire(backend: Backend) -> None:
    token = await backend.acquire("p1", "a", ttl=0.5)
    assert token is not None
    assert await backend.acquire("p1", "b", ttl=0.5) is None
    assert await backend.acquire("p1", "a", ttl=0.5) is None  # held, by anyone
    assert await backend.lease("p1") == ("a", token)
    assert not await backend.renew("p1", "b", token, ttl=0.5)
    assert not await backend.renew("p1", "a", token + 1, ttl=0.5)
    assert await backend.renew("p1", "a", token, ttl=0.5)
    await asyncio.sleep(0.8)
    assert await backend.lease("p1") is None  # ran out
    assert not await backend.renew("p1", "a", token, ttl=0.5)
    later = await backend.acquire("p1", "b", ttl=5)
    assert later is not None and later > token
    assert not await backend.release("p1", "a", token)
    assert await backend.release("p1", "b", later)
    assert await backend.lease("p1") is None
    latest = await backend.acquire("p1", "a", ttl=5)
    assert latest is not None and latest > later


async def test_members_are_live_until_their_heartbeat_runs_out(backend: Backend) -> None:
    await backend.heartbeat("agent", "a", ttl=0.5)
    await backend.heartbeat("agent", "b", ttl=30)
    await backend.heartbeat("recorder", "c", ttl=30)
    assert await backend.members("agent") == ["a", "b"]
    await asyncio.sleep(0.8)
    assert await backend.members("agent") == ["b"]
    await backend.leave("agent", "b")
    assert await backend.members("agent") == []
    assert await backend.members("recorder") == ["c"]


async def test_the_first_partition_count_stays(backend: Backend) -> None:
    assert await backend.init_cluster(16) == 16
    assert await backend.init_cluster(64) == 16


async def test_desired_state_is_a_snapshot_and_a_change_stream(backend: Backend) -> None:
    await backend.replace_state(3, {"r1": {"v": 1}, "r2": {"v": 1}})
    state, position = await backend.load_state(3)
    assert state == {"r1": {"v": 1}, "r2": {"v": 1}}
    await backend.set_state(3, {"r1": {"v": 2}, "r2": None})
    changes = await backend.follow({keys.state_changes(3): position}, count=10, block=0)
    assert [c.body for c in changes] == [{"device": "r1", "entry": {"v": 2}},
                                         {"device": "r2", "entry": None}]
    state, position = await backend.load_state(3)
    assert state == {"r1": {"v": 2}}
    assert await backend.follow({keys.state_changes(3): position}, count=10, block=0) == []
    await backend.replace_state(3, {"r3": {"v": 3}})
    [marker] = await backend.follow({keys.state_changes(3): position}, count=10, block=0)
    assert marker.body == {"snapshot": True}
    assert (await backend.load_state(3))[0] == {"r3": {"v": 3}}
    assert (await backend.load_state(4))[0] == {}


async def test_a_blocked_follow_wakes_on_a_change(backend: Backend) -> None:
    _, position = await backend.load_state(5)
    follower = asyncio.create_task(
        backend.follow({keys.state_changes(5): position}, count=10, block=5))
    await asyncio.sleep(0.2)
    await backend.set_state(5, {"d": {"x": 1}})
    [change] = await asyncio.wait_for(follower, 5)
    assert change.body["device"] == "d"


async def test_bodies_are_copies(backend: Backend) -> None:
    body = {"list": [1, 2]}
    await backend.add({S1: [body]})
    body["list"].append(3)
    [message] = await backend.read("g", "a", [S1], count=1, block=0)
    assert message.body == {"list": [1, 2]}
    message.body["list"].append(4)
    [again] = await backend.entries(S1)
    assert again.body == {"list": [1, 2]}


async def test_redis_reconnects_after_its_connections_are_killed() -> None:
    backend = RedisBackend(REDIS_URL)
    admin = aioredis.Redis.from_url(REDIS_URL)
    try:
        await backend.ping()
        await admin.client_kill_filter(_type="normal", skipme=True)
        for _ in range(3):  # the next calls reconnect by themselves
            try:
                await backend.heartbeat("agent", "x", ttl=30)
                break
            except BackendUnavailable:
                await asyncio.sleep(0.2)
        assert await backend.members("agent") == ["x"]
    finally:
        await backend.leave("agent", "x")
        await admin.aclose()
        await backend.close()


async def test_an_unreachable_redis_is_reported_without_the_password() -> None:
    backend = RedisBackend("redis://:hunter2@127.0.0.1:1/0")
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await backend.ping()
        assert "hunter2" not in caught.value.message
        assert "127.0.0.1:1" in caught.value.message
    finally:
        await backend.close()
