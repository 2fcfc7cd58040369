"""Parsing real device output (from the simulator's CLI) with ntc-templates, TTP and regex."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import textfsm

from netfleet.domain.errors import InvalidInput, ParseError
from netfleet.domain.ports import Parser
from netfleet.parsing import Parsers
from tests.parsing.cli import output, run, session


@pytest.fixture
def parsers() -> Iterator[Parsers]:
    p = Parsers()
    yield p
    p.close()


def test_parsers_implement_the_port(parsers: Parsers) -> None:
    port: Parser = parsers
    assert port.parse("", platform="cisco_ios", command="show clock") == []


# -- ntc-templates by platform + command --------------------------------------------------------

def test_cisco_ios_show_version_gives_the_device_identity(parsers: Parsers) -> None:
    device, text = output("cisco_ios", "show version")
    [record] = parsers.parse(text, platform="cisco_ios", command="show version")
    assert record["hostname"] == device.hostname
    assert record["serial"] == [device.serial]
    assert record["version"] == device.os_version
    assert record["hardware"] == [device.model]


def test_arista_eos_show_version_gives_the_device_identity(parsers: Parsers) -> None:
    device, text = output("arista_eos", "show version")
    [record] = parsers.parse(text, platform="arista_eos", command="show version")
    assert record["serial_number"] == device.serial
    assert record["image"] == device.os_version
    assert record["model"] == device.model
    _, text = output("arista_eos", "show hostname")
    [named] = parsers.parse(text, platform="arista_eos", command="show hostname")
    assert named["hostname"] == device.hostname


def test_juniper_junos_show_version_and_chassis_give_the_device_identity(
        parsers: Parsers) -> None:
    device, shell = session("juniper_junos")
    [version] = parsers.parse(run(shell, "show version"), platform="juniper_junos",
                              command="show version")
    assert version["hostname"] == device.hostname
    assert version["junos_version"] == device.os_version
    assert version["model"] == device.model
    hardware = parsers.parse(run(shell, "show chassis hardware"), platform="juniper_junos",
                             command="show chassis hardware")
    assert hardware[0]["chassis_serial_number"] == device.serial


def test_abbreviated_commands_find_their_template(parsers: Parsers) -> None:
    device, text = output("cisco_ios", "sh ver")
    [record] = parsers.parse(text, platform="cisco_ios", command="sh  ver")
    assert record["hostname"] == device.hostname
    assert parsers.template_names("cisco_ios", "sh ver") == ("cisco_ios_show_version.textfsm",)


def test_table_outputs_give_one_record_per_row(parsers: Parsers) -> None:
    device, text = output("cisco_ios", "show ip interface brief")
    records = parsers.parse(text, platform="cisco_ios", command="show ip interface brief")
    assert [r["interface"] for r in records] == list(device.running.interfaces)
    assert all(set(r) == {"interface", "ip_address", "status", "proto"} for r in records)


def test_has_template(parsers: Parsers) -> None:
    assert parsers.has_template("cisco_ios", "show version")
    assert parsers.has_template("arista_eos", "show interfaces status")
    assert not parsers.has_template("cisco_ios", "show frobnicators")
    assert not parsers.has_template("no_such_os", "show version")


def test_no_template_says_so_and_what_to_do(parsers: Parsers) -> None:
    _, text = output("juniper_junos", "show route")
    with pytest.raises(ParseError) as caught:
        parsers.parse(text, platform="juniper_junos", command="show route")
    assert "no TextFSM template for platform 'juniper_junos' and command 'show route'" in str(
        caught.value)
    assert "pass a TextFSM template" in str(caught.value)


def test_output_that_fails_the_template_names_it_with_the_templates_message(
        parsers: Parsers) -> None:
    device, shell = session("juniper_junos")
    # A driver that forgot to strip the prompt: ntc's template raises Error on unknown lines.
    text = shell.handle_line("show chassis hardware").text
    with pytest.raises(ParseError) as caught:
        parsers.parse(text, platform="juniper_junos", command="show chassis hardware")
    message = str(caught.value)
    assert "juniper_junos_show_chassis_hardware.textfsm" in message
    assert "State Error raised" in message and device.hostname in message


def test_multi_template_index_entries_are_joined_on_the_key(tmp_path: Path) -> None:
    (tmp_path / "index").write_text(
        "Template, Hostname, Platform, Command\n\n"
        "acme_ports.textfsm:acme_speeds.textfsm, .*, acme_os, sh[[ow]] po[[rts]]\n")
    (tmp_path / "acme_ports.textfsm").write_text(
        "Value Key PORT (\\S+)\nValue STATE (up|down)\n\n"
        "Start\n  ^port ${PORT} is ${STATE} -> Record\n")
    (tmp_path / "acme_speeds.textfsm").write_text(
        "Value PORT (\\S+)\nValue SPEED (\\d+)\n\n"
        "Start\n  ^${PORT} runs at ${SPEED} -> Record\n")
    text = "port p1 is up\nport p2 is down\np2 runs at 100\np1 runs at 10\n"
    parsers = Parsers(template_dir=tmp_path)
    assert parsers.parse(text, platform="acme_os", command="sh po") == [
        {"port": "p1", "state": "up", "speed": "10"},
        {"port": "p2", "state": "down", "speed": "100"},
    ]


# -- caller-supplied TextFSM ------------------------------------------------------------------

UPTIME_TEMPLATE = """\
Value HOSTNAME (\\S+)
Value UPTIME (.+)

