"""Agents and the recorder over both backends (memory, and Redis on this machine), with the
simulator as the fleet: work goes down through partition streams, results come back up."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from netfleet.backends import Backend, MemoryBackend, RedisBackend, keys
from netfleet.backends.partitions import owned, partition_of
from netfleet.domain.jobs import DeviceResult, DeviceTask, JobKind
from netfleet.domain.ports import Target
from netfleet.drivers import driver_for
from netfleet.engine import Engine
from netfleet.engine import agent as agent_module
from netfleet.engine.agent import SETTLE, Agent
from netfleet.engine.engine import PollOutcome
from netfleet.services.cluster import ClusterWork, Recorder
from tests.conftest import RunningSim

REDIS_URL = os.environ.get("NETFLEET_TEST_REDIS_AGENT", "redis://127.0.0.1:6379/13")
SECRET = Fernet.generate_key()
PARTITIONS = 4
TTL = 1.0


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


class Seen:
    """What the recorder delivered, in delivery order."""

    def __init__(self) -> None:
        self.results: list[DeviceResult] = []
        self.polls: list[PollOutcome] = []
        self.fail_flush = False
        self.flushes = 0

    def on_result(self, result: DeviceResult) -> None:
        self.results.append(result)

    def on_poll(self, outcome: PollOutcome) -> None:
        self.polls.append(outcome)

    async def flush(self) -> bool:
        self.flushes += 1
        if self.fail_flush:
            raise ConnectionError("the database is down")
        return True

    def final(self, job: str) -> DeviceResult | None:
        done = [r for r in self.results if r.job_id == job and r.status.final]
        return done[-1] if done else None


def make_agent(backend: Backend, name: str) -> Agent:
    return Agent(backend, lambda deps: Engine(deps), secret=SECRET, partitions=PARTITIONS,
                 lease_ttl=TTL, name=name,
                 driver_for=lambda target: driver_for(target.platform, target.driver))


def make_recorder(backend: Backend, seen: Seen, name: str = "controller") -> Recorder:
    return Recorder(backend, name=name, partitions=PARTITIONS, on_result=seen.on_result,
                    on_poll=seen.on_poll, flush=seen.flush, lease_ttl=TTL)


def target(sim: RunningSim, device: Any) -> Target:
    return Target(name=device.name, host=device.address, port=sim.port,
                  platform=device.platform.name, username=device.username,
                  password=device.password, enable_secret=device.enable_secret)


async def until(check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def config(job: str, device: str, n: int) -> DeviceTask:
    return DeviceTask(job_id=job, device=device, kind=JobKind.CONFIG,
                      lines=[f"interface Loopback{n}", f" description step-{n}"])


async def test_work_reaches_its_device_and_results_come_back_in_order(
        backend: Backend, sim: RunningSim) -> None:
    devices = sim.add(3, "cisco_ios")
    work = ClusterWork(backend, SECRET, PARTITIONS)
    await work.start()
    seen = Seen()
    recorder, agent = make_recorder(backend, seen), make_agent(backend, "agent-1")
    recorder.start()
    await agent.start()
    try:
        await until(lambda: len(agent.owned) == PARTITIONS, what="every partition owned")
        changes = [config(f"c{i}", devices[0].name, i) for i in range(6)]
        reads = [DeviceTask(job_id=f"r{d.name}", device=d.name, kind=JobKind.COMMAND,
                            commands=["show version"]) for d in devices[1:]]
        await work.submit(changes + reads, {d.name: target(sim, d) for d in devices})
        jobs = [t.job_id for t in changes + reads]
        await until(lambda: all(seen.final(j) for j in jobs), what="every result final")
        finals = [seen.final(j) for j in jobs]
        assert all(r is not None and r.status == "succeeded" and r.attempt == 1
                   for r in finals), finals
        # Changes to one device ran one after another, in submission order.
        ran = [seen.final(t.job_id) for t in changes]
        for before, after in itertools.pairwise(ran):
            assert before is not None and after is not None
            assert before.finished_at is not None and after.started_at is not None
            assert after.started_at >= before.finished_at
        # Every status change came through, in order for each job.
        for job in jobs:
            statuses = [r.status for r in seen.results if r.job_id == job]
            assert statuses == ["running", "succeeded"], statuses
        # Nothing is left pending: every work entry was acknowledged.
        for p in range(PARTITIONS):
            assert await backend.backlog(keys.WORK_GROUP, keys.work(p)) == 0
    finally:
        await agent.stop(drain=1)
        await recorder.stop()


async def test_a_dead_agents_work_is_taken_over_in_order_as_the_next_attempt(
        backend: Backend, sim: RunningSim) -> None:
    [device] = sim.add(1, "cisco_ios")
    sim.set_faults(device, command_delay=1.0)
    work = ClusterWork(backend, SECRET, PARTITIONS)
    await work.start()
    seen = Seen()
    recorder, first = make_recorder(backend, seen), make_agent(backend, "agent-dies")
    recorder.start()
    await first.start()
    second = make_agent(backend, "agent-takes-over")
    try:
        await until(lambda: len(first.owned) == PARTITIONS, what="every partition owned")
        slow = DeviceTask(job_id="slow", device=device.name, kind=JobKind.COMMAND,
                          commands=["show version"], ordered=True)
        behind = [config(f"after{i}", device.name, i) for i in range(3)]
        await work.submit([slow, *behind], {device.name: target(sim, device)})
        await until(lambda: any(r.job_id == "slow" and r.status == "running"
                                for r in seen.results), what="the slow job running")
        await first.abort()  # a crash: nothing released, the lease runs out
        died = time.monotonic()
        await second.start()
        await until(lambda: len(second.owned) == PARTITIONS, timeout=TTL + 10,
                    what="the partitions owned again")
        assert time.monotonic() - died <= TTL + 5
        sim.set_faults(device, command_delay=0.0)
        await until(lambda: all(seen.final(j) for j in ["slow", "after0", "after1", "after2"]),
                    what="everything the dead agent held, done by the next")
        again = seen.final("slow")
        assert again is not None and again.status == "succeeded" and again.attempt == 2
        ran = [seen.final(f"after{i}") for i in range(3)]
        assert all(r is not None and r.status == "succeeded" for r in ran)
        starts = [r.started_at for r in ran if r is not None and r.started_at is not None]
        assert starts == sorted(starts)  # still in submission order
        assert second.stats.taken_over >= 1
    finally:
        await second.stop(drain=1)
        await recorder.stop()


async def test_work_an_old_owners_last_read_got_is_taken_over_not_left_behind(
        backend: Backend, sim: RunningSim) -> None:
    """A read the old owner had in flight across a handover gets an entry after the new
    owner's takeover: the new owner's second takeover, before it reads, runs it."""
    [device] = sim.add(1, "cisco_ios")
    work = ClusterWork(backend, SECRET, PARTITIONS)
    await work.start()
    seen = Seen()
    recorder, agent = make_recorder(backend, seen), make_agent(backend, "new-owner")
    recorder.start()
    number = work.partition(device.name)
    await agent.start()
    try:
        part = await until(lambda: (p := agent.owned.get(number)) is not None and p.taken and p,
                           what="the first takeover done")
        assert not part.reading  # settling: the old owner's read may still be in flight
        await work.submit([config("late", device.name, 1)], {device.name: target(sim, device)})
        got = await backend.read(keys.WORK_GROUP, "old-owner", [keys.work(number)], count=10,
                                 block=0)
        assert [m.body["task"]["job_id"] for m in got] == ["late"]
        await until(lambda: seen.final("late"), what="the entry the old owner read, run")
        done = seen.final("late")
        assert done is not None and done.status == "succeeded" and done.attempt == 2
        assert await backend.backlog(keys.WORK_GROUP, keys.work(number)) == 0
    finally:
        await agent.stop(drain=1)
        await recorder.stop()


class Stalling:
    """A backend whose lease and membership calls (renew, acquire, heartbeat) hang while
    `stalled`: an agent too busy to keep its leases, or cut off from Redis for them, while
    other agents carry on."""

    STALLS = frozenset({"renew", "acquire", "heartbeat"})

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.stalled = False

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.inner, name)
        if name not in self.STALLS:
            return call

        async def stalls(*args: Any, **kwargs: Any) -> Any:
            while self.stalled:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            return await call(*args, **kwargs)

        return stalls


async def test_an_agent_that_cannot_renew_stops_before_another_takes_over(
        backend: Backend, sim: RunningSim) -> None:
    devices = sim.add(4, "cisco_ios")
    work = ClusterWork(backend, SECRET, PARTITIONS)
    await work.start()
    seen = Seen()
    stalling = Stalling(backend)
    recorder = make_recorder(backend, seen)
    stalled = make_agent(cast(Backend, stalling), "agent-stalls")
    other = make_agent(backend, "agent-carries-on")
    recorder.start()
    await stalled.start()
    overlap: set[int] = set()

    async def watch() -> None:  # no partition is ever owned by both
        while True:
            overlap.update(set(stalled.owned) & set(other.owned))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        await until(lambda: all(p.reading for p in stalled.owned.values())
                    and len(stalled.owned) == PARTITIONS, what="every partition owned")
        stalling.stalled = True
        before = stalled.stats.tasks
        await other.start()
        await until(lambda: not stalled.owned, timeout=TTL + 1,
                    what="the stalled agent dropping its partitions")
        await until(lambda: len(other.owned) == PARTITIONS, timeout=TTL + 10,
                    what="the other agent owning them all")
        jobs = [config(f"j{i}", d.name, i) for i, d in enumerate(devices)]
        await work.submit(jobs, {d.name: target(sim, d) for d in devices})
        await until(lambda: all(seen.final(t.job_id) for t in jobs), what="every job done")
        assert all(r is not None and r.status == "succeeded"
                   for r in (seen.final(t.job_id) for t in jobs))
        assert stalled.stats.tasks == before  # it read nothing after its deadline
        assert not overlap, f"partitions owned by two agents at once: {sorted(overlap)}"
        assert stalled.stats.lost >= PARTITIONS
    finally:
        watcher.cancel()
        stalling.stalled = False
        await stalled.stop(drain=1)
        await other.stop(drain=1)
        await recorder.stop()


async def test_a_lease_past_its_deadline_is_never_revived_so_changes_keep_their_order(
        backend: Backend, sim: RunningSim) -> None:
    """A change that ends past its lease's deadline drops the partition there and then, even
    when the deadline watcher is late (a busy event loop). A late renewal once revived the
    lease: the result was dropped but the next change ran and was acknowledged, and the next
    owner ran the older change again after the newer one (seen in a chaos run)."""
    [device] = sim.add(1, "cisco_ios")
    sim.set_faults(device, command_delay=TTL)
    work = ClusterWork(backend, SECRET, PARTITIONS)
    await work.start()
    seen = Seen()
    stalling = Stalling(backend)
    recorder, agent = make_recorder(backend, seen), make_agent(cast(Backend, stalling), "late")

    async def late_watcher() -> None:
        await asyncio.Event().wait()

    agent._expire = late_watcher  # type: ignore[method-assign]
    recorder.start()
    await agent.start()
    try:
        await until(lambda: len(agent.owned) == PARTITIONS
                    and all(p.reading for p in agent.owned.values()),
                    what="every partition owned")
        older, newer = (DeviceTask(job_id=job, device=device.name, kind=JobKind.CONFIG,
                                   lines=["interface Loopback9", f" description {text}"])
                        for job, text in (("older", "older-change"), ("newer", "newer-change")))
        await work.submit([older, newer], {device.name: target(sim, device)})
        await until(lambda: any(r.job_id == "older" and r.status == "running"
                                for r in seen.results), what="the older change running")
        stalling.stalled = True  # renewals hang past the deadline; the change ends after it
        await until(lambda: agent.stats.lost >= 1, timeout=10 * TTL,
                    what="the partition dropped when the change ended past its deadline")
        sim.set_faults(device, command_delay=0.0)
        stalling.stalled = False
        await until(lambda: seen.final("older") and seen.final("newer"),
                    what="both changes done")
        first, second = seen.final("older"), seen.final("newer")
        assert first is not None and first.status == "succeeded" and first.attempt == 2
        assert second is not None and second.status == "succeeded"
        assert first.finished_at is not None and second.started_at is not None
        assert second.started_at >= first.finished_at
        assert sim.run(lambda: device.running.interfaces["Loopback9"].description) \
            == "newer-change"
        for p in range(PARTITIONS):
            assert await backend.backlog(keys.WORK_GROUP, keys.work(p)) == 0
    finally:
        stalling.stalled = False
        await agent.stop(drain=1)
        await recorder.stop()


async def test_a_stopping_agent_keeps_its_leases_while_held_work_finishes(
        backend: Backend, sim: RunningSim) -> None:
    """A drain longer than the lease TTL: the job finishes and is reported under the same
    lease, not taken over and run again by the other agent."""
    [device] = sim.add(1, "cisco_ios")
    sim.set_faults(device, command_delay=2 * TTL)
    work = ClusterWork(backend, SECRET, PARTITIONS)
    await work.start()
    seen = Seen()
    recorder, leaving = make_recorder(backend, seen), make_agent(backend, "agent-leaves")
    recorder.start()
    await leaving.start()
    staying = make_agent(backend, "agent-stays")
    try:
        await until(lambda: len(leaving.owned) == PARTITIONS
                    and all(p.reading for p in leaving.owned.values()),
                    what="every partition owned")
        await work.submit([DeviceTask(job_id="slow", device=device.name,
                                      kind=JobKind.COMMAND, commands=["show version"])],
                          {device.name: target(sim, device)})
        await until(lambda: any(r.job_id == "slow" and r.status == "running"
                                for r in seen.results), what="the slow job running")
        await staying.start()
        await leaving.stop(drain=30 * TTL)
        await until(lambda: seen.final("slow"), what="the slow job done")
        done = seen.final("slow")
        assert done is not None and done.status == "succeeded" and done.attempt == 1
        await until(lambda: len(staying.owned) == PARTITIONS, timeout=TTL + 10,
                    what="the partitions handed over")
        await asyncio.sleep(SETTLE + 0.5)  # a takeover of the job would have run it by now
        assert [r.attempt for r in seen.results if r.job_id == "slow"] == [1, 1]
        assert staying.stats.taken_over == 0
    finally:
        await staying.stop(drain=1)
        await recorder.stop()


async def test_held_work_past_the_hand_over_wait_is_cancelled_and_rerun_in_order_by_the_joiner(
        backend: Backend, sim: RunningSim, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent joins and wins a partition whose change is still running on its owner: the
    owner waits for it HANDOVER_WAIT at most, then cancels it unreported; the joiner runs it
    again (attempt 2) and only then the change queued behind it."""
    monkeypatch.setattr(agent_module, "HANDOVER_WAIT", 1.5)
    [device] = sim.add(1, "cisco_ios")
    number = partition_of(device.name, PARTITIONS)
    joiner = next(n for n in (f"joiner-{i}" for i in itertools.count())
                  if number in owned(n, ["owner"], PARTITIONS))
    sim.set_faults(device, command_delay=3.0)  # each change: 6 s, past the wait
    work = ClusterWork(backend, SECRET, PARTITIONS)
    await work.start()
    seen = Seen()
    recorder, first = make_recorder(backend, seen), make_agent(backend, "owner")
    recorder.start()
    await first.start()
    second = make_agent(backend, joiner)
    try:
        await until(lambda: len(first.owned) == PARTITIONS
                    and all(p.reading for p in first.owned.values()),
                    what="every partition owned")
        changes = [config(f"c{i}", device.name, i) for i in range(2)]
        await work.submit(changes, {device.name: target(sim, device)})
        await until(lambda: any(r.job_id == "c0" and r.status == "running"
                                for r in seen.results), what="the first change running")
        await second.start()
        await until(lambda: number in second.owned, timeout=TTL + 10,
                    what="the joiner owning the device's partition")
        assert seen.final("c0") is None  # cancelled, not reported by the old owner
        sim.set_faults(device, command_delay=0.0)
        await until(lambda: seen.final("c0") and seen.final("c1"), what="both changes done")
        again, then = seen.final("c0"), seen.final("c1")
        assert again is not None and again.status == "succeeded" and again.attempt == 2
        # The owner had read the second change too (queued behind the first): also taken over.
        assert then is not None and then.status == "succeeded" and then.attempt == 2
        assert again.finished_at is not None and then.started_at is not None
        assert then.started_at >= again.finished_at  # still in submission order
        assert second.stats.taken_over >= 1
    finally:
        await second.stop(drain=1)
        await first.stop(drain=1)
        await recorder.stop()


