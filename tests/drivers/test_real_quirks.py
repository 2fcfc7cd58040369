"""The native driver against replayed transcripts of real devices: what the simulator does not
do (EX `{master:0}` lines, EOS `(s1)` prompts, ANSI escapes, CR CR LF, redrawn echoes, log
messages before the echo) must not reach the caller or end a read early."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from netfleet.domain.errors import CommandRejected
from netfleet.domain.ports import Session, Target
from tests.drivers.conftest import opened
from tests.drivers.scripted import PASSWORD, USERNAME, Script, scripted_device

EX_PROMPT = "\r\n{master:0}\r\nnetops@sw1> "
EX_EDIT = "\r\n{master:0}[edit]\r\nnetops@sw1# "


@asynccontextmanager
async def scripted_session(script: Script, platform: str,
                           enable_secret: str | None = None) -> AsyncIterator[Session]:
    async with scripted_device(script) as port:
        target = Target(name="lab", host="127.0.0.1", port=port, platform=platform,
                        username=USERNAME, password=PASSWORD, enable_secret=enable_secret,
                        connect_timeout=5.0, command_timeout=5.0)
        async with opened("asyncssh", target) as session:
            yield session


def junos_ex(commit_reply: str) -> Script:
    return Script(
        greeting="--- JUNOS 21.4R3-S5.4 Kernel 64-bit  JNPR-12.1\r\n" + EX_PROMPT,
        replies={
            "set cli screen-length 0": "Screen length set to 0\r\n" + EX_PROMPT,
            "set cli screen-width 511": "Screen width set to 511\r\n" + EX_PROMPT,
            "set cli complete-on-space off": "Disabling complete-on-space\r\n" + EX_PROMPT,
            "show version": ("fpc0:\r\n" + "-" * 74 + "\r\nHostname: sw1\r\n"
                             "Model: ex4300-48t\r\n\x1b[1mJunos: 21.4R3-S5.4\x1b[0m\r\r\n"
                             + EX_PROMPT),
            "configure": "Entering configuration mode\r\n" + EX_EDIT,
            "set interfaces ge-0/0/1 description uplink": EX_EDIT,
            "commit and-quit": commit_reply,
            "rollback 0": "load complete\r\n" + EX_EDIT,
            "exit configuration-mode": ("The configuration has been changed but not committed"
                                        "\r\nExit with uncommitted changes? [yes,no] (yes) "),
            "yes": "Exiting configuration mode\r\n" + EX_PROMPT,
        },
        unknown="                 ^\r\nunknown command.\r\n" + EX_PROMPT,
    )


async def test_junos_ex_context_lines_and_escapes_stay_out_of_the_output() -> None:
    script = junos_ex("commit complete\r\nExiting configuration mode\r\n" + EX_PROMPT)
    async with scripted_session(script, "juniper_junos") as session:
        version = await session.send_command("show version")
        assert version == ("fpc0:\n" + "-" * 74 + "\nHostname: sw1\nModel: ex4300-48t\n"
                           "Junos: 21.4R3-S5.4")
        assert "commit complete" in await session.send_config(
            ["set interfaces ge-0/0/1 description uplink"])


async def test_junos_failed_commit_rolls_back_and_leaves_configuration_mode() -> None:
    script = junos_ex("[edit interfaces ge-0/0/1]\r\n  'description'\r\n    too long\r\n"
                      "error: configuration check-out failed\r\n" + EX_EDIT)
    async with scripted_session(script, "juniper_junos") as session:
        with pytest.raises(CommandRejected) as refused:
            await session.send_config(["set interfaces ge-0/0/1 description uplink"])
        assert refused.value.command == "commit and-quit"
        assert "configuration check-out failed" in refused.value.message
        assert script.received[-3:] == ["rollback 0", "exit configuration-mode", "yes"]
        assert session.alive
        assert "Hostname: sw1" in await session.send_command("show version")


async def test_eos_supervisor_prompts_enable_and_configure() -> None:
    secret = "en-pass"
    script = Script(
        greeting="\r\nLast login: Mon Mar  1 10:00:00 2021\r\nsw1(s1)>",
        replies={
            "enable": "Password: ",
            secret: "sw1(s1)#",
            "terminal length 0": "Pagination disabled.\r\nsw1(s1)#",
            "terminal width 511": "Width set to 511 columns.\r\nsw1(s1)#",
            "show hostname": "Hostname: sw1\r\nFQDN:     sw1.example.net\r\nsw1(s1)#",
            "configure terminal": "sw1(s1)(config)#",
            "interface Ethernet1": "sw1(s1)(config-if-Et1)#",
            "description uplink": "sw1(s1)(config-if-Et1)#",
            "end": "sw1(s1)#",
            "copy running-config startup-config": "Copy completed successfully.\r\nsw1(s1)#",
        },
        unknown="% Invalid input\r\nsw1(s1)#",
        echo=lambda line: "" if line == secret else line,  # a typed secret is not echoed
    )
    async with scripted_session(script, "arista_eos", secret) as session:
        assert await session.send_command("show hostname") == (
            "Hostname: sw1\nFQDN:     sw1.example.net")
        await session.send_config(["interface Ethernet1", "description uplink"])
        assert await session.save() == "Copy completed successfully."
        assert script.received[-1] == "copy running-config startup-config"


async def test_a_log_message_and_a_redrawn_echo_do_not_end_the_read_early() -> None:
    log_line = "\r\n*Mar  1 00:01:02: %SYS-5-CONFIG_I: Configured from console by vty0\r\n"
    script = Script(
        greeting="\r\nR1#",
        replies={"terminal length 0": "R1#", "terminal width 511": "R1#",
                 "show clock": "*10:15:01.123 UTC Mon Mar 1 2021\r\nR1#"},
        unknown="% Invalid input detected at '^' marker.\r\nR1#",
        # IOS prints a log message over the line being typed, then redraws the prompt.
        before_echo={"show clock": log_line + "R1#\x1b[K"},
    )
    async with scripted_session(script, "cisco_ios") as session:
        assert await session.send_command("show clock") == "*10:15:01.123 UTC Mon Mar 1 2021"