Start
  ^${HOSTNAME} uptime is ${UPTIME} -> Record
"""


def test_a_callers_textfsm_template(parsers: Parsers) -> None:
    device, text = output("cisco_ios", "show version")
    [record] = parsers.parse(text, platform="cisco_ios", command="show version",
                             template=UPTIME_TEMPLATE)
    assert record["hostname"] == device.hostname
    assert f"{device.hostname} uptime is {record['uptime']}\r\n" in text


def test_a_callers_template_is_compiled_once_for_many_parses(parsers: Parsers) -> None:
    _, text = output("cisco_ios", "show version")
    first = parsers.parse(text, platform="x", command="y", template=UPTIME_TEMPLATE)
    for _ in range(99):
        # A different str object with the same text: the cache is by content, not identity.
        again = parsers.parse(text, platform="x", command="y",
                              template="".join(list(UPTIME_TEMPLATE)))
        assert again == first
    assert parsers.compiles["textfsm"] == 1


def test_an_ntc_template_is_compiled_once_for_many_parses(parsers: Parsers) -> None:
    _, text = output("arista_eos", "show interfaces status")
    first = parsers.parse(text, platform="arista_eos", command="show interfaces status")
    assert len(first) > 10
    for _ in range(99):
        assert parsers.parse(text, platform="arista_eos", command="show int status") == first
    assert parsers.compiles == {"textfsm": 1, "ttp": 0, "regex": 0}


def test_a_compiled_template_carries_no_state_between_parses(parsers: Parsers) -> None:
    # Filldown, List and Fillup keep memory inside the compiled FSM's Values; each parse must
    # start clean and give what a freshly compiled template gives.
    template = """\
Value Filldown CHASSIS (\\S+)
Value Fillup SITE (\\S+)
Value Required PORT (\\S+)
Value List VLANS (\\d+)

Start
  ^chassis ${CHASSIS}
  ^site ${SITE}
  ^port ${PORT} -> Continue
  ^.* vlan ${VLANS} -> Continue
  ^end -> Record
"""
    text = ("chassis c1\nport p1 vlan 10\nend\nport p2 vlan 20\nport p2 vlan 30\nend\n"
            "site s9\n")
    fresh = textfsm.TextFSM(io.StringIO(template)).ParseTextToDicts(text)
    expected = [{k.lower(): v for k, v in r.items()} for r in fresh]
    assert expected[0]["site"] == "s9" and expected[1]["chassis"] == "c1"
    for _ in range(3):
        assert parsers.parse(text, platform="", command="", template=template) == expected
    assert parsers.parse("port p7 vlan 1\nend\n", platform="", command="",
                         template=template) == [
        {"chassis": "", "site": "", "port": "p7", "vlans": ["1"]}]


def test_an_invalid_textfsm_template_is_invalid_input(parsers: Parsers) -> None:
    with pytest.raises(InvalidInput) as caught:
        parsers.parse("x", platform="", command="", template="Value X no-parens\n\nStart\n")
    assert caught.value.field == "template"
    assert 'Unknown option "X" Line 1.' in str(caught.value)


def test_output_that_hits_an_error_rule_is_a_parse_error(parsers: Parsers) -> None:
    template = "Value A (\\d+)\n\nStart\n  ^a=${A} -> Record\n  ^. -> Error \"unexpected line\"\n"
    assert parsers.parse("a=1\n", platform="", command="", template=template) == [{"a": "1"}]
    with pytest.raises(ParseError, match="unexpected line"):
        parsers.parse("a=1\nboom\n", platform="", command="", template=template)


# -- TTP ------------------------------------------------------------------------------------------

INTERFACES_TTP = """\
<group name="interfaces">
interface {{ interface }}
 description {{ description | ORPHRASE }}
 shutdown {{ disabled | set(True) }}
