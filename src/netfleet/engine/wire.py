"""What travels between controllers and agents, as stream entries (JSON-able dicts).

Work (controller -> the owner of a device's partition):
    {"t": "task", "task": DeviceTask}         run it, in stream order per device
    {"t": "cancel", "jobs": [child job ids]}
Observations (agent -> recorder), in batches carrying the agent and the fencing token of the
lease they were made under (one stream entry per batch: far fewer Redis commands than one per
observation):
    {"t": "batch", "agent", "token", "items": [observation, …]}
    observation: {"t": "result", "r": DeviceResult}       every status change
                 {"t": "poll", "d": device, "p": profile, "s": [samples], "c", "m"}
(A single observation with its own "agent" and "token" is read as a batch of one.)
Desired state (controller -> agents), one entry per device in the partition's snapshot:
    {"target": Fernet token of the Target as JSON, "polls": [Profile]}

Targets hold secrets: they travel and rest encrypted with the cluster's secret key, which
agents need (and no database credentials).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from cryptography.fernet import Fernet

from netfleet.domain.jobs import DeviceResult, DeviceTask
from netfleet.domain.ports import Target
from netfleet.domain.telemetry import Profile, Sample


def task(t: DeviceTask) -> dict[str, Any]:
    return {"t": "task", "task": t.model_dump(mode="json", exclude_defaults=True)}


def cancel(job_ids: Iterable[str]) -> dict[str, Any]:
    return {"t": "cancel", "jobs": sorted(job_ids)}


def batch(items: list[dict[str, Any]], agent: str, token: int) -> dict[str, Any]:
    return {"t": "batch", "agent": agent, "token": token, "items": items}


def unbatch(body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """(fencing token, observations) of a stream entry. Raises ValueError if malformed."""
    token = body.get("token")
    if not isinstance(token, int):
        raise ValueError("no fencing token")
    if body.get("t") == "batch":
        items = body.get("items")
        if not isinstance(items, list):
            raise ValueError("a batch without items")
        return token, items
    return token, [body]


def result(r: DeviceResult) -> dict[str, Any]:
    return {"t": "result", "r": r.model_dump(mode="json", exclude_defaults=True)}


def poll(device: str, profile: str, samples: Iterable[Sample], category: str | None,
         message: str | None) -> dict[str, Any]:
    return {"t": "poll", "d": device, "p": profile,
            "s": [[s.metric, s.value, s.ts, [list(kv) for kv in s.labels], s.unit]
                  for s in samples],
            "c": category, "m": message}


def samples(body: dict[str, Any]) -> list[Sample]:
    device = body["d"]
    return [Sample(device, metric, float(value), float(ts),
                   tuple((str(k), str(v)) for k, v in labels), unit)
            for metric, value, ts, labels, unit in body["s"]]


def read_task(body: dict[str, Any]) -> DeviceTask:
    return DeviceTask.model_validate(body["task"])


def read_result(body: dict[str, Any]) -> DeviceResult:
    return DeviceResult.model_validate(body["r"])


def device_entry(target: Target, polls: Iterable[Profile], key: Fernet) -> dict[str, Any]:
    sealed = key.encrypt(json.dumps(asdict(target)).encode()).decode()
    return {"target": sealed, "polls": [p.model_dump(mode="json") for p in polls]}


def open_target(entry: dict[str, Any], key: Fernet) -> Target:
    return Target(**json.loads(key.decrypt(entry["target"].encode())))


def read_polls(entry: dict[str, Any]) -> list[Profile]:
    return [Profile.model_validate(p) for p in entry.get("polls", ())]