async def test_a_task_handed_over_too_often_is_failed_not_run(backend: Backend) -> None:
    work = ClusterWork(backend, SECRET, PARTITIONS)
    await work.start()
    task = DeviceTask(job_id="cursed", device="nowhere", kind=JobKind.COMMAND,
                      commands=["show version"])
    await work.submit([task], {})
    stream = keys.work(work.partition("nowhere"))
    await backend.read(keys.WORK_GROUP, "gone-1", [stream], count=10, block=0)
    for dead in ("gone-2", "gone-3"):
        await backend.takeover(keys.WORK_GROUP, dead, stream)
    seen = Seen()
    recorder, agent = make_recorder(backend, seen), make_agent(backend, "agent-4")
    recorder.start()
    await agent.start()
    try:
        final = await until(lambda: seen.final("cursed"), what="the cursed task's result")
        assert final.status == "failed" and final.category == "agent_lost"
        assert "3 times" in (final.message or "")
        assert await backend.backlog(keys.WORK_GROUP, stream) == 0
    finally:
        await agent.stop(drain=1)
        await recorder.stop()


async def test_an_agent_joining_takes_its_share_and_the_leaver_gives_it_back(
        backend: Backend) -> None:
    await backend.init_cluster(PARTITIONS * 4)
    one, two = make_agent(backend, "one"), make_agent(backend, "two")
    await one.start()
    try:
        await until(lambda: len(one.owned) == one.partitions, what="one owns everything")
        await two.start()
        await until(lambda: one.owned and two.owned
                    and len(one.owned) + len(two.owned) == one.partitions
                    and not set(one.owned) & set(two.owned), what="shared out")
        shared = set(two.owned)
        await two.stop(drain=1)
        await until(lambda: len(one.owned) == one.partitions, what="given back")
        assert shared <= set(one.owned)
    finally:
        await one.stop(drain=1)


