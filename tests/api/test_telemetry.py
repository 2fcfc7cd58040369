"""Telemetry through the REST API against the simulator over real SSH, on SQLite and PostgreSQL:
profiles assigned by selector, polls on the persistent session, samples stored and queried,
latest values with staleness, and /metrics as Prometheus parses it."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from netfleet.sim.telemetry import Degradation
from tests.api.conftest import ServerThread, register
from tests.conftest import RunningSim


def until(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def fast_default(admin: httpx.Client, platform: str, where: list[str],
                 interval: float = 1.0) -> dict[str, Any]:
    """The built-in profile of the platform, polled every `interval` seconds."""
    builtin = admin.get(f"/telemetry/profiles/{platform}-default")
    assert builtin.status_code == 200, builtin.text
    profile = {**builtin.json()["profile"], "name": f"{platform}-fast", "interval": interval}
    response = admin.post("/telemetry/profiles", json={"profile": profile, "where": where})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def latest(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/telemetry/latest", params=params)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["latest"]
    return rows


def test_an_assigned_profile_polls_stores_and_serves_metrics(
        api: ServerThread, sim: RunningSim) -> None:
    with api.client("admin") as admin, api.client("viewer") as viewer:
        devices = register(admin, sim, "cisco_ios", 2, tags=["polled"])
        register(admin, sim, "cisco_ios", 1, tags=["not-polled"])
        logins_before = api.services.engine.sessions_opened
        created = fast_default(admin, "cisco_ios", ["tag=polled"])
        assert created["devices"] == 2 and created["builtin"] is False

        def rates_for_both() -> bool:
            rows = latest(viewer, metric="throughput_bps")
            return {r["device"] for r in rows} == {d.name for d in devices}

        until(rates_for_both, what="throughput (a rate: two polls) from both devices")
        rows = latest(viewer, device=devices[0].name)
        by_metric = {r["metric"]: r for r in rows if not r["labels"]}
        assert {"cpu_percent", "memory_used_percent", "latency_ms", "throughput_bps",
                "error_rate"} <= set(by_metric)
        assert 0 <= by_metric["cpu_percent"]["value"] <= 100
        assert by_metric["throughput_bps"]["value"] > 0
        assert not any(r["stale"] for r in rows)
        interfaces = {r["labels"]["interface"] for r in rows if r["metric"] == "if_in_bps"}
        assert len(interfaces) >= 8

        # Stored: newest first, filtered by device and metric; downsampled with step.
        def stored(name: str) -> list[dict[str, Any]]:
            points: list[dict[str, Any]] = viewer.get("/telemetry", params={
                "device": name, "metric": "cpu_percent"}).json()["points"]
            return points

        until(lambda: all(len(stored(d.name)) >= 3 for d in devices),
              what="three stored cpu samples per device")
        points = stored(devices[0].name)
        times = [p["time"] for p in points]
        assert times == sorted(times, reverse=True)
        assert {p["device"] for p in points} == {devices[0].name}
        stepped = viewer.get("/telemetry", params={"where": "tag=polled",
                                                   "metric": "cpu_percent", "step": "1h"})
        assert stepped.status_code == 200, stepped.text
        buckets = stepped.json()["points"]
        assert {p["device"] for p in buckets} == {d.name for d in devices}
        for d in devices:  # (a poll may straddle an hour boundary: then two buckets)
            mine = [p for p in buckets if p["device"] == d.name]
            assert len(mine) <= 2 and sum(p["count"] for p in mine) >= 3
        assert all(p["min"] - 1e-9 <= p["value"] <= p["max"] + 1e-9 for p in buckets)

        # Prometheus can read /metrics, with device labels on the device metrics.
        text = httpx.get(api.url + "/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        cpu = families["netfleet_device_cpu_percent"]
        assert {s.labels["device"] for s in cpu.samples} == {d.name for d in devices}
        polls = {s.labels["outcome"]: s.value for s in families["netfleet_polls"].samples
                 if s.name == "netfleet_polls_total"}
        assert polls["ok"] >= 4
        assert families["netfleet_polled_devices"].samples[0].value == 2
        assert "netfleet_sample_write_seconds" in families

        # Polls ran on each device's persistent session: one login each, not one per poll.
        assert api.services.engine.sessions_opened - logins_before == len(devices)


def test_a_device_that_stops_answering_is_marked_stale(
        api: ServerThread, sim: RunningSim) -> None:
    with api.client("admin") as admin:
        [device] = register(admin, sim, "cisco_ios", 1, tags=["flaky"])
        fast_default(admin, "cisco_ios", ["tag=flaky"])
        until(lambda: latest(admin, device=device.name, metric="cpu_percent"),
              what="a first cpu sample")
        sim.set_faults(device, auth_fail=True, drop_probability=1.0)

        def stale() -> list[dict[str, Any]]:
            rows = latest(admin, device=device.name, metric="cpu_percent")
            return [r for r in rows if r["stale"]]

        [row] = until(stale, what="the device marked stale")
        assert row["reason"] and ("auth" in row["reason"] or "session" in row["reason"])
        text = httpx.get(api.url + "/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        stale_flags = {s.labels["device"]: s.value
                       for s in families["netfleet_device_stale"].samples}
        assert stale_flags[device.name] == 1.0
        sim.set_faults(device)


def test_profiles_are_validated_and_admin_only(api: ServerThread) -> None:
    with api.client("admin") as admin, api.client("operator") as operator:
        listed = admin.get("/telemetry/profiles").json()["profiles"]
        assert {"cisco_ios-default", "arista_eos-default", "juniper_junos-default"} <= {
            p["name"] for p in listed}
        assert all(p["builtin"] and p["where"] == [] for p in listed)  # polling nothing
        bad = admin.post("/telemetry/profiles", json={"profile": {
            "name": "x", "platform": "cisco_ios", "interval": 0.1, "commands": []}})
        assert bad.status_code == 422
        assert any("interval" in str(e.get("field", "")) for e in bad.json()["errors"])
        bad_where = admin.patch("/telemetry/profiles/cisco_ios-default",
                                json={"where": ["colour=blue"]})
        assert bad_where.status_code == 422 and bad_where.json()["errors"][0]["field"] == "where"
        assert operator.patch("/telemetry/profiles/cisco_ios-default",
                              json={"where": ["name=*"]}).status_code == 403
        assert admin.get("/telemetry/profiles/nope").status_code == 404
        bad_step = admin.get("/telemetry", params={"step": "soon"})
        assert bad_step.status_code == 422 and bad_step.json()["errors"][0]["field"] == "step"


def test_bottlenecks_name_the_degraded_device_and_why(api: ServerThread, sim: RunningSim) -> None:
    with api.client("admin") as admin, api.client("viewer") as viewer:
        devices = register(admin, sim, "cisco_ios", 8, tags=["peers"])
        worst = devices[3]

        sim.run(lambda: _degrade(worst, True))
        fast_default(admin, "cisco_ios", ["tag=peers"])
        # Rates (error rate, throughput) take two polls: judge once every device has them.
        until(lambda: len(latest(viewer, where="tag=peers", metric="error_rate")) == 8,
              timeout=60, what="error rates from all eight devices")

        def compared() -> dict[str, Any] | None:
            found = viewer.get("/bottlenecks", params={"window": "5m", "where": "tag=peers"})
            assert found.status_code == 200, found.text
            data: dict[str, Any] = found.json()
            # The slow device's first samples land after its peers': judge once it has some.
            return data if data["devices_compared"] == 8 and data["bottlenecks"] else None

        body = until(compared, timeout=60,
                     what="stored samples from all eight devices, one flagged")
        assert body["devices_compared"] == 8 and body["method"] == "robust"
        # Worst first. (With eight peers of mixed models a healthy one may show up too: a
        # small switch carries less than a big one, and healthy latencies spread 0.8-4 ms.)
        flagged = body["bottlenecks"][0]
        assert flagged["device"] == worst.name, body["bottlenecks"]
        others = body["bottlenecks"][1:]
        assert all(o["deviation_score"] < flagged["deviation_score"] for o in others)
        # It is 8x slower, carries a fifth and has 300x the errors. Which of these stand out
        # against seven mixed peers varies with the peers; the reason names those that do.
        standing_out = {m for m, v in flagged["metrics"].items() if v["z"] >= 2}
        assert standing_out, flagged
        words = {"latency_ms": "latency", "throughput_bps": "throughput",
                 "error_rate": "error rate"}
        assert all(words[m] in flagged["reason"] for m in standing_out), flagged
        assert "peers" in flagged["reason"]
        assert flagged["deviation_score"] > 0
        bad = viewer.get("/bottlenecks", params={"method": "guess"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "method"


class HookReceiver:
    """A real HTTP endpoint on loopback, in a thread, collecting webhook events."""

    def __init__(self) -> None:
        events: list[tuple[str, dict[str, Any]]] = []
        self.events = events

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                data = json.loads(body)
                events.append((data["event"], data["data"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_bottleneck_that_appears_and_clears_fires_webhooks(
        api: ServerThread, sim: RunningSim) -> None:
    telemetry = api.services.telemetry
    receiver = HookReceiver()
    saved = telemetry.alert_webhook, telemetry.alert_window
    telemetry.alert_webhook, telemetry.alert_window = receiver.url, 4.0
    try:
        with api.client("admin") as admin:
            devices = register(admin, sim, "cisco_ios", 8, tags=["alerting"])
            fast_default(admin, "cisco_ios", ["tag=alerting"])

            def healthy_pass() -> dict[str, list[str]] | None:
                found, compared = api.call(telemetry.bottlenecks(window=4.0,
                                                                 where=["tag=alerting"]))
                return {"flagged": [b.device for b in found]} if compared == 8 else None

            until(lambda: len(latest(admin, where="tag=alerting", metric="throughput_bps")) == 8,
                  timeout=60, what="rates (two polls) from all eight devices")
            healthy = until(healthy_pass, timeout=60, what="all eight devices stored")
            # Degrade the unflagged device nearest the median throughput: models differ in
            # size, and one at either end may stand out on throughput even when healthy, so
            # that its recovery would not clear it.
            rates = {r["device"]: r["value"] for r in latest(
                admin, where="tag=alerting", metric="throughput_bps")}
            middle = sorted(rates.values())[len(rates) // 2]
            worst = min((d for d in devices if d.name not in healthy["flagged"]),
                        key=lambda d: abs(rates[d.name] - middle))
            sim.run(lambda: _degrade(worst, True))
            until(lambda: worst.name in api.call(telemetry.check_alerts())[0]
                  or worst.name in telemetry.flagged, timeout=60,
                  what="the degraded device flagged")
            until(lambda: any(e == "bottleneck.appeared" and d["device"] == worst.name
                              for e, d in receiver.events), what="the appeared event")
            appeared = next(d for e, d in receiver.events
                            if e == "bottleneck.appeared" and d["device"] == worst.name)
            # The reason names what stands out: slower, busier with errors, or carrying less
            # (any of the three the degradation moved may cross the threshold first).
            assert re.search(r"(latency|error rate) [\d.]+σ above peers|throughput [\d.]+σ "
                             r"below peers", appeared["reason"]), appeared["reason"]
            assert appeared["deviation_score"] > 0

            sim.run(lambda: _degrade(worst, False))  # the device recovers
            until(lambda: worst.name in api.call(telemetry.check_alerts())[1]
                  or worst.name not in telemetry.flagged, timeout=60,
                  what="the recovered device cleared")
            until(lambda: ("bottleneck.cleared", {"device": worst.name, "window_seconds": 4.0})
                  in receiver.events, what="the cleared event")
    finally:
        telemetry.alert_webhook, telemetry.alert_window = saved
        telemetry.flagged = {}
        receiver.close()


def _degrade(device: Any, on: bool) -> None:
    device.degradation = Degradation(latency_factor=8.0, throughput_factor=0.2,
                                     error_factor=300.0) if on else None
    device._telemetry = None  # the model is rebuilt from the new degradation
