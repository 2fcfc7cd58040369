"""One conformance suite, run on both backends: the memory one and Redis on this machine.

Redis runs in a database of its own (15, flushed before each test); other tests use others.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from netfleet.backends import Backend, MemoryBackend, RedisBackend, keys
from netfleet.domain.errors import BackendUnavailable

REDIS_URL = os.environ.get("NETFLEET_TEST_REDIS_BACKEND", "redis://127.0.0.1:6379/15")
S1, S2 = keys.work(1), keys.work(2)
TTL = 0.3  # leases and heartbeats that run out during a test
EXPIRED = 0.6  # long enough after TTL for them to have run out


def order(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


@pytest.fixture
async def admin() -> AsyncIterator[aioredis.Redis]:
    """A plain client on the test database, which it empties first."""
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.flushdb()
    yield client
    await client.aclose()


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


@pytest.fixture
async def redis_backend(admin: aioredis.Redis) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(REDIS_URL)
    yield backend
    await backend.close()


# -- streams -------------------------------------------------------------------------------

async def test_a_stream_keeps_its_order_with_increasing_ids(backend: Backend) -> None:
    await backend.add({S1: [{"n": i} for i in range(300)]})  # many share a millisecond
    await backend.add({S1: [{"n": 300}]})
    found = await backend.entries(S1, count=1000)
    assert [m.body["n"] for m in found] == list(range(301))
    assert all(re.fullmatch(r"\d+-\d+", m.id) for m in found)
    ids = [order(m.id) for m in found]
    assert ids == sorted(set(ids))
    assert await backend.length(S1) == 301
    later = await backend.entries(S1, after=found[99].id, count=2)
    assert [m.body["n"] for m in later] == [100, 101]


async def test_a_group_hands_each_entry_to_one_consumer_in_order(backend: Backend) -> None:
    await backend.add({S1: [{"n": i} for i in range(5)], S2: [{"n": 99}]})
    first = await backend.read("g", "a", [S1], count=3, block=0)
    second = await backend.read("g", "b", [S1, S2], count=10, block=0)
    assert [m.body["n"] for m in first] == [0, 1, 2]
    assert all(m.deliveries == 1 for m in first + second)
    assert [m.body["n"] for m in second if m.stream == S1] == [3, 4]
    assert [m.body["n"] for m in second if m.stream == S2] == [99]
    assert await backend.read("g", "a", [S1, S2], count=10, block=0) == []
    # Another group is handed everything again, from the stream's start.
    assert len(await backend.read("h", "x", [S1], count=10, block=0)) == 5


async def test_unacknowledged_entries_are_taken_over_in_order_with_their_deliveries(
        backend: Backend) -> None:
    await backend.add({S1: [{"n": i} for i in range(6)]})
    by_a = await backend.read("g", "a", [S1], count=2, block=0)
    by_b = await backend.read("g", "b", [S1], count=2, block=0)
    await backend.ack("g", S1, [by_a[1].id])
    await backend.add({S1: [{"n": 6}]})
    taken = await backend.takeover("g", "alive", S1)
    assert [(m.body["n"], m.deliveries) for m in taken] == [(0, 2), (2, 2), (3, 2)]
    assert [m.id for m in taken] == [by_a[0].id, *(m.id for m in by_b)]
    again = await backend.takeover("g", "other", S1)
    assert [m.deliveries for m in again] == [3, 3, 3]
    await backend.ack("g", S1, [m.id for m in again])
    assert await backend.takeover("g", "alive", S1) == []
    # Entries never handed out are not pending: reading goes on after the last one read.
    fresh = await backend.read("g", "alive", [S1], count=10, block=0)
    assert [(m.body["n"], m.deliveries) for m in fresh] == [(4, 1), (5, 1), (6, 1)]


async def test_a_takeover_hands_over_every_pending_entry(backend: Backend) -> None:
    await backend.add({S1: [{"n": i} for i in range(2500)]})  # more than one page on Redis
    await backend.read("g", "a", [S1], count=2500, block=0)
    taken = await backend.takeover("g", "b", S1)
    assert [m.body["n"] for m in taken] == list(range(2500))
    assert {m.deliveries for m in taken} == {2}


async def test_a_second_takeover_skips_what_the_first_handed_over(backend: Backend) -> None:
    """An agent takes a partition over twice: the second time it wants only what an old
    owner's last read got meanwhile, not the entries it is running already."""
    await backend.add({S1: [{"n": i} for i in range(4)]})
    await backend.read("g", "old", [S1], count=2, block=0)
    first = await backend.takeover("g", "new", S1)
    late = await backend.read("g", "old", [S1], count=1, block=0)  # the old owner's last read
    second = await backend.takeover("g", "new", S1, skip={m.id for m in first})
    assert [(m.body["n"], m.deliveries) for m in second] == [(2, 2)]
    assert [m.id for m in second] == [m.id for m in late]
    # What was skipped is left as it was: pending for "new", delivered twice.
    again = await backend.takeover("g", "other", S1)
    assert [(m.body["n"], m.deliveries) for m in again] == [(0, 3), (1, 3), (2, 3)]


