"""Logging: console lines for people, JSON lines with --log-json; never a secret."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from netfleet import log


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(json=True)
    structlog.get_logger("netfleet.test").info("device added", device="ios-00001")
    logging.getLogger("asyncssh").info("chatty library line")  # held back below WARNING
    line = capsys.readouterr().err.strip()
    event = json.loads(line)
    assert event["event"] == "device added" and event["device"] == "ios-00001"
    assert event["level"] == "info" and "timestamp" in event


def test_console_logs_are_readable(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(json=False, level="warning")
    structlog.get_logger("netfleet.test").info("hidden")
    structlog.get_logger("netfleet.test").warning("shown", device="eos-00002")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "shown" in err and "device=eos-00002" in err


@pytest.mark.parametrize("as_json", [False, True])
def test_a_logged_exception_shows_its_traceback_but_no_local_variable(
        capsys: pytest.CaptureFixture[str], as_json: bool) -> None:
    log.configure(json=as_json)

    def connect() -> None:
        password = "s3cret-device-pw"  # noqa: F841 (a local a traceback must not show)
        raise ConnectionError("refused")

    try:
        connect()
    except ConnectionError:
        structlog.get_logger("netfleet.test").exception("login failed", device="ios-00001")
    err = capsys.readouterr().err
    assert "ConnectionError: refused" in err and "connect" in err
    assert "s3cret-device-pw" not in err
