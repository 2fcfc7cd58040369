"""Faults on purpose, and bad input: each device misbehaves alone, and nothing leaks or crashes."""

from __future__ import annotations

import asyncio
import time

import asyncssh
import pytest

from netfleet.bench.sim import Session
from netfleet.sim.state import Device
from tests.conftest import RunningSim


async def login(sim: RunningSim, device: Device, password: str | None = None) -> Session:
    return await Session.open(device.address, sim.port, device.username,
                              password or device.password, device.platform.name)


def sessions_of(sim: RunningSim, device: Device) -> int:
    return sim.run(lambda: device.sessions)


async def wait_until_closed(sim: RunningSim, device: Device) -> None:
    for _ in range(100):
        if sessions_of(sim, device) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{device.name} still has {sessions_of(sim, device)} sessions")


async def test_wrong_password_is_refused(sim: RunningSim) -> None:
    device = sim.add(1, "cisco_ios")[0]
    with pytest.raises(asyncssh.PermissionDenied):
        await login(sim, device, password="not-the-password")
    with pytest.raises(asyncssh.PermissionDenied):
        await Session.open(device.address, sim.port, "nobody", device.password)


async def test_auth_fail_fault_refuses_even_the_right_password(sim: RunningSim) -> None:
    device = sim.add(1, "cisco_ios")[0]
    sim.set_faults(device, auth_fail=True)
    with pytest.raises(asyncssh.PermissionDenied):
        await login(sim, device)


async def test_login_delay_holds_the_login(sim: RunningSim) -> None:
    device = sim.add(1, "cisco_ios")[0]
    sim.set_faults(device, login_delay=0.6)
    started = time.monotonic()
    session = await login(sim, device)
    assert time.monotonic() - started >= 0.6
    await session.close()


async def test_a_hung_command_hangs_only_its_own_device(sim: RunningSim) -> None:
    stuck, healthy = sim.add(2, "cisco_ios")
    sim.set_faults(stuck, hang_pattern="show version")
    bad = await login(sim, stuck)
    good = await login(sim, healthy)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bad.run("show version"), 1.0)
    assert b"uptime is" in await asyncio.wait_for(good.run("show version"), 10)
    await bad.close()
    await good.close()
    await wait_until_closed(sim, stuck)


async def test_dropped_connection_is_cut_mid_session(sim: RunningSim) -> None:
    device = sim.add(1, "cisco_ios")[0]
    session = await login(sim, device)
    sim.set_faults(device, drop_probability=1.0)
    with pytest.raises((ConnectionError, asyncssh.Error)):
        await session.run("show clock")
    await wait_until_closed(sim, device)


async def test_command_delay_holds_the_prompt(sim: RunningSim) -> None:
    device = sim.add(1, "cisco_ios")[0]
    sim.set_faults(device, command_delay=0.5)
    session = await login(sim, device)
    started = time.monotonic()
    assert b"UTC" in await session.run("show clock")
    assert time.monotonic() - started >= 0.5
    await session.close()


async def test_vty_limit_refuses_extra_sessions(sim: RunningSim) -> None:
    device = sim.add(1, "cisco_ios")[0]
    sim.set_faults(device, max_sessions=1)
    first = await login(sim, device)
    with pytest.raises((ConnectionError, asyncssh.Error, OSError)):
        await login(sim, device)
    await first.close()
    await wait_until_closed(sim, device)
    await (await login(sim, device)).close()  # the line is free again


async def test_garbage_long_lines_and_abrupt_disconnects_leave_no_trace(
        sim: RunningSim) -> None:
    device = sim.add(1, "cisco_ios")[0]
    session = await login(sim, device)
    session.process.stdin.write(bytes(range(256)) * 4 + b"\x1b[A\x1b[D\n")
    await session.read_prompt()
    out = await session.run("x" * 20_000)
    assert b"Invalid input" in out  # the line was cut at the buffer limit, then rejected
    assert b"uptime is" in await session.run("show version")
    for _ in range(5):  # hang up mid-command, without a goodbye
        other = await login(sim, device)
        other.process.stdin.write(b"show interf")
        other.conn.abort()
        await other.conn.wait_closed()
    await session.close()
    await wait_until_closed(sim, device)
    survivor = await login(sim, device)
    assert b"UTC" in await survivor.run("show clock")
    await survivor.close()


async def test_exec_channel_runs_one_command(sim: RunningSim) -> None:
    device = sim.add(1, "cisco_ios")[0]
    async with asyncssh.connect(device.address, sim.port, username=device.username,
                                password=device.password, known_hosts=None) as conn:
        result = await conn.run("show version", check=False)
    assert "uptime is" in str(result.stdout)


async def test_keyboard_interactive_login_works_like_password(sim: RunningSim) -> None:
    device = sim.add(1, "cisco_ios")[0]
    async with asyncssh.connect(device.address, sim.port, username=device.username,
                                password=device.password, known_hosts=None,
                                preferred_auth="keyboard-interactive") as conn:
        assert conn.get_extra_info("username") == device.username
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(device.address, sim.port, username=device.username,
                               password="wrong", known_hosts=None,
                               preferred_auth="keyboard-interactive")


async def test_non_ssh_clients_are_hung_up_on_without_leaking(sim: RunningSim) -> None:
    device = sim.add(1, "cisco_ios")[0]
    for payload in (b"", b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 8):
        reader, writer = await asyncio.open_connection(device.address, sim.port)
        writer.write(payload)
        await writer.drain()
        if payload:
            await asyncio.wait_for(reader.read(), 10)  # the device hangs up
        writer.close()
        await writer.wait_closed()
    await wait_until_closed(sim, device)
    session = await login(sim, device)
    assert b"UTC" in await session.run("show clock")
    await session.close()
