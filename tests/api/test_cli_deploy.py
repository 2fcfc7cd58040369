"""`netfleet deploy` as a user runs it: a client of a real API server (on SQLite and
PostgreSQL) whose deployments provision simulated devices and configure them over real SSH."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.api.conftest import ServerThread
from tests.api.test_cli_inventory import Cli, isolated, one_line_error  # noqa: F401 (fixture)
from tests.api.test_cli_telemetry import usage_error
from tests.api.test_deployments import TEMPLATE, deploy  # noqa: F401 (fixture)
from tests.conftest import RunningSim

REJECTED = TEMPLATE + "{% if node.ordinal == 1 %}ntp server {{ ntp }} prefer{% endif %}\n"


def template_file(tmp_path: Path, text: str = TEMPLATE) -> Path:
    path = tmp_path / "edge.j2"
    path.write_text(text)
    return path


def created(cli: Cli, *args: str, stdin: str | None = None) -> dict[str, Any]:
    made: dict[str, Any] = json.loads(cli("deploy", "create", *args, "--json",
                                          stdin=stdin).stdout)
    return made


def test_create_watch_show_update_and_rm(deploy: ServerThread, sim: RunningSim,  # noqa: F811
                                         tmp_path: Path) -> None:
    cli = Cli(deploy, "operator")
    made = created(cli, "edge", "--nodes", "2", "--template", str(template_file(tmp_path)),
                   "--var", "ntp=192.0.2.123", "--description", "two edge routers")
    assert (made["name"], made["target_node_count"], made["vars"], made["status"]) == (
        "edge", 2, {"ntp": "192.0.2.123"}, "pending")
    assert [d["id"] for d in cli.json("deploy", "list")] == [made["id"]]

    watched = cli("deploy", "watch", made["id"], "--interval", "0.2", "--timeout", "60").stdout
    assert "ready" in watched and "running 2" in watched and "observed 1 / target 1" in watched
    assert "configuring → running" in watched  # the newest events are shown

    shown = cli("deploy", "show", made["id"]).stdout
    assert "two edge routers" in shown and "running 2" in shown
    nodes = cli.json("deploy", "show", made["id"])["nodes"]
    assert [(n["ordinal"], n["state"]) for n in nodes] == [(0, "running"), (1, "running")]
    assert all(n["device"] in shown and n["ip_address"] in shown for n in nodes)
    assert all("192.0.2.123" in ntp(sim, n["device"]) for n in nodes)  # configured over SSH

    updated = cli("deploy", "update", made["id"], "--var", "ntp=192.0.2.124").stdout
    assert "generation 2 (was 1)" in updated
    assert cli.json("deploy", "show", made["id"])["vars"] == {"ntp": "192.0.2.124"}
    again = cli("deploy", "watch", made["id"], "--interval", "0.2", "--timeout", "60").stdout
    assert "ready" in again and "observed 2 / target 2" in again
    assert all("192.0.2.124" in ntp(sim, n["device"]) for n in nodes)  # pushed over SSH

    assert "from 2 to 1 node" in cli("deploy", "scale", made["id"], "1").stdout
    cli("deploy", "watch", made["id"], "--interval", "0.2", "--timeout", "60")
    assert [n["ordinal"] for n in cli.json("deploy", "show", made["id"])["nodes"]] == [0]

    assert f"Deleted deployment {made['id']}" in cli("deploy", "rm", made["id"]).stdout
    assert one_line_error(cli("deploy", "show", made["id"], code=1)) == \
        f"error: no deployment {made['id']}"
    assert cli.json("deploy", "list") == []


def test_watch_exits_1_naming_the_failed_node_and_retry_recovers_it(
        deploy: ServerThread, tmp_path: Path) -> None:  # noqa: F811
    cli = Cli(deploy, "operator")
    made = created(cli, "edge", "-n", "2", "--template", "-", "--var", "ntp=192.0.2.1",
                   stdin=REJECTED)
    failed = cli("deploy", "watch", made["id"], "--interval", "0.2", code=1).stdout
    assert "degraded" in failed and "failed nodes" in failed
    assert "configuring failed 3 times" in failed and "rejected" in failed
    [bad] = [n for n in cli.json("deploy", "show", made["id"])["nodes"]
             if n["state"] == "failed"]
    assert bad["ordinal"] == 1 and bad["id"] in failed

    cli("deploy", "update", made["id"], "--template", str(template_file(tmp_path)))
    assert f"Retrying node #1 ({bad['id']})" in cli("deploy", "retry", made["id"], "1").stdout
    cli("deploy", "watch", made["id"], "--interval", "0.2", "--timeout", "60")
    assert cli("deploy", "retry", made["id"]).stdout.strip() == "No failed nodes to retry."


def test_watch_times_out_with_exit_2_and_no_follow_prints_one_snapshot(
        deploy: ServerThread) -> None:  # noqa: F811
    provider: Any = deploy.services.deployments.providers["simulator"]
    provider.delay = 30.0  # provisioning outlasts the watch
    cli = Cli(deploy, "operator")
    made = created(cli, "slow", "--nodes", "1")
    late = cli("deploy", "watch", made["id"], "--interval", "0.1", "--timeout", "0.5", code=2)
    assert "timed out after 0.5s" in late.stderr and "still pending" in late.stderr
    snapshot = cli("deploy", "watch", made["id"], "--no-follow").stdout
    assert "pending" in snapshot and "observed 0 / target 1" in snapshot


def test_bad_options_are_usage_errors_naming_the_option(
        deploy: ServerThread, tmp_path: Path) -> None:  # noqa: F811
    cli = Cli(deploy, "operator")
    assert "KEY=VALUE" in usage_error(cli("deploy", "create", "edge", "--var", "ntp", code=2),
                                      "--var")
    assert "--vars-file" in usage_error(
        cli("deploy", "create", "edge", "--var", "ntp=[a, b]", code=2), "--var")
    listed = tmp_path / "vars.yaml"
    listed.write_text("- ntp\n")
    assert "mapping" in usage_error(
        cli("deploy", "create", "edge", "--vars-file", str(listed), code=2), "--vars-file")
    assert "--where" in usage_error(
        cli("deploy", "create", "edge", "--provider", "inventory", code=2), "--where")
    assert "inventory" in usage_error(
        cli("deploy", "create", "edge", "--where", "tag=edge", code=2), "--where")
    usage_error(cli("deploy", "create", "edge", "--nodes", "0", code=2), "--nodes")
    usage_error(cli("deploy", "create", "edge", "--template", str(tmp_path / "no.j2"),
                    code=2), "--template")
    assert "nothing to change" in cli("deploy", "update", "some-id", code=2).output
    assert cli.json("deploy", "list") == []  # nothing was created

    # What the API refuses is one line naming the field.
    refused = cli("deploy", "create", "edge", "--template", str(template_file(
        tmp_path, "ntp server {{ missing }}\n")), code=1)
    assert "(field: config_template)" in one_line_error(refused)
    assert one_line_error(cli("deploy", "watch", "no-such-id", code=1)) == \
        "error: no deployment no-such-id"


def ntp(sim: RunningSim, device: str) -> list[str]:
    return list(sim.run(lambda: sim.server.devices[device].running.ntp_servers))