async def test_observations_that_fail_to_apply_go_to_the_dead_letter_stream(
        backend: Backend) -> None:
    seen = Seen()
    recorder = make_recorder(backend, seen)
    stream = keys.observations(1)
    good = {"t": "poll", "agent": "a", "token": 1, "d": "r1", "p": "prof",
            "s": [["cpu_percent", 5.0, time.time(), [], "percent"]], "c": None, "m": None}
    await backend.add({stream: [good, {"t": "nonsense", "token": 1},
                                {"t": "result", "token": 1, "r": {"bad": 1}},
                                {**good, "d": "r2"}]})
    recorder.start()
    try:
        await until(lambda: len(seen.polls) == 2, what="both good observations")
        assert [p.device for p in seen.polls] == ["r1", "r2"]
        await until(lambda: recorder.stats.dead == 2, what="two dead letters")
        found = await backend.entries(keys.DEAD_LETTERS)
        assert len(found) == 2
        assert "unknown observation type 'nonsense'" in found[0].body["reason"]
        assert found[1].body["reason"].startswith("ValidationError")
        assert found[0].body["stream"] == stream
        await until(lambda: recorder.stats.recorded == 4, what="all four acknowledged")
    finally:
        await recorder.stop()
    assert await backend.backlog(keys.RECORD_GROUP, stream) == 0