async def test_a_takeover_in_a_new_group_finds_nothing(backend: Backend) -> None:
    await backend.add({S1: [{"n": 1}]})
    assert await backend.takeover("g", "a", S1) == []
    assert await backend.takeover("g", "a", S2) == []  # no stream either


async def test_trimming_drops_only_what_the_group_has_acknowledged(backend: Backend) -> None:
    await backend.add({S1: [{"n": i} for i in range(6)]})
    read = await backend.read("g", "a", [S1], count=4, block=0)
    await backend.ack("g", S1, [read[0].id, read[1].id, read[3].id])  # 2 still pending
    await backend.trim_done("g", S1)
    assert [m.body["n"] for m in await backend.entries(S1)] == [2, 3, 4, 5]
    [pending] = await backend.takeover("g", "b", S1)
    assert pending.body == {"n": 2}
    await backend.ack("g", S1, [pending.id])
    await backend.trim_done("g", S1)
    left = [m.body["n"] for m in await backend.entries(S1)]
    assert left[-2:] == [4, 5] and 2 not in left  # never handed out: kept
    assert [m.body["n"] for m in await backend.read("g", "b", [S1], count=10, block=0)] == [4, 5]
    await backend.trim_done("g", keys.work(9))  # no stream: nothing happens


async def test_acknowledging_several_streams_at_once(backend: Backend) -> None:
    await backend.add({S1: [{"n": 1}, {"n": 2}], S2: [{"n": 3}]})
    read = await backend.read("g", "a", [S1, S2], count=10, block=0)
    first = [m.id for m in read if m.stream == S1]
    await backend.ack_all("g", {S1: first[:1], S2: [m.id for m in read if m.stream == S2]})
    assert await backend.backlog("g", S1) == 1
    assert await backend.backlog("g", S2) == 0
    [left] = await backend.takeover("g", "b", S1)
    assert left.body == {"n": 2}


async def test_the_backlog_counts_undelivered_and_pending_entries(backend: Backend) -> None:
    assert await backend.backlog("g", S1) == 0
    await backend.add({S1: [{"n": i} for i in range(5)]})
    assert await backend.backlog("g", S1) == 5  # no group yet: it would start at the start
    read = await backend.read("g", "a", [S1], count=2, block=0)
    assert await backend.backlog("g", S1) == 5  # 3 undelivered + 2 pending
    await backend.ack("g", S1, [m.id for m in read])
    assert await backend.backlog("g", S1) == 3
    await backend.read("g", "a", [S1], count=10, block=0)
    assert await backend.backlog("g", S1) == 3
    await backend.takeover("g", "b", S1)
    assert await backend.backlog("g", S1) == 3
    await backend.ack("g", S1, [m.id for m in await backend.entries(S1)])
    assert await backend.backlog("g", S1) == 0


async def test_adding_with_maxlen_trims_the_oldest(backend: Backend) -> None:
    await backend.add({S1: [{"n": i} for i in range(1000)], S2: [{"n": 0}]}, maxlen=100)
    assert 100 <= await backend.length(S1) < 1000  # Redis trims about that many
    left = await backend.entries(S1, count=1000)
    assert [m.body["n"] for m in left] == list(range(1000 - len(left), 1000))
    assert await backend.length(S2) == 1


async def test_trimmed_pending_entries_are_left_out_of_a_takeover(backend: Backend) -> None:
    await backend.add({S1: [{"n": i} for i in range(3)]})
    await backend.read("g", "a", [S1], count=3, block=0)
    await backend.add({S1: [{"n": i} for i in range(3, 400)]}, maxlen=10)
    assert await backend.takeover("g", "b", S1) == []  # the pending three were trimmed
    assert await backend.backlog("g", S1) == await backend.length(S1)  # and acknowledged
    assert await backend.takeover("g", "c", S1) == []
    left = await backend.read("g", "b", [S1], count=1000, block=0)
    assert left and all(m.body["n"] >= 3 for m in left)


