"""`netfleet telemetry` and `netfleet bottlenecks` as a user runs them: clients of a real API
server (on SQLite and PostgreSQL) polling the simulator over real SSH."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.testing import Result

from tests.api.conftest import ServerThread, register
from tests.api.test_cli_inventory import Cli, isolated, one_line_error  # noqa: F401 (fixture)
from tests.api.test_telemetry import until
from tests.conftest import RunningSim


def usage_error(result: Result, option: str) -> str:
    """A refused option: exit 2 and a message naming the option."""
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output or option in result.output, \
        result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())  # the message as one line, without the box


def profile_file(cli: Cli, tmp_path: Path, name: str, interval: float) -> Path:
    """The built-in cisco_ios-default as `telemetry show` prints it, renamed and faster."""
    shown = cli("telemetry", "show", "cisco_ios-default").stdout
    assert shown.startswith("# assigned to no device")
    profile = yaml.safe_load(shown)
    assert profile["name"] == "cisco_ios-default" and profile["interval"] == 60
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**profile, "name": name, "interval": interval}))
    return path


def test_a_profile_applied_from_a_file_polls_and_its_values_can_be_read(
        api: ServerThread, sim: RunningSim, tmp_path: Path) -> None:
    cli = Cli(api)
    with api.client("admin") as admin:
        devices = register(admin, sim, "cisco_ios", 2, tags=["cli"])
    names = {d.name for d in devices}

    applied = cli("telemetry", "apply", str(profile_file(cli, tmp_path, "ios-fast", 1)),
                  "--where", "tag=cli").stdout
    assert "Created telemetry profile ios-fast" in applied and "polls 2 devices" in applied
    [fast] = [p for p in cli.json("telemetry", "profiles") if p["name"] == "ios-fast"]
    assert (fast["where"], fast["enabled"], fast["builtin"], fast["devices"], fast["interval"]
            ) == (["tag=cli"], True, False, 2, 1)
    table = cli("telemetry", "profiles").stdout
    assert "ios-fast" in table and "tag=cli" in table and "cisco_ios-default" in table

    def cpu_from_both() -> bool:
        rows = cli.json("telemetry", "latest", "--where", "tag=cli", "--metric", "cpu_percent")
        return {r["device"] for r in rows} == names and not any(r["stale"] for r in rows)

    until(cpu_from_both, what="cpu_percent from both devices")
    first = sorted(names)[0]
    shown = cli("telemetry", "latest", "--device", first, "--metric", "cpu_percent").stdout
    assert first in shown and "cpu_percent" in shown and "fresh" in shown

    def stored() -> list[dict[str, Any]]:
        points: list[dict[str, Any]] = cli.json(
            "telemetry", "query", "--metric", "cpu_percent", "--where", "tag=cli")["points"]
        return points

    until(lambda: all(sum(p["device"] == n for p in stored()) >= 2 for n in names),
          what="two stored cpu samples per device")
    stepped = cli.json("telemetry", "query", "--metric", "cpu_percent", "-w", "tag=cli",
                       "--since", "2h", "--step", "1h")
    assert stepped["step"] == "1h" and {p["device"] for p in stepped["points"]} == names
    assert all(p["min"] - 1e-9 <= p["value"] <= p["max"] + 1e-9 and p["count"] >= 1
               for p in stepped["points"])
    assert "count" in cli("telemetry", "query", "-m", "cpu_percent", "--step", "1h").stdout
    one = cli.json("telemetry", "query", "-m", "cpu_percent", "-d", first, "--limit", "1")
    assert [p["device"] for p in one["points"]] == [first]

    # Two peers are too few to judge (a metric needs five devices): nothing is flagged.
    judged = cli.json("bottlenecks", "--where", "tag=cli", "--window", "5m", "--method",
                      "zscore", "--threshold", "3")
    assert (judged["method"], judged["threshold"], judged["bottlenecks"]) == ("zscore", 3, [])
    assert "No bottlenecks among" in cli("bottlenecks", "-w", "tag=cli").stdout

    assert "disabled" in cli("telemetry", "assign", "ios-fast", "--off").stdout
    [off] = [p for p in cli.json("telemetry", "profiles") if p["name"] == "ios-fast"]
    assert (off["enabled"], off["devices"], off["where"]) == (False, 0, ["tag=cli"])
    again = cli("telemetry", "assign", "ios-fast", "--where", f"name={first}").stdout
    assert "polls 1 device " in again

    assert "Removed telemetry profile ios-fast" in cli("telemetry", "rm", "ios-fast").stdout
    assert "ios-fast" not in {p["name"] for p in cli.json("telemetry", "profiles")}
    assert one_line_error(cli("telemetry", "show", "ios-fast", code=1)) == \
        "error: no telemetry profile 'ios-fast'"


def test_applying_again_replaces_and_keeps_the_devices_unless_told(
        api: ServerThread, tmp_path: Path) -> None:
    cli = Cli(api)
    path = profile_file(cli, tmp_path, "ios-slow", 300)
    cli("telemetry", "apply", str(path), "--where", "tag=core", "--disable")
    replaced = cli("telemetry", "apply", str(path)).stdout
    assert "Replaced telemetry profile ios-slow" in replaced and "disabled" in replaced
    view = cli.json("telemetry", "show", "ios-slow")
    assert (view["where"], view["enabled"], view["interval"]) == (["tag=core"], False, 300)

    both = tmp_path / "both.yaml"
    profile = yaml.safe_load(path.read_text())
    both.write_text(yaml.safe_dump({"profiles": [profile, {**profile, "name": "ios-other"}]}))
    out = cli("telemetry", "apply", str(both), "--where", "site=lab1", "--enable").stdout
    assert "Replaced telemetry profile ios-slow" in out and "Created telemetry profile " \
        "ios-other" in out
    assert {p["name"]: p["where"] for p in cli.json("telemetry", "profiles")
            if p["name"].startswith("ios-")} == {"ios-slow": ["site=lab1"],
                                                  "ios-other": ["site=lab1"]}


def test_a_bad_file_or_option_is_refused_naming_the_field(
        api: ServerThread, tmp_path: Path) -> None:
    cli = Cli(api)
    slow = tmp_path / "slow.yaml"
    slow.write_text("name: too-fast\nplatform: cisco_ios\ninterval: 0.5\ncommands:\n"
                    "  - command: show clock\n    parse: {kind: regex, template: '(?P<t>.+)'}\n"
                    "    metrics: [{name: clock, field: t}]\n")
    line = one_line_error(cli("telemetry", "apply", str(slow), code=2))
    assert str(slow) in line and "interval" in line

    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump({"profiles": [
        yaml.safe_load(slow.read_text()) | {"interval": 30, "name": "good"},
        yaml.safe_load(slow.read_text()) | {"interval": 30, "name": "bad", "commands": [
            {"command": "show clock", "parse": {"kind": "regex", "template": "(?P<t>.+)"},
             "metrics": [{"name": "clock", "field": "t", "kind": "sometimes"}]}]}]}))
    assert "profiles[1].commands[0].metrics[0].kind" in one_line_error(
        cli("telemetry", "apply", str(two), code=2))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    not_yaml = cli("telemetry", "apply", str(broken), code=2).stderr  # shows the bad line
    assert not_yaml.startswith(f"error: {broken}: not valid YAML") and "line 1" in not_yaml
    assert not {"too-fast", "good", "bad"} & {
        p["name"] for p in cli.json("telemetry", "profiles")}  # nothing was stored

    missing = cli("telemetry", "apply", str(tmp_path / "nope.yaml"), code=2)
    assert "does not exist" in missing.output
    assert "field one of name, tag" in usage_error(
        cli("telemetry", "latest", "--where", "colour=blue", code=2), "--where")
    assert "not a duration" in usage_error(
        cli("telemetry", "query", "--metric", "cpu_percent", "--step", "soon", code=2),
        "--step")
    assert "not a duration" in usage_error(cli("bottlenecks", "--window", "-5m", code=2),
                                           "--window")
    assert "robust" in usage_error(cli("bottlenecks", "--method", "guess", code=2), "--method")
    assert "not above 0" in usage_error(cli("bottlenecks", "--threshold", "0", code=2),
                                        "--threshold")
    assert "--off" in usage_error(cli("telemetry", "assign", "cisco_ios-default", code=2),
                                  "--where/--off")
    assert "--metric" in cli("telemetry", "query", code=2).output
