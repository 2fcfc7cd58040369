"""From parsed rows to samples: gauges, counter rates across wraps and reboots, derived metrics,
and the profile checks that catch a broken profile when it is loaded rather than when polled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from netfleet.domain.errors import InvalidInput
from netfleet.domain.telemetry import Profile, Sample
from netfleet.engine.metrics import DeviceMetrics, ProfilePlan, plan_for
from netfleet.engine.profiles import load_profiles

Rows = list[dict[str, Any]]
IF = {"interface": "interface"}


def profile(*commands: dict[str, Any], derived: list[dict[str, Any]] | None = None) -> Profile:
    return Profile.model_validate({"name": "test", "platform": "cisco_ios",
                                   "commands": list(commands), "derived": derived or []})


def command(*metrics: dict[str, Any], name: str = "show x") -> dict[str, Any]:
    return {"command": name, "metrics": list(metrics)}


def counter(name: str, field: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "field": field, "kind": "counter", **extra}


def values(samples: list[Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.metric, s.labels): s.value for s in samples}


def one(samples: list[Sample], metric: str) -> float:
    [value] = [s.value for s in samples if s.metric == metric]
    return value


# -- gauges ------------------------------------------------------------------------------------

def test_gauges_come_out_scaled_offset_and_mapped() -> None:
    metrics = DeviceMetrics("r1", profile(command(
        {"name": "cpu_percent", "field": "idle", "unit": "%", "scale": -1, "offset": 100},
        {"name": "memory_bytes", "field": "mem_mib", "unit": "B", "scale": 1048576},
        {"name": "if_oper_up", "field": "status", "labels": IF, "map": {"up": 1, "down": 0}},
    )))
    rows = [{"interface": "Gi1", "idle": "95.5", "mem_mib": "2", "status": "UP"},
            {"interface": "Gi2", "idle": "95.5", "mem_mib": "2", "status": " down "}]

    samples = metrics.observe(1000.0, [rows])

    assert values(samples) == {
        ("cpu_percent", ()): pytest.approx(4.5),
        ("memory_bytes", ()): 2 * 1048576,
        ("if_oper_up", (("interface", "Gi1"),)): 1,
        ("if_oper_up", (("interface", "Gi2"),)): 0,
    }
    cpu = next(s for s in samples if s.metric == "cpu_percent")
    assert (cpu.device, cpu.ts, cpu.unit, cpu.labels) == ("r1", 1000.0, "%", ())


def test_a_mapped_gauge_reads_numbers_not_in_the_map_and_skips_other_text() -> None:
    metrics = DeviceMetrics("r1", profile(command(
        {"name": "state", "field": "s", "labels": IF, "map": {"up": 1}})))
    samples = metrics.observe(1.0, [[{"interface": "a", "s": "0.5"},
                                     {"interface": "b", "s": "testing"}]])
    assert values(samples) == {("state", (("interface", "a"),)): 0.5}


def test_values_that_are_not_numbers_are_skipped_without_raising() -> None:
    metrics = DeviceMetrics("r1", profile(command(
        {"name": "temp", "field": "t", "labels": IF},
        counter("if_in_bps", "b", labels=IF))))
    bad: list[Any] = ["N/A", "", "-", None, "nan", "inf", ["1", "2"], {"x": 1}]
    rows = [{"interface": f"e{i}", "t": v, "b": v} for i, v in enumerate(bad)]
    rows.append({"interface": "ok"})  # the fields are missing altogether
    assert metrics.observe(1.0, [rows]) == []
    assert metrics.observe(2.0, [rows]) == []


def test_labels_are_sorted_by_name_and_fields_match_case_insensitively() -> None:
    metrics = DeviceMetrics("r1", profile(command(
        {"name": "mtu", "field": "MTU", "labels": {"slot": "Slot", "interface": "INTERFACE"}})))
    [sample] = metrics.observe(1.0, [[{"INTERFACE": "Gi1/0/1", "slot": 1, "Mtu": "1500"}]])
    assert sample.labels == (("interface", "Gi1/0/1"), ("slot", "1"))
    assert sample.value == 1500


def test_a_device_level_value_repeated_on_every_row_is_sampled_once() -> None:
    # ntc's process tables repeat the CPU totals (Filldown) on each process row.
    metrics = DeviceMetrics("r1", profile(command(
        {"name": "cpu_percent", "field": "cpu_5_sec"})))
    rows = [{"cpu_5_sec": "", "pid": "0"}, {"cpu_5_sec": "17", "pid": "1"},
            {"cpu_5_sec": "17", "pid": "2"}]
    assert [s.value for s in metrics.observe(1.0, [rows])] == [17]


# -- counters ----------------------------------------------------------------------------------

def traffic() -> DeviceMetrics:
    return DeviceMetrics("r1", profile(command(
        counter("if_in_bps", "in_bytes", scale=8, unit="bit/s", labels=IF),
        counter("if_in_packets_ps", "in_packets", labels=IF))))


def rows(**by_interface: tuple[Any, Any]) -> list[Rows | None]:
    return [[{"interface": name, "in_bytes": octets, "in_packets": packets}
             for name, (octets, packets) in by_interface.items()]]


def test_counters_give_per_second_rates_from_the_second_observation_on() -> None:
    metrics = traffic()
    assert metrics.observe(100.0, rows(Gi1=("1000", "10"), Gi2=("0", "0"))) == []

    samples = metrics.observe(110.0, rows(Gi1=("6000", "60"), Gi2=("0", "0")))

    gi1, gi2 = (("interface", "Gi1"),), (("interface", "Gi2"),)
    assert values(samples) == {("if_in_bps", gi1): 4000.0, ("if_in_packets_ps", gi1): 5.0,
                               ("if_in_bps", gi2): 0.0, ("if_in_packets_ps", gi2): 0.0}
    assert {s.unit for s in samples if s.metric == "if_in_bps"} == {"bit/s"}
    # The next rate is over the next interval only.
    later = metrics.observe(120.0, rows(Gi1=("7000", "70"), Gi2=("0", "0")))
    assert values(later)[("if_in_bps", gi1)] == 800.0


def test_devices_sharing_a_profile_keep_their_own_counters() -> None:
    shared = traffic().profile
    a, b = DeviceMetrics("a", shared), DeviceMetrics("b", shared)
    a.observe(0.0, rows(Gi1=("0", "0")))
    b.observe(0.0, rows(Gi1=("1000000", "0")))
    assert one(a.observe(1.0, rows(Gi1=("10", "0"))), "if_in_bps") == 80
    assert one(b.observe(1.0, rows(Gi1=("1000010", "0"))), "if_in_bps") == 80
    assert a.plan is b.plan is plan_for(shared)


def test_big_64_bit_counters_give_exact_rates() -> None:
    # 2**60 + 3 and 2**60 + 7 are the same float: the delta must come from the integers.
    metrics = traffic()
    metrics.observe(0.0, rows(Gi1=(str(2**60 + 3), "0")))
    assert one(metrics.observe(4.0, rows(Gi1=(str(2**60 + 7), "0"))), "if_in_bps") == 8.0


def test_a_32_bit_counter_that_wrapped_keeps_counting() -> None:
    metrics = traffic()
    metrics.observe(0.0, rows(Gi1=(str(2**32 - 1000), "0")))
    assert one(metrics.observe(10.0, rows(Gi1=("500", "0"))), "if_in_bps") == 1500 * 8 / 10


def test_a_64_bit_counter_that_wrapped_keeps_counting() -> None:
    metrics = traffic()
    metrics.observe(0.0, rows(Gi1=(str(2**64 - 1000), "0")))
    assert one(metrics.observe(10.0, rows(Gi1=("500", "0"))), "if_in_bps") == 1500 * 8 / 10


@pytest.mark.parametrize("before, after", [
    (5_000_000_000, 1_000),  # 64-bit counter restarted after a reboot
    (1_000, 10),  # small 32-bit-sized counter cleared: a wrap would mean 4 GB in 10 s
    (2**62, 2**40),  # a wrap at 2**64 would need 3/4 of the counter's range
])
def test_a_reset_counter_gives_no_sample_and_counts_on_from_its_new_value(
        before: int, after: int) -> None:
    metrics = traffic()
    metrics.observe(0.0, rows(Gi1=(str(before), "0")))
    assert [s.metric for s in metrics.observe(10.0, rows(Gi1=(str(after), "0")))] == [
        "if_in_packets_ps"]
    resumed = metrics.observe(20.0, rows(Gi1=(str(after + 100), "0")))
    assert one(resumed, "if_in_bps") == 100 * 8 / 10


def test_a_poll_that_is_not_later_than_the_last_gives_no_rate() -> None:
    metrics = traffic()
    metrics.observe(10.0, rows(Gi1=("100", "1")))
    assert metrics.observe(10.0, rows(Gi1=("200", "2"))) == []
    assert metrics.observe(5.0, rows(Gi1=("300", "3"))) == []
    assert one(metrics.observe(15.0, rows(Gi1=("400", "4"))), "if_in_bps") == 100 * 8 / 10


def test_a_failed_command_skips_its_metrics_and_the_next_rate_spans_both_intervals() -> None:
    metrics = DeviceMetrics("r1", profile(
        command(counter("if_in_bps", "in_bytes", scale=8, labels=IF), name="show interfaces"),
        command({"name": "cpu_percent", "field": "cpu"}, name="show cpu")))
    metrics.observe(0.0, [[{"interface": "Gi1", "in_bytes": "0"}], [{"cpu": "5"}]])

    assert values(metrics.observe(10.0, [None, [{"cpu": "6"}]])) == {("cpu_percent", ()): 6}
    after = metrics.observe(20.0, [[{"interface": "Gi1", "in_bytes": "200"}], None])
    assert values(after) == {("if_in_bps", (("interface", "Gi1"),)): 200 * 8 / 20}


def test_a_counter_keeps_its_baseline_through_an_unreadable_value() -> None:
    metrics = traffic()
    metrics.observe(0.0, rows(Gi1=("100", "1")))
    assert [s.metric for s in metrics.observe(10.0, rows(Gi1=("N/A", "2")))] == [
        "if_in_packets_ps"]
    assert one(metrics.observe(20.0, rows(Gi1=("300", "3"))), "if_in_bps") == 200 * 8 / 20


def test_an_interface_that_disappears_starts_afresh_when_it_returns() -> None:
    metrics = traffic()
    metrics.observe(0.0, rows(Gi1=("100", "1"), Gi2=("100", "1")))
    metrics.observe(10.0, rows(Gi1=("200", "2")))  # Gi2 removed
    back = metrics.observe(20.0, rows(Gi1=("300", "3"), Gi2=("900", "9")))
    assert {s.labels for s in back} == {(("interface", "Gi1"),)}


def test_an_interface_listed_twice_counts_from_its_first_row_only() -> None:
    metrics = traffic()
    metrics.observe(0.0, [[{"interface": "Gi1", "in_bytes": "100"},
                           {"interface": "Gi1", "in_bytes": "999999"}]])
    samples = metrics.observe(10.0, [[{"interface": "Gi1", "in_bytes": "200"},
                                      {"interface": "Gi1", "in_bytes": "5"}]])
    assert [s.value for s in samples] == [100 * 8 / 10]


# -- derived -----------------------------------------------------------------------------------

def device_with_derived() -> DeviceMetrics:
    return DeviceMetrics("r1", profile(
        command(counter("if_in_bps", "ib", scale=8, labels=IF),
                counter("if_out_bps", "ob", scale=8, labels=IF),
                counter("if_in_packets_ps", "ip", labels=IF),
                counter("if_in_errors_ps", "ie", labels=IF)),
        derived=[
            {"name": "throughput_bps", "op": "sum", "of": ["if_in_bps", "if_out_bps"],
             "unit": "bit/s"},
            {"name": "error_rate", "op": "ratio", "of": ["if_in_errors_ps"],
             "over": ["if_in_packets_ps"], "scale": 100, "unit": "%"},
            {"name": "throughput_mbps", "op": "sum", "of": ["throughput_bps"],
             "scale": 1e-6},
        ]))


def ports(*counts: tuple[int, int, int, int]) -> list[Rows | None]:
    return [[{"interface": f"e{i}", "ib": str(ib), "ob": str(ob), "ip": str(ip), "ie": str(ie)}
             for i, (ib, ob, ip, ie) in enumerate(counts)]]


def test_derived_metrics_sum_and_divide_over_every_interface() -> None:
    metrics = device_with_derived()
    assert metrics.observe(0.0, ports((0, 0, 0, 0), (0, 0, 0, 0))) == []  # no rates yet

    samples = metrics.observe(10.0, ports((1000, 500, 300, 3), (250, 250, 700, 2)))

    assert one(samples, "throughput_bps") == (1000 + 500 + 250 + 250) * 8 / 10
    assert one(samples, "error_rate") == pytest.approx((3 + 2) / (300 + 700) * 100)
    assert one(samples, "throughput_mbps") == pytest.approx(0.0016)
    derived = [s for s in samples if s.metric in ("throughput_bps", "error_rate")]
    assert [(s.labels, s.unit, s.ts) for s in derived] == [((), "bit/s", 10.0), ((), "%", 10.0)]
    assert [s.metric for s in samples[-3:]] == [  # derived come last, in profile order
        "throughput_bps", "error_rate", "throughput_mbps"]


def test_a_ratio_over_zero_is_skipped() -> None:
    metrics = device_with_derived()
    metrics.observe(0.0, ports((0, 0, 0, 0)))
    samples = metrics.observe(10.0, ports((80, 0, 0, 0)))  # traffic, but no packets counted
    assert "error_rate" not in {s.metric for s in samples}
    assert one(samples, "throughput_bps") == 64


def test_a_derived_metric_needs_every_metric_it_uses() -> None:
    metrics = device_with_derived()
    metrics.observe(0.0, ports((0, 0, 0, 0)))
    samples = metrics.observe(10.0, [[{"interface": "e0", "ib": "10", "ob": "N/A",
                                       "ip": "1", "ie": "0"}]])
    assert {"throughput_bps", "throughput_mbps"}.isdisjoint(s.metric for s in samples)
    assert one(samples, "error_rate") == 0


def test_observe_wants_one_output_per_command() -> None:
    with pytest.raises(ValueError, match="has 1 commands; observe got 2"):
        traffic().observe(0.0, [[], []])


def test_a_plan_can_be_shared_explicitly() -> None:
    plan = ProfilePlan(traffic().profile)
    assert DeviceMetrics("x", plan).plan is plan


# -- profile validation ------------------------------------------------------------------------

def invalid(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Profile.model_validate(data)
    return str(caught.value)


BASE: dict[str, Any] = {"name": "p", "platform": "cisco_ios", "commands": [
    {"command": "show interfaces", "metrics": [
        {"name": "if_in_bps", "field": "in_bytes", "kind": "counter", "labels": IF},
        {"name": "if_in_packets_ps", "field": "in_packets", "kind": "counter", "labels": IF}]}]}


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def metric(**fields: Any) -> dict[str, Any]:
    return with_(commands=[{"command": "show x", "metrics": [{"name": "m", "field": "f",
                                                                **fields}]}])


def test_the_base_profile_is_valid() -> None:
    assert Profile.model_validate(BASE).metric_names == ["if_in_bps", "if_in_packets_ps"]


@pytest.mark.parametrize("data, says", [
    (with_(commands=[BASE["commands"][0], BASE["commands"][0]]),
     "metric name 'if_in_bps' is already defined"),
    (with_(derived=[{"name": "if_in_bps", "op": "sum", "of": ["if_in_packets_ps"]}]),
     "derived[0]: metric name 'if_in_bps' is already defined"),
    (with_(derived=[{"name": "t", "op": "sum", "of": ["if_in_bps", "if_out_bps"]}]),
     "derived[0].of: 't' uses ['if_out_bps'], which this profile does not define"),
    (with_(derived=[{"name": "r", "op": "ratio", "of": ["if_in_bps"], "over": ["nope"]}]),
     "derived[0].over: 'r' uses ['nope']"),
    (with_(derived=[{"name": "r", "op": "ratio", "of": ["if_in_bps"]}]),
     "a ratio needs `over`"),
    (with_(derived=[{"name": "s", "op": "sum", "of": ["if_in_bps"], "over": ["if_in_bps"]}]),
     "`over` applies to ratio only"),
    (with_(derived=[{"name": "s", "op": "avg", "of": ["if_in_bps"]}]), "derived.0.op"),
    (metric(kind="counter", map={"up": 1}), "map applies to gauges only"),
    (metric(kind="counter", offset=100), "offset applies to gauges only"),
    (metric(kind="rate"), "commands.0.metrics.0.kind"),
    (metric(name="CPU"), "commands.0.metrics.0.name"),
    (metric(labels={"Interface": "interface"}), "label name 'Interface' must match"),
    (metric(map={}), "map is empty"),
    (metric(colour="red"), "commands.0.metrics.0.colour"),
    (metric(scale=float("nan")), "commands.0.metrics.0.scale"),
    (with_(commands=[]), "commands\n  List should have at least 1 item"),
    (with_(commands=[{"command": "show x", "metrics": []}]), "commands.0.metrics"),
    (with_(name="bad name"), "name\n  String should match pattern"),
    (with_(interval=0.5), "interval\n  Input should be greater than or equal to 1"),
    (with_(interval=86401), "interval\n  Input should be less than or equal to 86400"),
    (with_(commands=[{**BASE["commands"][0], "parse": {"kind": "none"}}]),
     "parse kind 'none' yields no rows"),
    (with_(commands=[{**BASE["commands"][0], "parse": {"kind": "ttp"}}]),
     "parse kind 'ttp' needs `parse.template`"),
    (with_(commands=[{**BASE["commands"][0],
                      "parse": {"kind": "regex", "template": "(?P<interface>\\S+) (?P<in_bytes"}}]),
     "not a valid regular expression"),
    (with_(commands=[{**BASE["commands"][0],
                      "parse": {"kind": "regex",
                                "template": "(?P<interface>\\S+) (?P<in_bytes>\\d+)"}}]),
     "metric 'if_in_packets_ps' reads field 'in_packets', which parse.template does not "
     "capture; name a group (?P<in_packets>...)"),
])
def test_profiles_that_cannot_work_are_refused_with_the_field_and_the_fix(
        data: dict[str, Any], says: str) -> None:
    assert says in invalid(data)


def test_a_regex_template_capturing_every_field_read_is_accepted() -> None:
    ok = with_(commands=[{**BASE["commands"][0], "parse": {
        "kind": "regex",
        "template": r"^(?P<INTERFACE>\S+) (?P<in_bytes>\d+) (?P<in_packets>\d+)"}}])
    assert Profile.model_validate(ok).commands[0].parse.kind == "regex"


def test_profiles_are_immutable_so_a_shared_plan_cannot_go_stale() -> None:
    built = Profile.model_validate(BASE)
    with pytest.raises(ValidationError):
        built.interval = 10
    changed = built.model_copy(update={"interval": 10.0})
    assert plan_for(changed) is not plan_for(built)


# -- loading profile files ---------------------------------------------------------------------

def test_a_file_holds_one_profile_or_a_list_under_profiles(tmp_path: Path) -> None:
    single = tmp_path / "one.yaml"
    single.write_text("name: mine\nplatform: cisco_ios\ncommands:\n"
                      "  - command: show processes cpu\n"
                      "    metrics: [{name: cpu_percent, field: cpu_usage_5_sec}]\n")
    several = tmp_path / "many.yaml"
    several.write_text("profiles:\n"
                       "  - {name: a, platform: x, commands: [{command: c, metrics: "
                       "[{name: m, field: f}]}]}\n"
                       "  - {name: b, platform: y, interval: 300, commands: [{command: c, "
                       "metrics: [{name: m, field: f}]}]}\n")
    [mine] = load_profiles(single)
    assert (mine.name, mine.interval, mine.commands[0].parse.kind) == ("mine", 60.0, "textfsm")
    assert [(p.name, p.interval) for p in load_profiles(several)] == [("a", 60.0), ("b", 300.0)]


@pytest.mark.parametrize("text, field, says", [
    ("profiles:\n  - {name: a, platform: x, commands: [{command: c, metrics: "
     "[{name: m, field: f, kind: rate}]}]}\n",
     "profiles[0].commands[0].metrics[0].kind", "Input should be 'gauge' or 'counter'"),
    ("name: a\nplatform: x\ncommands: [{command: c, metrics: [{name: m, field: f}]}]\n"
     "derived: [{name: r, op: ratio, of: [m]}]\n", "derived[0]", "a ratio needs `over`"),
    ("profiles:\n  - {name: a, platform: x, commands: [{command: c, metrics: "
     "[{name: m, field: f}]}]}\n  - {name: a, platform: x, commands: [{command: c, "
     "metrics: [{name: m, field: f}]}]}\n", "profiles[1].name", "is already defined at"),
    ("name: [unclosed\n", "path", "not valid YAML"),
    ("- just\n- a list\n", "profiles", "expected one profile"),
    ("profiles: []\n", "profiles", "expected a non-empty list"),
    ("profiles: [{}]\nextra: 1\n", "extra", "unexpected top-level keys ['extra']"),
])
def test_a_bad_profile_file_is_refused_naming_the_file_and_the_field(
        tmp_path: Path, text: str, field: str, says: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        load_profiles(path)
    assert str(path) in caught.value.message and says in caught.value.message
    assert caught.value.field == field


def test_a_missing_profile_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"nothere\.yaml: cannot read"):
        load_profiles(tmp_path / "nothere.yaml")