async def test_the_recorder_acknowledges_nothing_it_could_not_write(backend: Backend) -> None:
    seen = Seen()
    seen.fail_flush = True
    recorder = make_recorder(backend, seen)
    stream = keys.observations(2)
    polls: list[dict[str, Any]] = [
        {"t": "poll", "agent": "a", "token": 1, "d": f"r{i}", "p": "prof", "s": [], "c": None,
         "m": None} for i in range(5)]
    await backend.add({stream: polls})
    recorder.start()
    try:
        await until(lambda: seen.flushes >= 3, what="writes tried and failing")
        assert await backend.backlog(keys.RECORD_GROUP, stream) == 5  # held in the backend
        assert recorder.stats.failures >= 2
        seen.fail_flush = False  # the database is back
        await until(lambda: recorder.stats.recorded == 5, what="written once it is back")
        assert await backend.backlog(keys.RECORD_GROUP, stream) == 0
    finally:
        await recorder.stop()


async def test_an_in_process_recorder_hands_on_what_it_applied_without_waiting_to_write(
        ) -> None:
    """Embedded (memory backend), the stream dies with the buffers anyway: a write that
    fails or is slow must not hold the next observations (a job's final result) back."""
    backend = MemoryBackend()
    seen = Seen()
    seen.fail_flush = True
    recorder = Recorder(backend, name="controller", partitions=PARTITIONS,
                        on_result=seen.on_result, on_poll=seen.on_poll, flush=seen.flush,
                        lease_ttl=TTL, in_process=True)
    stream = keys.observations(2)
    await backend.add({stream: [
        {"t": "poll", "agent": "a", "token": 1, "d": f"r{i}", "p": "prof", "s": [], "c": None,
         "m": None} for i in range(5)]})
    recorder.start()
    try:
        await until(lambda: recorder.stats.recorded == 5, what="applied and acknowledged")
        assert [p.device for p in seen.polls] == [f"r{i}" for i in range(5)]
        assert await backend.backlog(keys.RECORD_GROUP, stream) == 0
        assert seen.flushes == 0 and recorder.stats.failures == 0  # the services write
    finally:
        await recorder.stop()


