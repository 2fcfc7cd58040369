"""`netfleet sim` as an operator runs it: a real process, its inventory, its control commands."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from netfleet.bench.sim import Session, _free_port, simulator
from netfleet.cli.app import app

runner = CliRunner()


def cli(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


async def test_sim_process_inventory_and_control(tmp_path: Path) -> None:
    port = _free_port()
    out = tmp_path / "fleet.yaml"
    args = ["--devices", "6", "--port", str(port), "--base-ip", "127.60.0.1", "--out", str(out),
            "--degraded", "50%"]
    async with simulator(args, wait_devices=6) as sim:
        control = ["--control", sim.control]
        inventory = yaml.safe_load(out.read_text())
        secrets_file = tmp_path / inventory["credentials_file"]
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        secrets = yaml.safe_load(secrets_file.read_text())["credentials"]
        devices = inventory["devices"]
        assert len(devices) == 6
        assert {d["platform"] for d in devices} >= {"cisco_ios"}
        assert all("password" not in json.dumps(d) for d in devices)  # secrets stay apart

        first = devices[0]
        creds = secrets[first["credentials"]]
        session = await Session.open(first["host"], first["port"], creds["username"],
                                     creds["password"], first["platform"])
        await session.close()

        listed = json.loads(cli("sim", "devices", "--json", *control))
        assert listed["total"] == 6
        assert "password" not in json.dumps(listed)

        added = cli("sim", "add", "2", "--platform", "cisco_ios", *control)
        assert added.count("cisco_ios") == 2
        new_name, new_host = added.split()[0], added.split()[1].split(":")[0]
        assert json.loads(cli("sim", "devices", "--json", *control))["total"] == 8

        changed = json.loads(cli("sim", "faults", new_name, "--login-delay", "1.5s", *control))
        assert changed["login_delay"] == 1.5
        fleet = json.loads(cli("sim", "faults", "--config-error-rate", "5%", *control))
        assert fleet["config_error_rate"] == 0.05

        truth = json.loads(cli("sim", "truth", *control))
        assert truth["devices"] == 8 and truth["fraction"] == 0.5
        for entry in truth["degraded"].values():
            assert entry["latency_factor"] > 1 and entry["throughput_factor"] < 1

        cli("sim", "rm", new_name, *control)
        with pytest.raises(OSError):
            await Session.open(new_host, port, "admin", "x")

        bad = runner.invoke(app, ["sim", "faults", "--config-error-rate", "2", *control])
        assert bad.exit_code != 0 and "outside 0..1" in bad.output


def test_bad_options_name_the_option_and_the_fix() -> None:
    result = runner.invoke(app, ["sim", "--base-ip", "10.0.0.1", "--devices", "1",
                                 "--control-port", "0"])
    assert result.exit_code == 2
    assert "loopback" in result.output
    result = runner.invoke(app, ["sim", "--platform", "nokia_sros", "--devices", "1"])
    assert result.exit_code == 2 and "nokia_sros" in result.output
    result = runner.invoke(app, ["sim", "--login-delay", "soon"])
    assert result.exit_code == 2 and "duration" in result.output


async def test_control_api_refuses_bad_fault_values_by_name() -> None:
    port = _free_port()
    async with simulator(["--devices", "1", "--port", str(port), "--base-ip", "127.61.0.1"],
                         wait_devices=1) as sim, httpx.AsyncClient(base_url=sim.control) as http:
        bad = await http.patch("/faults", json={"config_error_rate": 3})
        assert bad.status_code == 422 and "config_error_rate" in bad.text
        bad = await http.patch("/faults", json={"hang_pattern": "show ("})
        assert bad.status_code == 422 and "regular expression" in bad.text
        bad = await http.patch("/faults", json={"colour": "blue"})
        assert bad.status_code == 422 and "colour" in bad.text
        missing = await http.get("/devices/no-such-box")
        assert missing.status_code == 404 and "no-such-box" in missing.text
        assert (await http.get("/faults")).json()["config_error_rate"] == 0.0  # nothing lost
