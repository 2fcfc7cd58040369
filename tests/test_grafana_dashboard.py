"""deploy/grafana/netfleet.json queries only what a live netfleet exposes at /metrics: every
metric name and label in every panel's PromQL is checked against a server that has polled a
simulated device, so renaming a metric breaks this test and not someone's dashboard."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from netfleet.store import migrate
from tests.api.conftest import ServerThread, register
from tests.api.test_telemetry import fast_default, until
from tests.conftest import RunningSim

DASHBOARD = Path(__file__).parents[1] / "deploy" / "grafana" / "netfleet.json"

# Exposed: sample name -> the label names it carries.
Exposed = dict[str, set[str]]


@pytest.fixture(scope="module")
def exposed(sim: RunningSim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exposed]:
    """What /metrics of a server that has polled one device (twice: rates need two polls)
    exposes. Its own database: metric names do not depend on which one."""
    folder = tmp_path_factory.mktemp("grafana")
    url = f"sqlite:///{folder / 'netfleet.db'}"
    asyncio.run(migrate(url))
    server = ServerThread(url, folder / "secret.key")
    try:
        with server.client("admin") as admin:
            [device] = register(admin, sim, "cisco_ios", 1, tags=["grafana"])
            fast_default(admin, "cisco_ios", ["tag=grafana"])

        def polled_twice() -> Exposed | None:
            found = _parse(httpx.get(server.url + "/metrics").text)
            return found if "netfleet_device_throughput_bps" in found else None

        found: Exposed = until(polled_twice, what=f"throughput of {device.name} in /metrics")
        yield found
    finally:
        server.close()


def _parse(text: str) -> Exposed:
    out: Exposed = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


# -- reading PromQL just far enough to find the metric and label names ---------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def parse_promql(expr: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """(metric names, metric -> labels in its matchers, labels in by/without/on/...)."""
    text = _RANGE.sub("", _STRING.sub('""', expr))
    grouping = {label.strip() for _, labels in _GROUPING.findall(text)
                for label in labels.split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    matchers: dict[str, set[str]] = {}
    for metric, body in _SELECTOR.findall(text):
        matchers.setdefault(metric, set()).update(_MATCHER.findall(body))
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    names = {m.group(0) for m in _IDENT.finditer(text)
             if m.group(0) not in _KEYWORDS and not text[m.end():].lstrip().startswith("(")}
    return names, matchers, grouping


def test_the_parser_finds_names_labels_and_skips_functions() -> None:
    names, matchers, grouping = parse_promql(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"$v", y!="}"}[5m]))) '
        'or topk(10, b) == bool 1')
    assert (names, matchers, grouping) == ({"a_bucket", "b"}, {"a_bucket": {"x", "y"}}, {"le"})


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and the query variables."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
            assert found, variable["definition"]
            yield f"variable ${variable['name']}", f"{found.group(1)}{{{found.group(2)}=\"\"}}"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_every_metric_and_label_the_dashboard_queries_is_exposed(
        dashboard: dict[str, Any], exposed: Exposed) -> None:
    used: set[str] = set()
    problems = []
    for where, expr in queries(dashboard):
        names, matchers, grouping = parse_promql(expr)
        assert names, f"{where}: no metric in {expr!r}"
        used |= names
        problems += [f"{where}: {n} is not in /metrics" for n in sorted(names - set(exposed))]
        for metric, labels in matchers.items():
            missing = labels - exposed.get(metric, set())
            problems += [f"{where}: {metric} has no label {label!r}" for label in missing]
        have = set().union(*(exposed.get(n, set()) for n in names))
        problems += [f"{where}: no metric of {expr!r} has label {label!r}"
                     for label in sorted(grouping - have)]
    assert not problems, "\n".join(problems)
    assert len(used) >= 14  # the parser found the queries' metrics, not nothing


def test_the_dashboard_imports_into_any_grafana_with_a_prometheus(
        dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource", "prometheus")
    assert variables["device"]["definition"] == \
        "label_values(netfleet_device_cpu_percent, device)"
    assert variables["device"]["includeAll"] and variables["device"]["multi"]
    drawn = [p for p in panels(dashboard) if p["type"] != "row"]
    assert len({p["id"] for p in panels(dashboard)}) == len(list(panels(dashboard)))
    for panel in drawn:  # no data source uid of the machine it was made on
        sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(s == {"type": "prometheus", "uid": "${datasource}"} for s in sources), \
            panel["title"]
    device_panels = [p for p in drawn if any("netfleet_device_" in t["expr"]
                                             for t in p["targets"])]
    assert len(device_panels) == 7
    assert all('device=~"$device"' in t["expr"] for p in device_panels for t in p["targets"])
    units = {p["title"]: p["fieldConfig"]["defaults"].get("unit") for p in drawn}
    assert (units["Throughput"], units["Latency"], units["CPU"]) == ("bps", "ms", "percent")
