"""`netfleet devices|credentials|keys` as a user runs them: clients of a real API server (on
SQLite and PostgreSQL) through the SDK, with --url/--api-key."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner, Result

from netfleet.cli.app import app
from netfleet.sim.fleet import write_inventory
from tests.api.conftest import ServerThread
from tests.conftest import RunningSim, free_port

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No URL or key from the environment or a config file; logging as it was before (the
    CLI configures logging for the whole process)."""
    for var in ("NETFLEET_URL", "NETFLEET_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETFLEET_CLIENT_CONFIG", str(tmp_path / "no-such-client.yaml"))
    monkeypatch.setenv("COLUMNS", "200")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


class Cli:
    def __init__(self, api: ServerThread, role: str = "admin") -> None:
        self.url = api.url
        self.key = api.key(role)

    def __call__(self, *args: str, code: int = 0, key: str | None = None,
                 stdin: str | None = None) -> Result:
        result = runner.invoke(app, [*args, "--url", self.url, "--api-key", key or self.key],
                               input=stdin)
        assert result.exit_code == code, (args, result.output)
        return result

    def json(self, *args: str, key: str | None = None) -> Any:
        return json.loads(self(*args, "--json", key=key).stdout)


def one_line_error(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_devices_import_list_show_add_and_rm(api: ServerThread, sim: RunningSim,
                                             tmp_path: Path) -> None:
    cli = Cli(api)
    devices = sim.add(2, "cisco_ios") + sim.add(1, "arista_eos")
    fleet = tmp_path / "fleet.yaml"
    write_inventory(fleet, devices, sim.port)
    imported = cli("devices", "import", str(fleet))
    assert "devices 3 created" in imported.stdout and "profiles 3 created" in imported.stdout
    assert cli.json("devices", "import", str(fleet))["devices"]["unchanged"] == 3

    ios = [d.name for d in devices[:2]]
    assert [d["name"] for d in cli.json("devices", "list", "--where",
                                        "platform=cisco_ios")] == ios
    assert [d["name"] for d in cli.json("devices", "list", "-w", "name=ios-*",
                                        "-w", f"name={devices[2].name}")] == sorted(
        d.name for d in devices)
    table = cli("devices", "list").stdout
    assert all(d.name in table and d.address in table for d in devices)
    assert "3 devices" in table
    assert len(cli.json("devices", "list", "--limit", "2")) == 2

    shown = cli.json("devices", "show", devices[2].name)
    assert (shown["host"], shown["platform"], shown["facts_history"]) == (
        devices[2].address, "arista_eos", [])
    assert devices[2].address in cli("devices", "show", devices[2].name).stdout

    cli("devices", "add", "r9", "--host", "192.0.2.9", "--platform", "cisco_ios", "--tag",
        "core", "-t", "lab", "--var", "asn=65001", "--var", "role=spine", "--site", "lab1",
        "-c", devices[0].name)
    [r9] = cli.json("devices", "list", "--where", "tag=core", "--where", "tag=lab")
    assert (r9["name"], r9["vars"], r9["site"], r9["credentials"]) == (
        "r9", {"asn": 65001, "role": "spine"}, "lab1", devices[0].name)

    assert "Removed r9" in cli("devices", "rm", "r9").stdout
    assert one_line_error(cli("devices", "show", "r9", code=1)) == \
        "error: device 'r9' not found"
    bad = cli("devices", "add", "r10", "--host", "not a host", "--platform", "cisco_ios",
              code=1)
    assert "(field: host)" in one_line_error(bad)


def test_a_bad_import_is_refused_whole_naming_the_row_and_field(
        api: ServerThread, tmp_path: Path) -> None:
    cli = Cli(api)
    inventory = tmp_path / "inventory.csv"
    inventory.write_text("name,host,port,platform\nr1,192.0.2.1,22,cisco_ios\n"
                         "r2,192.0.2.2,ssh,cisco_ios\n")
    refused = cli("devices", "import", str(inventory), code=1)
    assert "nothing was imported" in refused.stderr and "line 3.port" in refused.stderr
    assert cli.json("devices", "list") == []


def test_credentials_take_secrets_hidden_and_never_show_them(
        api: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = Cli(api)
    monkeypatch.setenv("NF_TEST_PASSWORD", "pw-from-env-42")
    added = cli("credentials", "add", "lab", "-u", "netops", "--password-env",
                "NF_TEST_PASSWORD")
    assert "pw-from-env-42" not in added.output and "password" in added.stdout
    prompted = cli("credentials", "add", "core", "--username", "admin", "--enable-secret",
                   stdin="typed-pw-1\ntyped-pw-1\ntyped-en-2\ntyped-en-2\n")
    assert "typed-pw-1" not in prompted.output and "typed-en-2" not in prompted.output
    assert "Password" in prompted.stderr

    listed = cli.json("credentials", "list")
    assert [(p["name"], p["has_password"], p["has_enable_secret"]) for p in listed] == [
        ("core", True, True), ("lab", True, False)]
    table = cli("credentials", "list").stdout
    assert "password, enable secret" in table and "typed-pw-1" not in table

    missing = cli("credentials", "add", "x", "-u", "u", "--password-env", "NF_NOT_SET", code=2)
    assert "NF_NOT_SET" in missing.output
    assert "Removed credentials profile core" in cli("credentials", "rm", "core").stdout
    assert [p["name"] for p in cli.json("credentials", "list")] == ["lab"]
    assert "already exists" in one_line_error(
        cli("credentials", "add", "lab", "-u", "u", "--no-password", code=1))


def test_keys_create_list_and_revoke(api: ServerThread) -> None:
    cli = Cli(api)
    created = cli("keys", "create", "--role", "operator", "--name", "ci")
    token = created.stdout.strip()
    assert token.startswith("nf_") and "shown once" in created.stderr

    assert cli.json("devices", "list", key=token) == []
    denied = one_line_error(cli("devices", "add", "r1", "--host", "192.0.2.1", "--platform",
                                "cisco_ios", key=token, code=1))
    assert "admin role" in denied

    keys = cli.json("keys", "list")
    [ci] = [k for k in keys if k["name"] == "ci"]
    assert ci["role"] == "operator" and token not in json.dumps(keys)
    assert "ci" in cli("keys", "list").stdout
    assert f"Revoked key {ci['id']}" in cli("keys", "revoke", str(ci["id"])).stdout
    assert "revoked" in one_line_error(cli("devices", "list", key=token, code=1))
    assert "role" in one_line_error(cli("keys", "create", "--role", "root", "--name", "x",
                                        code=1))


def test_without_a_key_or_a_server_the_cli_says_so_in_one_line(api: ServerThread) -> None:
    no_key = runner.invoke(app, ["devices", "list", "--url", api.url])
    assert no_key.exit_code == 1 and "no API key" in one_line_error(no_key)
    nowhere = runner.invoke(app, ["devices", "list", "--url", f"http://127.0.0.1:{free_port()}",
                                  "--api-key", "nf_x"])
    assert nowhere.exit_code == 1 and "cannot reach" in one_line_error(nowhere)
