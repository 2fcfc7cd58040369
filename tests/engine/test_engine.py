"""The engine against the simulator over real SSH: order, parallel reads, reuse, failures."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from netfleet.domain.errors import Overloaded
from netfleet.domain.jobs import DeviceResult, DeviceTask, JobKind, Status
from netfleet.domain.ports import Target
from netfleet.drivers import get_driver
from netfleet.engine import Engine, EngineDeps, Limits
from netfleet.parsing import Parsers
from netfleet.sim.state import Device
from tests.conftest import RunningSim


class Recorder:
    """Collects every result update, as the store's recorder would."""

    def __init__(self) -> None:
        self.updates: list[DeviceResult] = []
        self.final: dict[tuple[str, str], DeviceResult] = {}
        self.changed = asyncio.Event()

    def __call__(self, result: DeviceResult) -> None:
        self.updates.append(result)
        if result.status not in (Status.QUEUED, Status.RUNNING):
            self.final[(result.job_id, result.device)] = result
        self.changed.set()

    async def wait(self, keys: Iterable[tuple[str, str]], timeout: float = 60) -> list[
            DeviceResult]:
        keys = list(keys)
        async with asyncio.timeout(timeout):
            while not all(k in self.final for k in keys):
                self.changed.clear()
                await self.changed.wait()
        return [self.final[k] for k in keys]


def job_id() -> str:
    return uuid.uuid4().hex


@pytest.fixture
async def engine(sim: RunningSim) -> AsyncIterator[tuple[Engine, Recorder, dict[str, Device]]]:
    devices: dict[str, Device] = {}
    recorder = Recorder()

    async def resolve(name: str) -> Target:
        d = devices[name]
        return Target(name=d.name, host=d.address, port=sim.port, platform=d.platform.name,
                      username=d.username, password=d.password, enable_secret=d.enable_secret,
                      command_timeout=3, connect_timeout=5)

    driver = get_driver("asyncssh")
    eng = Engine(EngineDeps(resolve=resolve, driver_for=lambda t: driver, on_result=recorder,
                            parser=Parsers()),
                 Limits(per_device_queue=50, idle_timeout=60))
    yield eng, recorder, devices
    # The engine's count of queued work agrees with its actors' queues, whatever the test did.
    assert eng.pending == sum(len(a.ordered) + len(a.reads) for a in eng.actors.values())
    await eng.close()
    assert eng.pending == 0


def add(sim: RunningSim, devices: dict[str, Device], platform: str, count: int = 1) -> list[
        Device]:
    added = sim.add(count, platform)
    devices.update({d.name: d for d in added})
    return added


async def run(eng: Engine, rec: Recorder, *tasks: DeviceTask) -> list[DeviceResult]:
    eng.submit(tasks)
    return await rec.wait((t.job_id, t.device) for t in tasks)


@pytest.mark.parametrize("platform", ["cisco_ios", "arista_eos", "juniper_junos"])
async def test_command_job_returns_raw_and_parsed_output(
        engine: Any, sim: RunningSim, platform: str) -> None:
    eng, rec, devices = engine
    [device] = add(sim, devices, platform)
    [result] = await run(eng, rec, DeviceTask(job_id=job_id(), device=device.name,
                                              kind=JobKind.COMMAND, commands=["show version"]))
    assert result.status == Status.SUCCEEDED, result.message
    [out] = result.outputs
    assert device.os_version in out.output
    assert out.parsed, out.parse_error
    assert device.os_version in str(out.parsed[0])
    assert result.attempt == 1 and result.started_at and result.finished_at


async def test_config_jobs_run_in_submission_order_on_one_session(
        engine: Any, sim: RunningSim) -> None:
    eng, rec, devices = engine
    [device] = add(sim, devices, "cisco_ios")
    sim.set_faults(device, command_delay=0.02)
    tasks = [DeviceTask(job_id=job_id(), device=device.name, kind=JobKind.CONFIG,
                        lines=["interface GigabitEthernet1/0/2", f"description step-{i}"])
             for i in range(12)]
    results = await run(eng, rec, *tasks)
    assert all(r.status == Status.SUCCEEDED for r in results)
    for earlier, later in itertools.pairwise(results):
        assert earlier.finished_at and later.started_at
        assert later.started_at >= earlier.finished_at  # one after another, in order
    assert sim.run(lambda: device.running.interfaces["GigabitEthernet1/0/2"].description) \
        == "step-11"
    assert sum(r.session_reused for r in results) == len(results) - 1
    assert eng.sessions_opened == 1


async def test_reads_do_not_wait_behind_a_long_change_unless_ordered(
        engine: Any, sim: RunningSim) -> None:
    eng, rec, devices = engine
    [device] = add(sim, devices, "cisco_ios")
    sim.set_faults(device, command_delay=0.3)
    change = DeviceTask(job_id=job_id(), device=device.name, kind=JobKind.CONFIG,
                        lines=[f"vlan {100 + i}" for i in range(6)])
    read = DeviceTask(job_id=job_id(), device=device.name, kind=JobKind.COMMAND,
                      commands=["show clock"])
    ordered = DeviceTask(job_id=job_id(), device=device.name, kind=JobKind.COMMAND,
                         commands=["show vlan"], ordered=True)
    changed, read_result, ordered_result = await run(eng, rec, change, read, ordered)
    assert read_result.finished_at and changed.finished_at and ordered_result.started_at
    assert read_result.finished_at < changed.finished_at
    assert ordered_result.started_at >= changed.finished_at
    assert "VLAN0105" in ordered_result.outputs[0].output


