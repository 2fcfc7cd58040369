"""netfleet's Python SDK: a thin, typed client of the REST API (httpx).

    from netfleet.client import Client
    with Client.from_env() as nf:
        job = nf.submit({"kind": "command", "where": ["tag=core"], "commands": ["show version"]})
        done = nf.job(job.id, wait=30)
        cpu = nf.telemetry_latest(where=["tag=core"], metric="cpu_percent")

API errors come back as netfleet's own exceptions (NotFound, InvalidInput, Overloaded, …).
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from netfleet.domain.errors import (
    AccessDenied,
    Conflict,
    InvalidInput,
    NetfleetError,
    NotFound,
    Overloaded,
)
from netfleet.domain.jobs import JobRequest, JobView
from netfleet.domain.telemetry import Profile

__all__ = ["Client", "ClientConfig", "config_paths"]

DEFAULT_URL = "http://127.0.0.1:8000"


def config_paths() -> list[Path]:
    """Where `netfleet up` writes, and the CLI reads, the server URL and API key."""
    explicit = os.environ.get("NETFLEET_CLIENT_CONFIG")
    if explicit:
        return [Path(explicit)]
    home = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return [Path(".netfleet") / "client.yaml", home / "netfleet" / "client.yaml"]


class ClientConfig:
    def __init__(self, url: str, api_key: str | None) -> None:
        self.url = url
        self.api_key = api_key

    @classmethod
    def resolve(cls, url: str | None = None, api_key: str | None = None) -> ClientConfig:
        """Flags first, then NETFLEET_URL / NETFLEET_API_KEY, then the config file."""
        file: dict[str, Any] = {}
        for path in config_paths():
            if path.is_file():
                file = yaml.safe_load(path.read_text()) or {}
                break
        return cls(
            url=url or os.environ.get("NETFLEET_URL") or file.get("url") or DEFAULT_URL,
            api_key=api_key or os.environ.get("NETFLEET_API_KEY") or file.get("api_key"),
        )


class Client:
    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, *,
                 timeout: float = 60.0) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/") + "/api/v1", headers=headers,
                                  timeout=timeout)

    @classmethod
    def from_env(cls, url: str | None = None, api_key: str | None = None) -> Client:
        config = ClientConfig.resolve(url, api_key)
        return cls(config.url, config.api_key)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise NetfleetError(f"cannot reach the netfleet API at {self._http.base_url}: "
                                f"{exc}; is `netfleet up` running? (--url / NETFLEET_URL)"
                                ) from None
        if response.status_code >= 400:
            raise _error(response)
        return response.json() if response.content else None

    # -- devices ---------------------------------------------------------------------------
    def devices(self, where: list[str] | None = None, *, limit: int = 100,
                after: str | None = None) -> dict[str, Any]:
        """One page: {"devices": [...], "next": cursor}; pass `next` as `after` for the next."""
        params: dict[str, Any] = {"limit": limit}
        if where:
            params["where"] = where
        if after is not None:
            params["after"] = after
        result: dict[str, Any] = self._call("GET", "/devices", params=params)
        return result

    def device(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/devices/{name}")
        return result

    def add_device(self, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/devices", json=fields)
        return result

    def update_device(self, name: str, **fields: Any) -> dict[str, Any]:
        """Change the given fields only; None clears driver, site or credentials."""
        result: dict[str, Any] = self._call("PATCH", f"/devices/{name}", json=fields)
        return result

    def remove_device(self, name: str) -> None:
        self._call("DELETE", f"/devices/{name}")

    def import_inventory(self, path: Path) -> dict[str, Any]:
        """Upload a YAML or CSV inventory (with the secrets file its credentials_file names,
        when that is beside it); returns created/updated/unchanged counts."""
        files = {"file": (path.name, path.read_bytes())}
        secrets = _secrets_beside(path)
        if secrets is not None:
            files["secrets"] = (secrets.name, secrets.read_bytes())
        result: dict[str, Any] = self._call("POST", "/devices/import", files=files)
        return result

    # -- credentials profiles (secrets go in, never come back) -----------------------------
    def add_credentials(self, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/credentials", json=fields)
        return result

    def credentials(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/credentials"))

    def credential(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/credentials/{name}")
        return result

    def update_credentials(self, name: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PATCH", f"/credentials/{name}", json=fields)
        return result

    def remove_credentials(self, name: str) -> None:
        self._call("DELETE", f"/credentials/{name}")

    # -- jobs ------------------------------------------------------------------------------
    def submit(self, request: JobRequest | dict[str, Any]) -> JobView:
        body = request if isinstance(request, dict) else request.model_dump(exclude_none=True)
        return JobView.model_validate(self._call("POST", "/jobs", json=body))

    def job(self, job_id: str, *, wait: float = 0) -> JobView:
        params = {"wait": wait} if wait else {}
        return JobView.model_validate(self._call("GET", f"/jobs/{job_id}", params=params,
                                                 timeout=wait + 30))

    def jobs(self, *, status: str | None = None, kind: str | None = None,
             device: str | None = None, limit: int = 50, after: str | None = None
             ) -> list[JobView]:
        params = {k: v for k, v in {"status": status, "kind": kind, "device": device,
                                    "limit": limit, "after": after}.items() if v is not None}
        data = self._call("GET", "/jobs", params=params)
        return [JobView.model_validate(j) for j in data["jobs"]]

    def cancel(self, job_id: str) -> JobView:
        return JobView.model_validate(self._call("DELETE", f"/jobs/{job_id}"))

    # -- telemetry -------------------------------------------------------------------------
    def telemetry_profiles(self) -> list[dict[str, Any]]:
        """Every profile with its `where`, `enabled`, `builtin` and how many devices poll it."""
        return list(self._call("GET", "/telemetry/profiles")["profiles"])

    def telemetry_profile(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/telemetry/profiles/{name}")
        return result

    def create_telemetry_profile(self, profile: Profile | dict[str, Any],
                                 where: list[str] | None = None, *, enabled: bool = True
                                 ) -> dict[str, Any]:
        """A new profile (Conflict when the name is taken); `where` [] polls no device."""
        result: dict[str, Any] = self._call("POST", "/telemetry/profiles",
                                            json=_profile_body(profile, where, enabled))
        return result

    def replace_telemetry_profile(self, profile: Profile | dict[str, Any],
                                  where: list[str] | None = None, *, enabled: bool = True
                                  ) -> dict[str, Any]:
        """Store the profile under its name, replacing one of that name if there is one."""
        body = _profile_body(profile, where, enabled)
        name = body["profile"].get("name")
        if not name:
            raise InvalidInput("the profile has no name", field="profile.name",
                               fix="give the profile a `name`")
        result: dict[str, Any] = self._call("PUT", f"/telemetry/profiles/{name}", json=body)
        return result

    def assign_telemetry_profile(self, name: str, where: list[str] | None = None, *,
                                 enabled: bool | None = None) -> dict[str, Any]:
        """Change which devices the profile polls, or switch it on or off; None keeps."""
        body = {k: v for k, v in {"where": where, "enabled": enabled}.items() if v is not None}
        result: dict[str, Any] = self._call("PATCH", f"/telemetry/profiles/{name}", json=body)
        return result

    def remove_telemetry_profile(self, name: str) -> None:
        self._call("DELETE", f"/telemetry/profiles/{name}")

    def telemetry_samples(self, *, metric: str | None = None, device: str | None = None,
                          where: list[str] | None = None, start: datetime | None = None,
                          end: datetime | None = None, limit: int = 1000,
                          step: str | None = None, interface: str | None = None
                          ) -> dict[str, Any]:
        """{"start", "end", "step", "points"}: points newest first; with `step` (e.g. "5m")
        one point per series per step, with min, max and count. Default range: the last hour."""
        params = _params(metric=metric, device=device, where=where or None,
                         start=start.isoformat() if start else None,
                         end=end.isoformat() if end else None, limit=limit, step=step,
                         interface=interface)
        result: dict[str, Any] = self._call("GET", "/telemetry", params=params)
        return result

    def telemetry_latest(self, *, metric: str | None = None, device: str | None = None,
                         where: list[str] | None = None) -> list[dict[str, Any]]:
        """The newest value of every series; `stale` and `reason` say when it is old."""
        params = _params(metric=metric, device=device, where=where or None)
        return list(self._call("GET", "/telemetry/latest", params=params)["latest"])

    def bottlenecks(self, *, window: str = "10m", where: list[str] | None = None,
                    method: str = "robust", threshold: float = 2.0) -> dict[str, Any]:
        """Devices deviating from their peers, worst first, and `devices_compared`."""
        params = _params(window=window, where=where or None, method=method,
                         threshold=threshold)
        result: dict[str, Any] = self._call("GET", "/bottlenecks", params=params)
        return result

    # -- deployments -----------------------------------------------------------------------
    def deployments(self, skip: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """One page of deployments, oldest first."""
        return list(self._call("GET", "/deployments", params={"skip": skip, "limit": limit}))

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        """Its `status` (pending, ready, degraded, deleting), `node_counts` per state and
        `target_generation` / `observed_generation`."""
        result: dict[str, Any] = self._call("GET", f"/deployments/{deployment_id}")
        return result

    def create_deployment(self, **fields: Any) -> dict[str, Any]:
        """`name`, `target_node_count` and optionally `provider`, `config_template`, `vars`,
        `telemetry_profile`, `options`, `remediate`, `description`; the nodes start pending."""
        result: dict[str, Any] = self._call("POST", "/deployments", json=fields)
        return result

    def update_deployment(self, deployment_id: str, **fields: Any) -> dict[str, Any]:
        """Change the given fields only; a new `config_template` or `vars` (which replaces the
        old vars whole) is a new generation for every node."""
        result: dict[str, Any] = self._call("PATCH", f"/deployments/{deployment_id}",
                                            json=fields)
        return result

    def scale_deployment(self, deployment_id: str, count: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/deployments/{deployment_id}/scale",
                                            json={"target_node_count": count})
        return result

    def remove_deployment(self, deployment_id: str) -> None:
        """Returns at once; the deployment shows `deleting` until its nodes are released."""
        self._call("DELETE", f"/deployments/{deployment_id}")

    def deployment_nodes(self, deployment_id: str, skip: int = 0, limit: int = 1000
                         ) -> list[dict[str, Any]]:
        """Its nodes by ordinal, each with `state`, generations, `attempts` and `reason`."""
        return list(self._call("GET", f"/deployments/{deployment_id}/nodes",
                               params={"skip": skip, "limit": limit}))

    def retry_node(self, deployment_id: str, node_id: str) -> dict[str, Any]:
        """A failed node starts its lifecycle again (InvalidInput when it has not failed)."""
        result: dict[str, Any] = self._call(
            "POST", f"/deployments/{deployment_id}/nodes/{node_id}/retry")
        return result

    def remove_node(self, deployment_id: str, node_id: str) -> None:
        """Release the node; the deployment wants one node fewer."""
        self._call("DELETE", f"/deployments/{deployment_id}/nodes/{node_id}")

    def deployment_events(self, deployment_id: str, after: int = 0, limit: int = 100
                          ) -> list[dict[str, Any]]:
        """The audit log, oldest first; pass the last `id` seen as `after` for the next page."""
        return list(self._call("GET", f"/deployments/{deployment_id}/events",
                               params={"after": after, "limit": limit}))

    def deployment_telemetry(self, deployment_id: str, node_id: str | None = None,
                             start_time: datetime | None = None,
                             end_time: datetime | None = None, limit: int = 100
                             ) -> list[dict[str, Any]]:
        """Per node and poll, newest first: latency_ms, throughput_gbps, error_rate.
        Default range: the last hour."""
        params = _params(node_id=node_id,
                         start_time=start_time.isoformat() if start_time else None,
                         end_time=end_time.isoformat() if end_time else None, limit=limit)
        return list(self._call("GET", f"/deployments/{deployment_id}/telemetry",
                               params=params))

    def deployment_bottlenecks(self, deployment_id: str, analysis_window_minutes: int = 10, *,
                               method: str = "robust", threshold: float = 2.0
                               ) -> list[dict[str, Any]]:
        """The deployment's nodes that deviate from the other nodes, worst first."""
        params = {"analysis_window_minutes": analysis_window_minutes, "method": method,
                  "threshold": threshold}
        return list(self._call("GET", f"/deployments/{deployment_id}/bottlenecks",
                               params=params))

    # -- keys and templates ----------------------------------------------------------------
    def create_key(self, name: str, role: str) -> dict[str, Any]:
        """A new key; its `token` is in this answer only."""
        result: dict[str, Any] = self._call("POST", "/keys", json={"name": name, "role": role})
        return result

    def keys(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/keys"))

    def revoke_key(self, key_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/keys/{key_id}")
        return result

    def render(self, template: str, variables: dict[str, Any]) -> str:
        return str(self._call("POST", "/templates/render",
                              json={"template": template, "vars": variables})["text"])

    def parse(self, output: str, *, platform: str, command: str, kind: str = "textfsm",
              template: str | None = None) -> list[dict[str, Any]]:
        body = {"output": output, "platform": platform, "command": command, "kind": kind,
                "template": template}
        return list(self._call("POST", "/templates/parse", json=body)["records"])


def _profile_body(profile: Profile | dict[str, Any], where: list[str] | None,
                  enabled: bool) -> dict[str, Any]:
    body = profile if isinstance(profile, dict) else profile.model_dump(mode="json")
    return {"profile": body, "where": where or [], "enabled": enabled}


def _params(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


# A top-level `credentials_file: name` line, found without parsing a 10,000-device file.
_CREDENTIALS_FILE = re.compile(r"^credentials_file:.*$", re.MULTILINE)


def _secrets_beside(path: Path) -> Path | None:
    if path.suffix.lower() not in (".yaml", ".yml"):
        return None
    text = path.read_text(encoding="utf-8-sig")
    found = _CREDENTIALS_FILE.search(text)
    if found is None and "credentials_file" not in text:
        return None
    try:
        data = yaml.safe_load(found.group(0) if found else text) or {}
    except yaml.YAMLError:
        return None  # the server says what is wrong with the file
    name = data.get("credentials_file") if isinstance(data, dict) else None
    if not name:
        return None
    candidate = path.parent / str(name)
    return candidate if candidate.is_file() else None


def _error(response: httpx.Response) -> NetfleetError:
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text}
    detail = str(body.get("detail") or response.reason_phrase)
    status = response.status_code
    if status in (401, 403):
        return AccessDenied(detail, authenticated=status == 403)
    if status == 404:
        return NotFound(detail)
    if status == 409:
        return Conflict(detail)
    if status == 422:
        errors = body.get("errors") or [{}]
        return InvalidInput(detail, field=str(errors[0].get("field", "")),
                            fix=str(errors[0].get("fix", "")))
    if status == 429:
        return Overloaded(detail, retry_after=float(response.headers.get("Retry-After", 1)))
    return NetfleetError(f"HTTP {status}: {detail}")