async def test_a_new_recorder_takes_over_what_a_stopped_one_had_read(
        backend: Backend) -> None:
    stream = keys.observations(3)
    polls: list[dict[str, Any]] = [
        {"t": "poll", "agent": "a", "token": 1, "d": f"r{i}", "p": "prof", "s": [], "c": None,
         "m": None} for i in range(3)]
    await backend.add({stream: polls})
    await backend.read(keys.RECORD_GROUP, "crashed-controller", [stream], count=10, block=0)
    seen = Seen()
    recorder = make_recorder(backend, seen, name="next-controller")
    recorder.start()
    try:
        await until(lambda: len(seen.polls) == 3, what="the crashed recorder's batch")
        assert [p.device for p in seen.polls] == ["r0", "r1", "r2"]
        assert await backend.backlog(keys.RECORD_GROUP, stream) == 0
    finally:
        await recorder.stop()


async def test_observations_from_a_superseded_lease_are_ignored(backend: Backend) -> None:
    seen = Seen()
    recorder = make_recorder(backend, seen)
    stream = keys.observations(0)

    def poll(device: str, token: int) -> dict[str, Any]:
        return {"t": "poll", "agent": "a", "token": token, "d": device, "p": "prof", "s": [],
                "c": None, "m": None}

    await backend.add({stream: [poll("new-owner", 5), poll("old-owner-late", 4),
                                poll("new-owner-again", 5)]})
    recorder.start()
    try:
        await until(lambda: recorder.stats.recorded == 3, what="all three read")
        assert [p.device for p in seen.polls] == ["new-owner", "new-owner-again"]
        assert recorder.stats.fenced == 1
    finally:
        await recorder.stop()
