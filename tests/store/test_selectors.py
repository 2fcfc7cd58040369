"""Selectors: parsing `--where` clauses, and which devices they match."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from netfleet.domain.errors import InvalidInput
from netfleet.domain.selectors import Selector


@dataclass
class D:
    name: str
    platform: str = "cisco_ios"
    site: str | None = None
    tags: list[str] = field(default_factory=list)


def test_parse_reads_every_field() -> None:
    selector = Selector.parse(["tag=core", "platform=cisco_ios", "site=lab1", "name=ios-0*",
                               "tag=edge", "name=eos-00001"])
    assert selector == Selector(names=["ios-0*", "eos-00001"], tags=["core", "edge"],
                                platform="cisco_ios", site="lab1")
    assert Selector.parse(selector.clauses()) == selector


def test_no_clauses_select_every_device() -> None:
    selector = Selector.parse([])
    assert selector.is_empty
    assert selector.matches(D("anything"))
    assert str(selector) == "all devices"


@pytest.mark.parametrize("pattern, name, expected", [
    ("ios-0*", "ios-00001", True),
    ("ios-0*", "ios-10001", False),
    ("ios-0000?", "ios-00001", True),
    ("ios-0000?", "ios-000012", False),
    ("*-00001", "eos-00001", True),
    ("IOS-*", "ios-00001", False),              # case-sensitive
    ("ios-[0]*", "ios-00001", False),           # '[' is literal, unlike fnmatch
    ("ios-00001", "ios-00001", True),
    ("ios-00001", "ios-000011", False),         # exact unless it has * or ?
])
def test_name_globs(pattern: str, name: str, expected: bool) -> None:
    assert Selector(names=[pattern]).matches(D(name)) is expected


def test_fields_are_anded_names_are_alternatives_and_all_tags_must_match() -> None:
    core_ios = D("ios-1", tags=["core", "lab"], site="lab1")
    edge_eos = D("eos-1", platform="arista_eos", tags=["edge"], site="lab1")
    assert Selector(names=["ios-1", "eos-1"]).matches(edge_eos)
    assert Selector(tags=["core", "lab"]).matches(core_ios)
    assert not Selector(tags=["core", "edge"]).matches(core_ios)
    assert Selector(site="lab1", platform="arista_eos").matches(edge_eos)
    assert not Selector(site="lab1", platform="arista_eos").matches(core_ios)
    assert not Selector(names=["ios-*"], site="lab2").matches(core_ios)


@pytest.mark.parametrize("clause, field, says", [
    ("tag", "selector", "no '='"),
    ("role=core", "selector", "unknown"),
    ("tag=", "tag", "non-empty"),
    ("name=ios 1", "name", "whitespace"),
])
def test_bad_clauses_name_the_field_and_the_fix(clause: str, field: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Selector.parse([clause])
    assert caught.value.field == field
    assert says in caught.value.message
    assert caught.value.fix


def test_a_second_platform_is_an_error_not_a_silent_override() -> None:
    with pytest.raises(InvalidInput, match="platform twice") as caught:
        Selector.parse(["platform=cisco_ios", "platform=arista_eos"])
    assert caught.value.field == "platform"


def test_round_trips_through_json_form() -> None:
    selector = Selector(names=["ios-*"], tags=["core"], site="lab1")
    assert Selector.from_dict(selector.to_dict()) == selector
    with pytest.raises(InvalidInput, match="unknown keys"):
        Selector.from_dict({"name": "ios-1"})