</group>
"""


def configured_ios() -> tuple[str, list[str]]:
    _, shell = session("cisco_ios")
    for line in ("configure terminal", "interface GigabitEthernet1/0/2",
                 "description to-firewall", "interface GigabitEthernet1/0/3",
                 "description core uplink", "end"):
        shell.handle_line(line)
    return run(shell, "show running-config"), ["GigabitEthernet1/0/2", "GigabitEthernet1/0/3"]


def test_ttp_parses_a_running_config(parsers: Parsers) -> None:
    config, _ = configured_ios()
    [record] = parsers.parse(config, platform="cisco_ios", command="show running-config",
                             kind="ttp", template=INTERFACES_TTP)
    interfaces = {i["interface"]: i for i in record["interfaces"]}
    assert interfaces["GigabitEthernet1/0/2"]["description"] == "to-firewall"
    assert interfaces["GigabitEthernet1/0/3"]["description"] == "core uplink"
    assert interfaces["GigabitEthernet1/0/24"]["disabled"] is True
    assert "disabled" not in interfaces["GigabitEthernet1/0/2"]


def test_ttp_without_groups_gives_one_record_per_match(parsers: Parsers) -> None:
    device, text = output("arista_eos", "show hostname")
    records = parsers.parse(text, platform="arista_eos", command="show hostname", kind="ttp",
                            template="Hostname: {{ Name }}")
    assert records == [{"name": device.hostname}]
    assert parsers.parse("nothing here", platform="", command="", kind="ttp",
                         template="Hostname: {{ name }}") == []


def test_a_ttp_template_is_compiled_once_for_many_parses(parsers: Parsers) -> None:
    config, _ = configured_ios()
    first = parsers.parse(config, platform="", command="", kind="ttp", template=INTERFACES_TTP)
    for _ in range(99):
        assert parsers.parse(config, platform="", command="", kind="ttp",
                             template=INTERFACES_TTP) == first
    assert parsers.compiles["ttp"] == 1


def test_cached_ttp_templates_do_not_read_each_others_variables(parsers: Parsers) -> None:
    # ttp's plugins read state from a module global the last-built template owns.
    def template(site: str) -> str:
        return (f'<vars>site="{site}"</vars>\n<group name="ports" set="site">\n'
                "port {{ port }}\n</group>\n")

    def site(name: str) -> Any:
        [record] = parsers.parse("port p1\n", platform="", command="", kind="ttp",
                                 template=template(name))
        return record["ports"]["site"]

    assert [site("A"), site("B"), site("A"), site("B")] == ["A", "B", "A", "B"]


def test_an_invalid_ttp_template_is_invalid_input(parsers: Parsers) -> None:
    with pytest.raises(InvalidInput) as caught:
        parsers.parse("x", platform="", command="", kind="ttp",
                      template="<group name='x'>\nport {{ port }}\n")
    assert caught.value.field == "template"


# -- regex ----------------------------------------------------------------------------------------

STATUS_REGEX = (r"^(?P<Interface>GigabitEthernet\S+)\s+(?P<ip>\S+)\s+\S+\s+\S+\s+"
                r"(?P<status>up|down|administratively down)")


def test_regex_gives_a_record_per_match_with_lower_case_keys(parsers: Parsers) -> None:
    device, text = output("cisco_ios", "show ip interface brief")
    records = parsers.parse(text, platform="cisco_ios", command="show ip interface brief",
                            kind="regex", template=STATUS_REGEX)
    assert [r["interface"] for r in records] == list(device.running.interfaces)
    assert set(records[0]) == {"interface", "ip", "status"}


def test_regex_groups_that_did_not_match_are_empty(parsers: Parsers) -> None:
    records = parsers.parse("a=1\nb\n", platform="", command="", kind="regex",
                            template=r"^(?P<key>\w)(?:=(?P<value>\d))?$")
    assert records == [{"key": "a", "value": "1"}, {"key": "b", "value": ""}]


def test_a_regex_is_compiled_once_and_the_cache_is_bounded() -> None:
    parsers = Parsers(cache_size=2)
    for _ in range(100):
        parsers.parse("x=1", platform="", command="", kind="regex", template=r"(?P<x>\d)")
    assert parsers.compiles["regex"] == 1
    patterns = [r"(?P<a>\d)", r"(?P<b>\d)", r"(?P<c>\d)"]
    for _ in range(2):
        for pattern in patterns:  # three patterns through two slots: every one evicted
            parsers.parse("1", platform="", command="", kind="regex", template=pattern)
    assert parsers.compiles["regex"] == 1 + 6


@pytest.mark.parametrize(("template", "says"), [("(?P<x>", "regex is invalid"),
                                                 (r"\d+", "no named groups")])
def test_a_bad_regex_is_invalid_input(parsers: Parsers, template: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as caught:
        parsers.parse("1", platform="", command="", kind="regex", template=template)
    assert caught.value.field == "template"


# -- requests that are wrong ----------------------------------------------------------------------

def test_unknown_kind_and_missing_template_are_invalid_input(parsers: Parsers) -> None:
    with pytest.raises(InvalidInput) as caught:
        parsers.parse("x", platform="", command="", kind="xml")
    assert caught.value.field == "kind" and "textfsm" in caught.value.fix
    for kind in ("ttp", "regex"):
        with pytest.raises(InvalidInput) as caught:
            parsers.parse("x", platform="", command="", kind=kind)
        assert caught.value.field == "template"


# -- off the event loop ---------------------------------------------------------------------------

class ThreadRecordingParsers(Parsers):
    """Records which thread each parse ran on (the parse itself is the real one)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threads: list[str] = []

    def parse(self, output: str, **kwargs: Any) -> list[dict[str, Any]]:
        self.threads.append(threading.current_thread().name)
        return super().parse(output, **kwargs)