async def test_a_blocked_read_wakes_when_an_entry_arrives(backend: Backend) -> None:
    await backend.read("g", "a", [S1], count=1, block=0)  # the group exists
    reader = asyncio.create_task(backend.read("g", "a", [S1, S2], count=1, block=5))
    await asyncio.sleep(0.2)
    assert not reader.done()
    await backend.add({S2: [{"hello": "world"}]})
    [message] = await asyncio.wait_for(reader, 5)
    assert (message.stream, message.body) == (S2, {"hello": "world"})
    assert await backend.read("g", "a", [S1, S2], count=1, block=0.2) == []  # waited, none


async def test_bodies_are_copies(backend: Backend) -> None:
    body = {"list": [1, 2]}
    await backend.add({S1: [body]})
    body["list"].append(3)
    [message] = await backend.read("g", "a", [S1], count=1, block=0)
    assert message.body == {"list": [1, 2]}
    message.body["list"].append(4)
    [again] = await backend.entries(S1)
    assert again.body == {"list": [1, 2]}


# -- leases and membership -----------------------------------------------------------------

async def test_leases_are_exclusive_fenced_and_expire(backend: Backend) -> None:
    token = await backend.acquire("p1", "a", ttl=TTL)
    assert token is not None
    assert await backend.acquire("p1", "b", ttl=TTL) is None
    assert await backend.acquire("p1", "a", ttl=TTL) is None  # held, by anyone
    assert await backend.lease("p1") == ("a", token)
    assert not await backend.renew("p1", "b", token, ttl=TTL)
    assert not await backend.renew("p1", "a", token + 1, ttl=TTL)
    assert await backend.renew("p1", "a", token, ttl=TTL)
    await asyncio.sleep(EXPIRED)
    assert await backend.lease("p1") is None  # ran out
    assert not await backend.renew("p1", "a", token, ttl=TTL)
    later = await backend.acquire("p1", "b c", ttl=5)  # a holder may contain a space
    assert later is not None and later > token
    assert await backend.lease("p1") == ("b c", later)
    assert not await backend.release("p1", "a", token)
    assert not await backend.release("p1", "b c", token)
    assert await backend.release("p1", "b c", later)
    assert await backend.lease("p1") is None
    latest = await backend.acquire("p1", "a", ttl=5)
    assert latest is not None and latest > later
    assert await backend.acquire("p2", "a", ttl=5) is not None  # one lease per name


async def test_members_are_live_until_their_heartbeat_runs_out(backend: Backend) -> None:
    await backend.heartbeat("agent", "b", ttl=TTL)
    await backend.heartbeat("agent", "a", ttl=30)
    await backend.heartbeat("recorder", "c", ttl=30)
    assert await backend.members("agent") == ["a", "b"]
    await asyncio.sleep(EXPIRED)
    assert await backend.members("agent") == ["a"]
    await backend.heartbeat("agent", "b", ttl=30)  # back again
    assert await backend.members("agent") == ["a", "b"]
    await backend.leave("agent", "b")
    assert await backend.members("agent") == ["a"]
    assert await backend.members("recorder") == ["c"]
    assert await backend.members("nobody") == []


async def test_the_first_partition_count_and_epoch_stay(backend: Backend) -> None:
    assert await backend.epoch() is None
    assert await backend.init_cluster(16) == 16
    epoch = await backend.epoch()
    assert epoch is not None and abs(epoch[1] - time.time()) < 5
    assert await backend.init_cluster(64) == 16
    assert await backend.epoch() == epoch


# -- desired state -------------------------------------------------------------------------

async def test_desired_state_is_a_snapshot_and_a_change_stream(backend: Backend) -> None:
    assert await backend.load_state(3) == ({}, "0-0")
    await backend.replace_state(3, {"r1": {"v": 1}, "r2": {"v": 1}})
    state, position = await backend.load_state(3)
    assert state == {"r1": {"v": 1}, "r2": {"v": 1}}
    await backend.set_state(3, {"r1": {"v": 2}, "r2": None})
    changes = await backend.follow({keys.state_changes(3): position}, count=10, block=0)
    assert [c.body for c in changes] == [{"device": "r1", "entry": {"v": 2}},
                                         {"device": "r2", "entry": None}]
    assert [c.stream for c in changes] == [keys.state_changes(3)] * 2
    state, position = await backend.load_state(3)
    assert state == {"r1": {"v": 2}}
    assert position == changes[-1].id
    assert await backend.follow({keys.state_changes(3): position}, count=10, block=0) == []
    await backend.replace_state(3, {"r3": {"v": 3}})
    [marker] = await backend.follow({keys.state_changes(3): position}, count=10, block=0)
    assert marker.body == {"snapshot": True}
    assert await backend.load_state(3) == ({"r3": {"v": 3}}, marker.id)
    assert (await backend.load_state(4))[0] == {}  # partitions are apart
    assert [m.body for m in await backend.entries(keys.state_changes(3))][-1] == marker.body


