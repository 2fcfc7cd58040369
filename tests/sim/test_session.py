"""Sessions over real SSH: the pager, and many devices each on its own address."""

from __future__ import annotations

import asyncio
import random

from netfleet.bench.sim import Session
from tests.conftest import RunningSim


async def read_until(session: Session, marker: bytes) -> bytes:
    buf = b""
    while marker not in buf:
        buf += await asyncio.wait_for(session.process.stdout.read(65536), 10)
    return buf


async def test_more_pager_over_ssh(sim: RunningSim) -> None:
    device = sim.add(1, "cisco_ios")[0]
    session = await Session.open(device.address, sim.port, device.username, device.password)
    session.process.stdin.write(b"enable\n")
    await read_until(session, b"Password: ")
    session.process.stdin.write(str(device.enable_secret).encode() + b"\n")
    await session.read_prompt()
    session.process.stdin.write(b"show interfaces\n")
    first = await read_until(session, b"--More--")
    assert b"is up, line protocol is up" in first
    session.process.stdin.write(b" ")
    second = await read_until(session, b"--More--")
    assert b"packets input" in second
    session.process.stdin.write(b"q")
    assert (await session.read_prompt()).rstrip().endswith(f"{device.name}#".encode())
    await session.close()


async def test_each_address_is_its_own_device(sim: RunningSim) -> None:
    devices = sim.add(600, "cisco_ios")
    picked = random.Random(5).sample(devices, 12)

    async def hostname_at(address: str, username: str, password: str) -> bytes:
        session = await Session.open(address, sim.port, username, password)
        prompt = await session.run("")
        await session.close()
        return prompt.strip()

    prompts = await asyncio.gather(*(hostname_at(d.address, d.username, d.password)
                                     for d in picked))
    assert prompts == [f"{d.name}>".encode() for d in picked]
