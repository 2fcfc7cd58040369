"""Small HTTP helpers shared by the inventory API tests."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM = "application/problem+json"


def add_device(client: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "host": "192.0.2.10", "platform": "cisco_ios", **fields}
    response = client.post("/devices", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem+json body of an error response, checked for the shape every error has."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    data: dict[str, Any] = response.json()
    assert data["status"] == status and data["detail"]
    return data


def invalid(response: httpx.Response) -> dict[str, str]:
    """The first error of a 422, which names the field and how to fix it."""
    error: dict[str, str] = problem(response, 422)["errors"][0]
    assert error["field"] and error["fix"], error
    return error


def names(client: httpx.Client, *where: str, **params: Any) -> list[str]:
    response = client.get("/devices", params={"where": list(where), **params})
    assert response.status_code == 200, response.text
    return [d["name"] for d in response.json()["devices"]]


def upload(client: httpx.Client, filename: str, text: str,
           secrets: tuple[str, str] | None = None) -> httpx.Response:
    files = {"file": (filename, text.encode())}
    if secrets is not None:
        files["secrets"] = (secrets[0], secrets[1].encode())
    return client.post("/devices/import", files=files)
