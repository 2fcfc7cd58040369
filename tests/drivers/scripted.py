"""A scripted SSH device that replays real devices' transcripts, for the quirks the simulator
does not model (Junos EX `{master:0}` lines, EOS `(s1)` prompts, ANSI escapes, CR CR LF)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncssh

USERNAME = "netops"
PASSWORD = "s3cret-pw"


@dataclass
class Script:
    greeting: str  # banner and first prompt, as sent
    replies: Mapping[str, str]  # typed line -> what follows its echo (ends with a prompt)
    unknown: str  # the reply to anything else
    echo: Callable[[str], str] = lambda line: line
    # typed line -> what the device prints (and flushes) before echoing it, e.g. a log message
    before_echo: Mapping[str, str] = field(default_factory=dict)
    received: list[str] = field(default_factory=list)  # every line typed, in order


class _Login(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == USERNAME and password == PASSWORD


@asynccontextmanager
async def scripted_device(script: Script) -> AsyncIterator[int]:
    """Serve `script` on 127.0.0.1; yields the port."""

    async def shell(process: asyncssh.SSHServerProcess[bytes]) -> None:
        process.stdout.write(script.greeting.encode())
        pending = b""
        while data := await process.stdin.read(4096):
            pending += data
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                line = raw.decode().rstrip("\r")
                script.received.append(line)
                reply = script.replies.get(line, script.unknown)
                if line in script.before_echo:
                    process.stdout.write(script.before_echo[line].encode())
                    await asyncio.sleep(0.05)  # its own packet: a reader sees it alone
                process.stdout.write((script.echo(line) + "\r\n" + reply).encode())
        process.exit(0)

    server = await asyncssh.create_server(
        _Login, "127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        process_factory=shell, encoding=None, line_editor=False)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
