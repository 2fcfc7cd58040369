"""Telemetry polling in the engine, against the simulator over real SSH: fixed-rate ticks on a
stable phase, one session shared with jobs, overruns skipped, failures as outcomes, and plans
that change under running pollers."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import pytest

from netfleet.domain.jobs import DeviceTask, JobKind, Status
from netfleet.domain.ports import Target
from netfleet.domain.telemetry import Profile
from netfleet.drivers import get_driver
from netfleet.engine import Engine, EngineDeps, Limits
from netfleet.engine.actor import PollEntry
from netfleet.engine.engine import PollOutcome
from netfleet.engine.profiles import builtin_profiles
from netfleet.parsing import Parsers
from netfleet.sim.state import Device
from tests.conftest import RunningSim
from tests.engine.test_engine import Recorder

# The built-in one-command profile, polled every second instead of every minute.
CPU = builtin_profiles()["cisco_ios-cpu"].model_copy(update={"interval": 1.0})


@dataclass(eq=False)
class Polls:
    """Every poll outcome, as the telemetry service receives them."""

    outcomes: list[PollOutcome] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, outcome: PollOutcome) -> None:
        self.outcomes.append(outcome)
        self.changed.set()

    def of(self, device: str, profile: str | None = None) -> list[PollOutcome]:
        return [o for o in self.outcomes
                if o.device == device and profile in (None, o.profile)]

    def ok(self, device: str, profile: str | None = None) -> list[PollOutcome]:
        return [o for o in self.of(device, profile) if o.category is None]

    def failed(self, device: str) -> list[PollOutcome]:
        return [o for o in self.of(device) if o.category is not None]

    async def until(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@dataclass(eq=False)
class Rig:
    engine: Engine
    polls: Polls
    jobs: Recorder


class MakeRig(Protocol):
    def __call__(self, *, idle_timeout: float = ..., per_device_sessions: int = ...,
                 global_concurrency: int = ...,
                 pressure: Callable[[], float] | None = ...) -> Rig: ...


@pytest.fixture
async def rigs(sim: RunningSim) -> AsyncIterator[tuple[MakeRig, dict[str, Device]]]:
    """Engines polling the simulator; `devices` is the inventory they resolve names in."""
    devices: dict[str, Device] = {}
    made: list[Engine] = []
    driver = get_driver("asyncssh")

    async def resolve(name: str) -> Target:
        d = devices[name]
        return Target(name=d.name, host=d.address, port=sim.port, platform=d.platform.name,
                      username=d.username, password=d.password, enable_secret=d.enable_secret,
                      command_timeout=10, connect_timeout=10)

    def make(*, idle_timeout: float = 60.0, per_device_sessions: int = 2,
             global_concurrency: int = 512, pressure: Callable[[], float] | None = None) -> Rig:
        polls, jobs = Polls(), Recorder()
        engine = Engine(EngineDeps(resolve=resolve, driver_for=lambda t: driver,
                                   on_result=jobs, parser=Parsers(), on_poll=polls,
                                   poll_pressure=pressure),
                        Limits(per_device_queue=50, idle_timeout=idle_timeout,
                               per_device_sessions=per_device_sessions,
                               global_concurrency=global_concurrency))
        made.append(engine)
        return Rig(engine, polls, jobs)

    try:
        yield make, devices
    finally:
        for engine in made:
            assert engine.pending == sum(len(a.ordered) + len(a.reads)
                                         for a in engine.actors.values())
            await engine.close()
            assert engine.pending == 0


def add(sim: RunningSim, devices: dict[str, Device], count: int = 1) -> list[Device]:
    added = sim.add(count, "cisco_ios")
    devices.update({d.name: d for d in added})
    return added


def job(device: str, *commands: str) -> DeviceTask:
    return DeviceTask(job_id=uuid.uuid4().hex, device=device, kind=JobKind.COMMAND,
                      commands=list(commands))


def cpu_values(outcome: PollOutcome) -> list[float]:
    return [s.value for s in outcome.samples if s.metric == "cpu_percent"]


def phase(ts: float, interval: float = 1.0) -> float:
    return ts % interval


def apart(a: float, b: float, interval: float = 1.0) -> float:
    """How far apart two phases are on the circle of one interval."""
    return abs((a - b + interval / 2) % interval - interval / 2)


def sample_times(outcomes: list[PollOutcome]) -> list[float]:
    """When each poll read the device (its samples' timestamp)."""
    return [o.samples[0].ts for o in outcomes if o.samples]


async def test_polls_tick_every_interval_on_one_session_between_jobs(
        rigs: tuple[MakeRig, dict[str, Device]], sim: RunningSim) -> None:
    make, devices = rigs
    rig = make()
    [device] = add(sim, devices)
    rig.engine.set_polls({device.name: [CPU]})
    await rig.polls.until(lambda: len(rig.polls.ok(device.name)) >= 1)
    during_login = rig.engine.poll_stats.overruns  # ticks a slow first login spanned

    await rig.polls.until(lambda: len(rig.polls.ok(device.name)) >= 2)
    assert rig.engine.sessions_opened == 1
    # Between two polls: the job takes the session the polls use, and the polls go on.
    task = job(device.name, "show clock")
    rig.engine.submit([task])
    [result] = await rig.jobs.wait([(task.job_id, device.name)])
    assert result.status == Status.SUCCEEDED, result.message
    assert result.session_reused
    done = len(rig.polls.ok(device.name))
    await rig.polls.until(lambda: len(rig.polls.ok(device.name)) >= done + 2)

    outcomes = rig.polls.of(device.name)
    assert all(o.category is None and cpu_values(o) for o in outcomes)
    assert rig.engine.sessions_opened == 1
    # Once per tick: consecutive reads are one interval apart, or more by the ticks skipped.
    # (The first read waited for the login, so its phase is not the tick's.)
    steps = [round(b - a) for a, b in itertools.pairwise(sample_times(outcomes)[1:])]
    assert all(step >= 1 for step in steps), steps
    assert sum(steps) - len(steps) == rig.engine.poll_stats.overruns - during_login
    assert rig.engine.poll_stats.ok == len(outcomes)


async def test_ticks_keep_their_phase_across_restarts_and_spread_over_devices(
        rigs: tuple[MakeRig, dict[str, Device]], sim: RunningSim) -> None:
    make, devices = rigs
    fleet = [d.name for d in add(sim, devices, 20)]

    async def polled_phases() -> dict[str, list[float]]:
        rig = make()
        rig.engine.set_polls({name: [CPU] for name in fleet})
        await rig.polls.until(lambda: all(len(rig.polls.ok(n)) >= 3 for n in fleet))
        await rig.engine.close()
        # The first read of each device waited for its login; the later ones are on the tick.
        return {n: [phase(ts) for ts in sample_times(rig.polls.ok(n))[1:]] for n in fleet}

    first = await polled_phases()
    second = await polled_phases()  # the same fleet polled by a new engine, as after a restart
    for name in fleet:
        closest = min(apart(a, b) for a in first[name] for b in second[name])
        assert closest < 0.2, (name, first[name], second[name])
    # Spread: no half of the interval holds every device's phase.
    phases = sorted(first[name][0] for name in fleet)
    gaps = [b - a for a, b in itertools.pairwise(phases)] + [phases[0] + 1 - phases[-1]]
    assert max(gaps) < 0.5, phases


async def test_a_poll_slower_than_its_interval_counts_overruns_and_never_queues_two(
        rigs: tuple[MakeRig, dict[str, Device]], sim: RunningSim) -> None:
    make, devices = rigs
    rig = make()
    [device] = add(sim, devices)
    rig.engine.set_polls({device.name: [CPU]})
    await rig.polls.until(lambda: len(rig.polls.ok(device.name)) >= 1)
    actor = rig.engine.actors[device.name]
    sim.set_faults(device, command_delay=2.5)
    before = len(rig.polls.ok(device.name))

    most = 0

    def polls_of_cpu(queue: object) -> int:
        assert isinstance(queue, set | list)
        return sum(1 for e in queue
                   if isinstance(e, PollEntry) and e.poller.profile.name == CPU.name)

    async def watch() -> None:
        nonlocal most
        while True:
            most = max(most, polls_of_cpu(list(actor.reads)) + polls_of_cpu(actor.running))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        await rig.polls.until(lambda: len(rig.polls.ok(device.name)) >= before + 1)
    finally:
        watcher.cancel()
    assert rig.engine.poll_stats.overruns >= 2
    assert most == 1
    assert all(cpu_values(o) for o in rig.polls.ok(device.name))
    assert not rig.polls.failed(device.name)


async def test_a_recorder_falling_behind_slows_polling_and_full_speed_returns_after(
        rigs: tuple[MakeRig, dict[str, Device]], sim: RunningSim) -> None:
    fill = [0.0]
    make, devices = rigs
    rig = make(pressure=lambda: fill[0])
    [device] = add(sim, devices)
    rig.engine.set_polls({device.name: [CPU]})
    await rig.polls.until(lambda: len(rig.polls.ok(device.name)) >= 1)
    stats = rig.engine.poll_stats
    assert stats.throttled == 0

    fill[0] = 0.95  # nine tenths full: one tick in eight polls
    polled = len(rig.polls.ok(device.name))
    async with asyncio.timeout(30):
        while stats.throttled < 6:  # noqa: ASYNC110 (a counter, no event to wait on)
            await asyncio.sleep(0.1)
    assert len(rig.polls.ok(device.name)) - polled <= 1  # six skipped ticks, at most one poll

    fill[0] = 0.0  # caught up: every tick polls again
    throttled, polled = stats.throttled, len(rig.polls.ok(device.name))
    await rig.polls.until(lambda: len(rig.polls.ok(device.name)) >= polled + 3)
    assert stats.throttled <= throttled + 1  # a tick already past its check may still count
    assert not rig.polls.failed(device.name)


@pytest.mark.parametrize(("fault", "category"), [
    ({"auth_fail": True}, "auth"),
    ({"drop_probability": 1.0}, "session_lost"),
])
async def test_a_failing_device_reports_failed_polls_and_recovers(
        rigs: tuple[MakeRig, dict[str, Device]], sim: RunningSim, fault: dict[str, object],
        category: str) -> None:
    make, devices = rigs
    rig = make()
    [device] = add(sim, devices)
    sim.set_faults(device, **fault)
    rig.engine.set_polls({device.name: [CPU]})
    await rig.polls.until(lambda: len(rig.polls.failed(device.name)) >= 2)
    for outcome in rig.polls.failed(device.name):
        assert outcome.category == category, outcome.message
        assert outcome.message and outcome.samples == []
    assert not rig.polls.ok(device.name)

    sim.set_faults(device)  # the device is fixed: the next polls log in again and read it
    await rig.polls.until(lambda: len(rig.polls.ok(device.name)) >= 1)
    assert all(cpu_values(o) for o in rig.polls.ok(device.name))
    assert rig.engine.poll_stats.failed == len(rig.polls.failed(device.name))


async def test_a_device_in_reconnect_backoff_does_not_hold_up_the_others(
        rigs: tuple[MakeRig, dict[str, Device]], sim: RunningSim) -> None:
    make, devices = rigs
    rig = make(global_concurrency=1)  # one slot: a poll holding it while it waits starves
    locked, healthy = add(sim, devices, 2)
    sim.set_faults(locked, auth_fail=True)
    rig.engine.set_polls({locked.name: [CPU], healthy.name: [CPU]})
    # After its fourth failed login the locked device waits 4 s before the next try; from
    # its next tick on, that poll sits out the wait.
    await rig.polls.until(lambda: len(rig.polls.failed(locked.name)) >= 4)
    await asyncio.sleep(1.0)
    before = len(rig.polls.ok(healthy.name))
    await asyncio.sleep(2.7)  # the healthy device ticks at least twice meanwhile
    assert len(rig.polls.ok(healthy.name)) >= before + 2


async def test_a_changed_profile_restarts_its_poller_and_a_removed_device_is_let_go(
        rigs: tuple[MakeRig, dict[str, Device]], sim: RunningSim) -> None:
    make, devices = rigs
    rig = make(idle_timeout=1.0)  # the reaper closes the session soon after the last poll
    [device] = add(sim, devices)
    lab = CPU.model_copy(update={"name": "lab-cpu"})
    rig.engine.set_polls({device.name: [CPU, lab]})
    await rig.polls.until(lambda: len(rig.polls.ok(device.name, CPU.name)) >= 1
                          and len(rig.polls.ok(device.name, lab.name)) >= 1)
    actor = rig.engine.actors[device.name]
    old, kept = actor.polls[CPU.name], actor.polls[lab.name]
    assert old.schedule is not None and kept.schedule is not None

    busy = busy_profile(CPU)
    rig.engine.set_polls({device.name: [busy, lab]})
    assert actor.polls[lab.name] is kept  # unchanged: same schedule, counters carry on
    assert actor.polls[CPU.name] is not old
    await wait_for(old.schedule.done)
    assert not kept.schedule.done()
    await rig.polls.until(lambda: any(
        s.metric == "cpu_busy_percent" for o in rig.polls.ok(device.name, CPU.name)
        for s in o.samples))

    rig.engine.set_polls({})
    assert not actor.polls
    await wait_for(kept.schedule.done)
    # Once its session has been idle for idle_timeout, the reaper closes it and the actor goes.
    await wait_for(lambda: device.name not in rig.engine.actors)
    await wait_for(lambda: not connected(sim, device))
    await no_more_outcomes(rig)


async def test_a_profile_changed_mid_poll_lets_that_poll_finish_on_its_session(
        rigs: tuple[MakeRig, dict[str, Device]], sim: RunningSim) -> None:
    make, devices = rigs
    rig = make(per_device_sessions=1)
    [device] = add(sim, devices)
    rig.engine.set_polls({device.name: [CPU]})
    await rig.polls.until(lambda: len(rig.polls.ok(device.name)) >= 1)
    actor = rig.engine.actors[device.name]
    sim.set_faults(device, command_delay=1.0)
    await wait_for(lambda: any(isinstance(e, PollEntry) for e in actor.running))
    done = len(rig.polls.ok(device.name))
    logins = rig.engine.sessions_opened

    rig.engine.set_polls({device.name: [busy_profile(CPU)]})  # while that poll runs
    await rig.polls.until(lambda: len(rig.polls.ok(device.name)) >= done + 2)
    assert not rig.polls.failed(device.name)
    assert rig.engine.sessions_opened == logins  # the running poll was not cut off
    sim.set_faults(device)


async def test_close_stops_every_schedule(
        rigs: tuple[MakeRig, dict[str, Device]], sim: RunningSim) -> None:
    make, devices = rigs
    rig = make()
    fleet, schedules = await polled_fleet(rig, sim, devices)
    assert len(schedules) == 3
    await wait_for(lambda: not any(a.running for a in rig.engine.actors.values()))

    await rig.engine.close()
    assert rig.engine.polled_devices == 0
    await all_stopped(rig, sim, fleet, schedules)


async def test_close_returns_with_every_schedule_stopped_even_mid_poll(
        rigs: tuple[MakeRig, dict[str, Device]], sim: RunningSim) -> None:
    make, devices = rigs
    rig = make()
    fleet, schedules = await polled_fleet(rig, sim, devices)
    slow = fleet[-1]  # closed last: nothing else to wait for once its poll is cancelled
    sim.set_faults(slow, command_delay=3.0)
    actor = rig.engine.actors[slow.name]
    await wait_for(lambda: any(isinstance(e, PollEntry) for e in actor.running))

    await rig.engine.close()
    await all_stopped(rig, sim, fleet, schedules)  # the session cut mid-poll closed too


async def test_close_starts_no_poll_that_was_queued_behind_a_running_job(
        rigs: tuple[MakeRig, dict[str, Device]], sim: RunningSim) -> None:
    make, devices = rigs
    rig = make(per_device_sessions=1)
    [device] = add(sim, devices)
    rig.engine.set_polls({device.name: [CPU]})
    await rig.polls.until(lambda: len(rig.polls.ok(device.name)) >= 1)
    sim.set_faults(device, hang_pattern="show clock")  # the job hangs; polls would not
    task = job(device.name, "show clock")
    rig.engine.submit([task])
    actor = rig.engine.actors[device.name]
    # The job holds the only session; the next tick queues a poll behind it.
    await wait_for(lambda: any(isinstance(e, PollEntry) for e in actor.reads))
    opened, polled = rig.engine.sessions_opened, len(rig.polls.outcomes)

    await rig.engine.close()
    [cancelled] = await rig.jobs.wait([(task.job_id, device.name)])
    assert cancelled.status == Status.CANCELLED
    await asyncio.sleep(1.0)  # time enough for a stray poll to log in and read
    assert not actor.running and not actor.reads
    assert len(rig.polls.outcomes) == polled
    assert rig.engine.sessions_opened == opened
    await wait_for(lambda: not connected(sim, device))


async def polled_fleet(rig: Rig, sim: RunningSim, devices: dict[str, Device], count: int = 3
                       ) -> tuple[list[Device], list[asyncio.Task[None] | None]]:
    """`count` devices polled with CPU, each polled once; and their schedules."""
    fleet = add(sim, devices, count)
    rig.engine.set_polls({d.name: [CPU] for d in fleet})
    await rig.polls.until(lambda: all(rig.polls.ok(d.name) for d in fleet))
    return fleet, [p.schedule for a in rig.engine.actors.values() for p in a.polls.values()]


async def no_more_outcomes(rig: Rig) -> None:
    after = len(rig.polls.outcomes)
    await asyncio.sleep(1.2)  # longer than the interval: a live schedule would have ticked
    assert len(rig.polls.outcomes) == after


async def all_stopped(rig: Rig, sim: RunningSim, fleet: list[Device],
                      schedules: list[asyncio.Task[None] | None]) -> None:
    """Every schedule done, no poll after, and every session to the fleet closed."""
    assert len(schedules) == len(fleet)
    assert all(s is not None and s.done() for s in schedules)
    await no_more_outcomes(rig)
    await wait_for(lambda: not any(connected(sim, d) for d in fleet))


def busy_profile(profile: Profile) -> Profile:
    """The same profile (same name) with its metric renamed: a changed profile."""
    command = profile.commands[0]
    metric = command.metrics[0].model_copy(update={"name": "cpu_busy_percent"})
    return profile.model_copy(update={
        "commands": [command.model_copy(update={"metrics": [metric]})]})


def connected(sim: RunningSim, device: Device) -> bool:
    """The device (the simulator) still has an SSH connection from us."""
    return bool(sim.run(lambda: sim.server.connections.get(device.name)))


async def wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    """For state no event announces (the actor's queues, the reaper, the simulator)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