async def test_a_blocked_follow_wakes_on_a_change(backend: Backend) -> None:
    _, position = await backend.load_state(5)
    follower = asyncio.create_task(
        backend.follow({keys.state_changes(5): position, keys.state_changes(6): "0-0"},
                       count=10, block=5))
    await asyncio.sleep(0.2)
    assert not follower.done()
    await backend.set_state(5, {"d": {"x": 1}})
    [change] = await asyncio.wait_for(follower, 5)
    assert change.body == {"device": "d", "entry": {"x": 1}}
    assert await backend.follow({keys.state_changes(5): change.id}, count=10, block=0.2) == []


# -- Redis only: its connection, and what Redis itself may lose ----------------------------

async def test_redis_reconnects_after_its_connection_is_killed(
        redis_backend: RedisBackend, admin: aioredis.Redis) -> None:
    await redis_backend.ping()
    mine = await redis_backend.client.client_id()  # the pool's one connection
    # Only our connection: other tests and processes use this Redis at the same time.
    assert await admin.client_kill_filter(_id=str(mine), _type="normal") == 1
    await redis_backend.heartbeat("agent", "x", ttl=30)  # the next call, on a new connection
    assert await redis_backend.members("agent") == ["x"]
    assert await redis_backend.client.client_id() != mine


async def test_a_read_makes_the_group_again_when_redis_lost_it(
        redis_backend: RedisBackend, admin: aioredis.Redis) -> None:
    await redis_backend.add({S1: [{"n": 1}]})
    assert len(await redis_backend.read("g", "a", [S1], count=10, block=0)) == 1
    await admin.flushdb()  # as a restart without persistence would
    await redis_backend.add({S1: [{"n": 2}]})
    [message] = await redis_backend.read("g", "a", [S1], count=10, block=0)
    assert message.body == {"n": 2}


async def test_a_new_epoch_starts_when_redis_lost_its_data(
        redis_backend: RedisBackend, admin: aioredis.Redis) -> None:
    await redis_backend.init_cluster(16)
    first = await redis_backend.epoch()
    await admin.flushdb()
    assert await redis_backend.epoch() is None
    assert await redis_backend.init_cluster(32) == 32
    second = await redis_backend.epoch()
    assert first is not None and second is not None and second[0] != first[0]


async def test_a_lease_taken_after_redis_lost_its_data_outranks_every_earlier_one(
        redis_backend: RedisBackend, admin: aioredis.Redis) -> None:
    """Recorders ignore observations under a token lower than one they have seen: after a
    restart without data, new agents' tokens must not start again from 1."""
    tokens = []
    for _ in range(3):
        token = await redis_backend.acquire("p1", "a", ttl=5)
        assert token is not None
        tokens.append(token)
        await redis_backend.release("p1", "a", token)
    assert tokens == sorted(set(tokens))
    await admin.flushdb()
    again = await redis_backend.acquire("p1", "b", ttl=5)
    assert again is not None and again > tokens[-1]


async def test_the_backlog_is_counted_when_redis_cannot_tell_the_lag(
        redis_backend: RedisBackend, admin: aioredis.Redis) -> None:
    await redis_backend.add({S1: [{"n": i} for i in range(5)]})
    await redis_backend.read("g", "a", [S1], count=2, block=0)
    entries = await redis_backend.entries(S1)
    await admin.xdel(S1, entries[3].id)  # a hole after the group's position: lag unknown
    [info] = await admin.xinfo_groups(S1)
    assert info["lag"] is None
    assert await redis_backend.backlog("g", S1) == 2 + 2


async def test_an_unreachable_redis_is_reported_without_the_password() -> None:
    backend = RedisBackend("redis://user:hunter2@127.0.0.1:1/0")
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await backend.ping()
        assert "hunter2" not in str(caught.value)
        assert "redis://127.0.0.1:1/0" in caught.value.message
    finally:
        await backend.close()
