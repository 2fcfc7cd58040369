"""Both drivers against the simulator over real SSH: commands, configuration, saving."""

from __future__ import annotations

import pytest

from netfleet.domain.errors import CommandRejected
from netfleet.domain.ports import Session
from tests.conftest import RunningSim
from tests.drivers.conftest import CASES, DRIVERS, Case, opened, target_for

pytestmark = [pytest.mark.parametrize("driver", DRIVERS),
              pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))]


async def test_commands_config_and_save(sim: RunningSim, driver: str, case: Case) -> None:
    device = sim.add(1, case.platform)[0]
    async with opened(driver, target_for(sim, device)) as session:
        assert isinstance(session, Session)
        assert session.alive
        identity = await session.send_command(case.identity)
        assert device.hostname in identity
        assert case.identity not in identity  # the echo is gone

        await session.send_config(case.config)
        assert case.shows in await session.running_config()

        await session.save()
        if case.platform != "juniper_junos":  # on Junos the commit already saved it
            assert sim.run(lambda: device.startup == device.running)  # survives a reload
        assert device.hostname in await session.send_command(case.identity)


async def test_a_refused_line_is_named_and_the_session_stays_usable(
        sim: RunningSim, driver: str, case: Case) -> None:
    device = sim.add(1, case.platform)[0]
    async with opened(driver, target_for(sim, device)) as session:
        with pytest.raises(CommandRejected) as refused:
            await session.send_command("show frobnication")
        assert refused.value.command == "show frobnication"

        with pytest.raises(CommandRejected) as refused:
            await session.send_config([*case.config, case.bogus, *case.other])
        assert refused.value.command == case.bogus
        assert refused.value.category == "rejected"
        assert session.alive

        # Back at the operational prompt: commands and a new change both work.
        assert device.hostname in await session.send_command(case.identity)
        await session.send_config(case.other)
        running = await session.running_config()
        assert case.other_shows in running
        if case.platform == "juniper_junos":  # a refused commit applies nothing of it
            assert case.shows not in running
