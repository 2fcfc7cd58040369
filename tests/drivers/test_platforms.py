"""Platform data against real devices' prompts and error messages."""

from __future__ import annotations

import pytest

from netfleet.domain.errors import InvalidInput
from netfleet.drivers import text
from netfleet.drivers.platforms import (
    ARISTA_EOS,
    CISCO_IOS,
    JUNIPER_JUNOS,
    Platform,
    get_platform,
)


@pytest.mark.parametrize(("platform", "prompt", "config"), [
    (CISCO_IOS, "R1>", False), (CISCO_IOS, "R1#", False),
    (CISCO_IOS, "core-sw-01.lab(config-if)#", True), (CISCO_IOS, "R1(config)#", True),
    (ARISTA_EOS, "sw1>", False), (ARISTA_EOS, "sw1(s1)#", False),
    (ARISTA_EOS, "sw1(s1)(config-if-Et1)#", True), (ARISTA_EOS, "sw1(config-vlan-10)#", True),
    (JUNIPER_JUNOS, "netops@ex4300-1> ", False), (JUNIPER_JUNOS, "netops@ex4300-1# ", True),
])
def test_prompts_are_recognised_in_every_mode(platform: Platform, prompt: str,
                                              config: bool) -> None:
    assert platform.prompt.search(prompt)
    assert bool(platform.config_prompt.search(prompt)) == config


@pytest.mark.parametrize("line", [
    "Building configuration...", "interface GigabitEthernet1/0/1",
    " description uplink # to core", "Hostname: sw1", "  ---(more)---",
])
def test_output_lines_are_not_prompts(line: str) -> None:
    for platform in (CISCO_IOS, ARISTA_EOS, JUNIPER_JUNOS):
        assert not platform.prompt.search(line), (platform.name, line)


@pytest.mark.parametrize(("platform", "output"), [
    (CISCO_IOS, "                 ^\n% Invalid input detected at '^' marker."),
    (CISCO_IOS, "% Incomplete command."),
    (CISCO_IOS, '% Ambiguous command:  "sh i"'),
    (CISCO_IOS, "% Unknown command or computer name, or unable to find computer address"),
    (ARISTA_EOS, "% Invalid input (at token 1: 'bogus')"),
    (ARISTA_EOS, "% Incomplete command"),
    (ARISTA_EOS, "% Ambiguous command"),
    (JUNIPER_JUNOS, "                 ^\nsyntax error, expecting <command>."),
    (JUNIPER_JUNOS, "                 ^\nunknown command."),
    (JUNIPER_JUNOS, "error: configuration check-out failed"),
    (JUNIPER_JUNOS, "                       ^\nmissing argument."),
])
def test_device_errors_are_refusals(platform: Platform, output: str) -> None:
    assert platform.rejection(output)


def test_an_error_deep_in_a_show_output_is_not_a_refusal() -> None:
    log = "\n".join(["Mar  1 10:00:00 sw1 mgd[123]: UI_CMDLINE_READ_LINE: ok"] * 5
                    + ["Mar  1 10:00:01 sw1 rpd[4]: error: peer 10.0.0.1 down"])
    assert JUNIPER_JUNOS.rejection(log, first_lines=3) is None
    assert JUNIPER_JUNOS.rejection("error: device ge-0/0/99 not found", first_lines=3)


def test_junos_context_lines_are_not_output() -> None:
    for line in ("{master:0}", "{backup:1}", "{master:0}[edit]", "[edit interfaces ge-0/0/1]"):
        assert JUNIPER_JUNOS.is_context(line)
    assert not JUNIPER_JUNOS.is_context("    description uplink;")


def test_terminal_noise_is_cleaned() -> None:
    raw = "\x1b[1mbold\x1b[0m\r\r\nline two\x1b[K\r\n\x1b]0;title\x07end\x07"
    assert text.normalise(raw) == "bold\nline two\nend"


def test_secrets_are_masked() -> None:
    assert text.mask("enable secret hunter2", ["hunter2", ""]) == "enable secret ********"


def test_an_unknown_platform_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as wrong:
        get_platform("toaster_os")
    assert wrong.value.field == "platform"
    assert "cisco_ios" in wrong.value.message
    assert get_platform("cisco_ios_ssh") is CISCO_IOS