async def test_device_failures_are_results_with_honest_categories(
        engine: Any, sim: RunningSim) -> None:
    eng, rec, devices = engine
    locked, hung, picky = add(sim, devices, "cisco_ios", 3)
    sim.set_faults(locked, auth_fail=True)
    sim.set_faults(hung, hang_pattern="show clock")
    auth, timeout, rejected = await run(
        eng, rec,
        DeviceTask(job_id=job_id(), device=locked.name, kind=JobKind.COMMAND,
                   commands=["show clock"]),
        DeviceTask(job_id=job_id(), device=hung.name, kind=JobKind.COMMAND,
                   commands=["show clock"]),
        DeviceTask(job_id=job_id(), device=picky.name, kind=JobKind.CONFIG,
                   lines=["interface GigabitEthernet1/0/1", "frobnicate now"]),
    )
    assert (auth.status, auth.category) == (Status.FAILED, "auth")
    assert (timeout.status, timeout.category) == (Status.FAILED, "timeout")
    assert (rejected.status, rejected.category) == (Status.FAILED, "rejected")
    assert "frobnicate now" in (rejected.message or "") + rejected.outputs[0].command
    [after] = await run(eng, rec, DeviceTask(job_id=job_id(), device=picky.name,
                                             kind=JobKind.COMMAND, commands=["show clock"]))
    assert after.status == Status.SUCCEEDED and after.session_reused


async def test_job_timeout_marks_timed_out(engine: Any, sim: RunningSim) -> None:
    eng, rec, devices = engine
    [device] = add(sim, devices, "cisco_ios")
    sim.set_faults(device, command_delay=2.0)
    [result] = await run(eng, rec, DeviceTask(job_id=job_id(), device=device.name,
                                              kind=JobKind.COMMAND, commands=["show clock"],
                                              timeout=0.5))
    assert (result.status, result.category) == (Status.TIMED_OUT, "timeout")


async def test_a_dead_reused_session_is_reopened_as_attempt_two(
        engine: Any, sim: RunningSim) -> None:
    eng, rec, devices = engine
    [device] = add(sim, devices, "arista_eos")
    task = DeviceTask(job_id=job_id(), device=device.name, kind=JobKind.COMMAND,
                      commands=["show clock"])
    [first] = await run(eng, rec, task)
    assert first.status == Status.SUCCEEDED

    def cut() -> None:  # the device reboots under us: every connection to it drops
        for conn in list(sim.server.connections.get(device.name, ())):
            conn.abort()

    sim.run(cut)
    await asyncio.sleep(0.2)
    [second] = await run(eng, rec, task.model_copy(update={"job_id": job_id()}))
    assert second.status == Status.SUCCEEDED, second.message
    assert second.attempt in (1, 2)  # 2 when the dead session was noticed on use


async def test_full_queues_refuse_the_whole_job(engine: Any, sim: RunningSim) -> None:
    eng, rec, devices = engine
    [device] = add(sim, devices, "cisco_ios")
    sim.set_faults(device, command_delay=0.2)
    tasks = [DeviceTask(job_id=job_id(), device=device.name, kind=JobKind.CONFIG,
                        lines=["vlan 7"]) for _ in range(60)]
    with pytest.raises(Overloaded) as refused:
        eng.submit(tasks)
    assert refused.value.retry_after > 0
    assert eng.pending == 0 and not rec.updates  # nothing of the refused job was taken


async def test_cancel_stops_queued_work(engine: Any, sim: RunningSim) -> None:
    eng, rec, devices = engine
    [device] = add(sim, devices, "cisco_ios")
    sim.set_faults(device, command_delay=0.3)
    first = DeviceTask(job_id=job_id(), device=device.name, kind=JobKind.CONFIG,
                       lines=["vlan 8"])
    second = DeviceTask(job_id=job_id(), device=device.name, kind=JobKind.CONFIG,
                        lines=["vlan 9"])
    eng.submit([first, second])
    assert eng.cancel({second.job_id}) == 1
    done_first, done_second = await rec.wait([(first.job_id, device.name),
                                              (second.job_id, device.name)])
    assert done_first.status == Status.SUCCEEDED
    assert done_second.status == Status.CANCELLED
    assert 9 not in sim.run(lambda: dict(device.running.vlans))


async def test_facts_job_discovers_identity(engine: Any, sim: RunningSim) -> None:
    eng, rec, devices = engine
    [device] = add(sim, devices, "cisco_ios")
    [result] = await run(eng, rec, DeviceTask(job_id=job_id(), device=device.name,
                                              kind=JobKind.FACTS))
    assert result.facts is not None
    assert result.facts["hostname"] == device.name
    assert result.facts["serial"] == device.serial
    assert result.facts["os_version"] == device.os_version
    assert result.facts["uptime_seconds"] > 0


async def test_secrets_echoed_by_a_device_are_masked(engine: Any, sim: RunningSim) -> None:
    eng, rec, devices = engine
    [device] = add(sim, devices, "cisco_ios")
    [result] = await run(eng, rec, DeviceTask(
        job_id=job_id(), device=device.name, kind=JobKind.CONFIG,
        lines=["interface GigabitEthernet1/0/3", f"description {device.password}"]))
    assert result.status == Status.SUCCEEDED
    [shown] = await run(eng, rec, DeviceTask(job_id=job_id(), device=device.name,
                                             kind=JobKind.COMMAND,
                                             commands=["show running-config | include desc"]))
    for done in (result, shown):
        assert device.password not in done.model_dump_json()
    assert "description ********" in shown.outputs[0].output