async def test_big_outputs_parse_on_the_pool_and_small_ones_inline() -> None:
    device, text = output("cisco_ios", "show interfaces")
    parsers = ThreadRecordingParsers(big_output=len(text) - 1)
    try:
        big = await parsers.parse_async(text, platform="cisco_ios", command="show interfaces")
        _, small_text = output("cisco_ios", "show version")
        small = await parsers.parse_async(small_text, platform="cisco_ios",
                                          command="show version")
        ttp = await parsers.parse_async("Hostname: h1", platform="", command="", kind="ttp",
                                        template="Hostname: {{ name }}")
    finally:
        parsers.close()
    assert [r["interface"] for r in big] == list(device.running.interfaces)
    assert small[0]["hostname"] == device.hostname and ttp == [{"name": "h1"}]
    main = threading.current_thread().name
    assert parsers.threads[0].startswith("netfleet-parse")
    assert parsers.threads[1] == main
    assert parsers.threads[2].startswith("netfleet-parse")  # TTP always leaves the loop


async def test_concurrent_parses_of_one_template_do_not_mix(parsers: Parsers) -> None:
    parsers.big_output = 0  # everything through the thread pool
    outputs = [run(session("cisco_ios", seed=seed)[1], "show version") for seed in (3, 11)]
    expected = [parsers.parse(o, platform="cisco_ios", command="show version") for o in outputs]
    assert expected[0][0]["serial"] != expected[1][0]["serial"]
    results = await asyncio.gather(*(
        parsers.parse_async(outputs[i % 2], platform="cisco_ios", command="show version")
        for i in range(40)))
    assert all(result == expected[i % 2] for i, result in enumerate(results))


async def test_the_first_index_lookup_does_not_run_on_the_event_loop() -> None:
    device, text = output("cisco_ios", "show version")
    parsers = ThreadRecordingParsers()
    try:
        for _ in range(2):
            [record] = await parsers.parse_async(text, platform="cisco_ios",
                                                 command="show version")
            assert record["hostname"] == device.hostname
    finally:
        parsers.close()
    assert parsers.threads[0].startswith("netfleet-parse")  # read the index on the pool
    assert parsers.threads[1] == threading.current_thread().name
    warmed = ThreadRecordingParsers()
    warmed.warm_up()
    await warmed.parse_async(text, platform="cisco_ios", command="show version")
    assert warmed.threads == [threading.current_thread().name]
