"""Failures reach the caller with an honest category, and a broken session is never reused."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from netfleet.domain.errors import (
    AuthError,
    CommandTimeout,
    ConnectError,
    SessionLost,
)
from netfleet.drivers import get_driver
from tests.conftest import RunningSim, free_port
from tests.drivers.conftest import CASES, DRIVERS, Case, opened, target_for

by_driver = pytest.mark.parametrize("driver", DRIVERS)
by_platform = pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts TCP and never says a word, like a box whose sshd is wedged."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@by_driver
async def test_wrong_password_is_an_auth_error(sim: RunningSim, driver: str) -> None:
    device = sim.add(1, "cisco_ios")[0]
    with pytest.raises(AuthError) as failed:
        await get_driver(driver).open(target_for(sim, device, password="not-the-password"))
    assert "not-the-password" not in str(failed.value)


@by_driver
async def test_wrong_enable_secret_is_an_auth_error(sim: RunningSim, driver: str) -> None:
    device = sim.add(1, "cisco_ios")[0]
    with pytest.raises(AuthError):
        await get_driver(driver).open(target_for(sim, device, enable_secret="not-the-secret"))


@by_driver
async def test_nothing_listening_is_a_connect_error(sim: RunningSim, driver: str) -> None:
    device = sim.add(1, "cisco_ios")[0]
    target = target_for(sim, device, host="127.0.0.1", port=free_port())
    with pytest.raises(ConnectError):
        await get_driver(driver).open(target)


@by_driver
async def test_a_server_that_never_speaks_ssh_is_a_connect_error(
        sim: RunningSim, driver: str, silent_server: int) -> None:
    device = sim.add(1, "cisco_ios")[0]
    target = target_for(sim, device, host="127.0.0.1", port=silent_server, connect_timeout=1.0)
    with pytest.raises(ConnectError):
        await get_driver(driver).open(target)


@by_driver
async def test_all_lines_busy_is_a_connect_error(sim: RunningSim, driver: str) -> None:
    device = sim.add(1, "cisco_ios")[0]
    sim.set_faults(device, max_sessions=0)
    with pytest.raises(ConnectError):
        await get_driver(driver).open(target_for(sim, device))


@by_driver
@by_platform
async def test_a_hung_command_times_out_and_ends_the_session(
        sim: RunningSim, driver: str, case: Case) -> None:
    device = sim.add(1, case.platform)[0]
    async with opened(driver, target_for(sim, device)) as session:
        sim.set_faults(device, hang_pattern=f"^{case.identity}$")
        with pytest.raises(CommandTimeout):
            await session.send_command(case.identity, timeout=1.0)
        assert not session.alive
        with pytest.raises(SessionLost):  # a late prompt must never answer a later command
            await session.send_command(case.identity)


@by_driver
@by_platform
async def test_a_dropped_connection_is_session_lost(
        sim: RunningSim, driver: str, case: Case) -> None:
    device = sim.add(1, case.platform)[0]
    async with opened(driver, target_for(sim, device)) as session:
        sim.set_faults(device, drop_probability=1.0)
        with pytest.raises(SessionLost):
            await session.send_command(case.identity)
        assert not session.alive


def steady(output: str) -> list[str]:
    return [line for line in output.splitlines()
            if not re.search(r"(?i)uptime|up \d|booted|\bago\b", line)]


@by_driver
@by_platform
async def test_a_slow_device_stays_in_step(sim: RunningSim, driver: str, case: Case) -> None:
    device = sim.add(1, case.platform)[0]
    async with opened(driver, target_for(sim, device)) as session:
        sim.set_faults(device, command_delay=0.5)
        # Three callers at once on one session: they take turns, each gets its own answer.
        first, running, again = await asyncio.gather(
            session.send_command(case.identity), session.running_config(),
            session.send_command(case.identity))
        assert session.alive
    assert device.hostname in first
    assert steady(first) == steady(again)  # the same answer (the uptime may tick meanwhile)
    assert running != first
    assert device.hostname in running


@by_driver
async def test_a_cancelled_command_ends_the_session(sim: RunningSim, driver: str) -> None:
    device = sim.add(1, "cisco_ios")[0]
    async with opened(driver, target_for(sim, device)) as session:
        sim.set_faults(device, command_delay=1.0)
        running = asyncio.create_task(session.send_command("show version"))
        await asyncio.sleep(0.3)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert not session.alive  # its answer is still on the way: the session is done
        with pytest.raises(SessionLost):
            await session.send_command("show version")
