"""`netfleet bench sim`: what a simulated fleet costs.

Runs simulators as child processes (as an operator would) and measures them from outside:
- time from process start until N devices answer,
- memory per idle device: RSS with N devices minus RSS of the same process with none,
- memory per open session: RSS growth while S sessions are logged in,
- CPU per 1,000 simple commands, from the simulator's own CPU time,
and the same session and command workload against a bare asyncssh shell (the baseline: what SSH
itself costs, so the simulator's overhead on top of it is visible).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncssh
import httpx

PROMPT = re.compile(rb"[>#\$] ?$")
PAGING_OFF = {"cisco_ios": "terminal length 0", "arista_eos": "terminal length 0",
              "juniper_junos": "set cli screen-length 0"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Child:
    proc: asyncio.subprocess.Process
    control: str
    started: float

    @property
    def pid(self) -> int:
        return self.proc.pid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def simulator(args: Sequence[str], *, wait_devices: int,
                    startup_limit: float = 180) -> AsyncIterator[Child]:
    """A `netfleet sim` child process with a control API, up once `wait_devices` answer."""
    control_port = _free_port()
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: the child never blocks on it
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "netfleet.cli.app", "--log-level", "warning", "sim",
            "--control-port", str(control_port), *args,
            stdout=asyncio.subprocess.DEVNULL, stderr=errors)
        child = Child(proc, f"http://127.0.0.1:{control_port}", started)
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                while True:
                    if proc.returncode is not None:
                        errors.seek(0)
                        err = errors.read().decode(errors="replace")
                        raise RuntimeError(f"simulator exited early: {err[-2000:]}")
                    with contextlib.suppress(httpx.HTTPError):
                        health = (await http.get(child.control + "/health")).json()
                        if health["devices"] >= wait_devices:
                            break
                    if time.perf_counter() - started > startup_limit:
                        raise TimeoutError(f"simulator not up after {startup_limit}s")
                    await asyncio.sleep(0.05)
            yield child
        finally:
            await _stop(proc)


class Session:
    """A logged-in interactive session, driven like an automation tool drives a VTY."""

    def __init__(self, conn: asyncssh.SSHClientConnection,
                 process: asyncssh.SSHClientProcess[bytes]) -> None:
        self.conn = conn
        self.process = process

    @classmethod
    async def open(cls, host: str, port: int, username: str, password: str,
                   platform: str | None = None) -> Session:
        """Log in, wait for the prompt, and turn paging off if the platform is known."""
        conn = await asyncio.wait_for(asyncssh.connect(
            host, port, username=username, password=password, known_hosts=None,
            preferred_auth="password"), 30)
        process = await conn.create_process(term_type="vt100", encoding=None)
        session = cls(conn, process)
        await session.read_prompt()
        if platform in PAGING_OFF:
            await session.run(PAGING_OFF[platform])
        return session

    async def read_prompt(self) -> bytes:
        buf = b""
        while not PROMPT.search(buf):
            chunk = await asyncio.wait_for(self.process.stdout.read(65536), 30)
            if not chunk:
                raise ConnectionError("session closed while waiting for a prompt")
            buf += chunk
        return buf

    async def run(self, command: str) -> bytes:
        self.process.stdin.write(command.encode() + b"\n")
        return await self.read_prompt()

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()


async def _open_sessions(targets: list[dict[str, Any]], port: int,
                         parallel: int = 32) -> list[Session]:
    gate = asyncio.Semaphore(parallel)

    async def one(t: dict[str, Any]) -> Session:
        async with gate:
            return await Session.open(t["host"], port, t["username"], t["password"],
                                      t.get("platform"))

    return list(await asyncio.gather(*(one(t) for t in targets)))


async def _workload(child: Child, targets: list[dict[str, Any]], port: int, commands: int,
                    command: str) -> dict[str, Any]:
    before_rss = rss_kib(child.pid)
    sessions = await _open_sessions(targets, port)
    await asyncio.sleep(0.5)
    open_rss = rss_kib(child.pid)
    per_session = max(1, commands // len(sessions))
    cpu0 = cpu_seconds(child.pid)
    t0 = time.perf_counter()

    async def drive(s: Session) -> None:
        for _ in range(per_session):
            await s.run(command)

    await asyncio.gather(*(drive(s) for s in sessions))
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(child.pid) - cpu0
    done = per_session * len(sessions)
    await asyncio.gather(*(s.close() for s in sessions))
    return {
        "sessions": len(sessions),
        "session_kib": round((open_rss - before_rss) / len(sessions), 1),
        "commands": done,
        "command": command,
        "cpu_seconds_per_1000_commands": round(cpu / done * 1000, 3),
        "commands_per_second": round(done / wall, 1),
    }


async def _credentials(child: Child, names: list[str]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=30) as http:
        out = []
        for name in names:
            device = (await http.get(f"{child.control}/devices/{name}")).json()
            creds = (await http.get(f"{child.control}/devices/{name}/credentials")).json()
            out.append({"host": device["host"], "platform": device["platform"], **creds})
        return out


async def _device_names(child: Child, count: int) -> list[str]:
    async with httpx.AsyncClient(timeout=60) as http:
        data = (await http.get(f"{child.control}/devices", params={"limit": count})).json()
    return [d["name"] for d in data["devices"]][:count]


async def run(devices: int = 10_000, sessions: int = 200, commands: int = 5_000,
              base_ip: str = "127.3.0.1") -> dict[str, Any]:
    port = _free_port()
    common = ["--port", str(port), "--base-ip", base_ip, "--max-sessions", "16"]

    async with simulator([*common, "--devices", "0"], wait_devices=0) as empty:
        await asyncio.sleep(0.5)
        empty_rss = rss_kib(empty.pid)

    async with simulator([*common, "--devices", str(devices)], wait_devices=devices) as full:
        up_seconds = time.perf_counter() - full.started
        await asyncio.sleep(0.5)
        full_rss = rss_kib(full.pid)
        names = await _device_names(full, sessions)
        targets = await _credentials(full, names)
        simple = await _workload(full, targets, port, commands, "show clock")
        heavy = await _workload(full, targets, port, max(sessions, commands // 10),
                                "show interfaces")

    baseline = await _baseline(sessions, commands)
    idle_kib = (full_rss - empty_rss) / max(devices, 1)
    return {
        "benchmark": "sim",
        "devices": devices,
        "up_seconds": round(up_seconds, 2),
        "rss_empty_kib": empty_rss,
        "rss_with_devices_kib": full_rss,
        "idle_device_kib": round(idle_kib, 2),
        "session_kib": simple["session_kib"],
        "cpu_seconds_per_1000_simple_commands": simple["cpu_seconds_per_1000_commands"],
        "simple": simple,
        "heavy": heavy,
        "baseline_bare_asyncssh": baseline,
        "targets": {"idle_device_kib": 30, "session_kib": 100, "up_seconds_10000": 30},
        "meets_targets": {
            "idle_device_kib": idle_kib <= 30,
            "session_kib": simple["session_kib"] <= 100,
            "up_seconds": devices < 10_000 or up_seconds <= 30,
        },
    }


# -- baseline: a bare asyncssh shell that answers every line with a prompt -----------------

BASELINE_CODE = r"""
import asyncio, sys, asyncssh, signal
class S(asyncssh.SSHServerSession):
    def connection_made(self, chan): self.chan = chan
    def pty_requested(self, *a): return True
    def shell_requested(self): return True
    def session_started(self): self.chan.write(b"sw#")
    def data_received(self, data, datatype):
        if b"\n" in data: self.chan.write(data.replace(b"\n", b"\r\n") + b"sw#")
class Srv(asyncssh.SSHServer):
    def begin_auth(self, u): return True
    def password_auth_supported(self): return True
    def validate_password(self, u, p): return True
    def session_requested(self): return S()
async def main():
    key = asyncssh.generate_private_key("ssh-ed25519")
    await asyncssh.listen("127.0.0.1", int(sys.argv[1]), server_host_keys=[key],
                          server_factory=Srv, encoding=None, line_editor=False)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
asyncio.run(main())
"""


async def _baseline(sessions: int, commands: int) -> dict[str, Any]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BASELINE_CODE, str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        await asyncio.wait_for(proc.stdout.readline(), 30)
        child = Child(proc, "", time.perf_counter())
        targets = [{"host": "127.0.0.1", "username": "u", "password": "p"}] * sessions
        return await _workload(child, targets, port, commands, "show clock")
    finally:
        await _stop(proc)
