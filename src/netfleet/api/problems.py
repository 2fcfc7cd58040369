"""Errors to HTTP, in one place: RFC 9457 problem+json naming the field and the fix."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from netfleet.domain.errors import (
    AccessDenied,
    BackendUnavailable,
    Conflict,
    InvalidInput,
    NetfleetError,
    NotFound,
    Overloaded,
    ParseError,
    RenderError,
)

PROBLEM = "application/problem+json"
MAX_ERRORS = 1000  # listed in one response; the detail says how many there are

STATUS: list[tuple[type[NetfleetError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (RenderError, 422),
    (ParseError, 422),
    (Overloaded, 429),
    (BackendUnavailable, 503),
]


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(max(1, round(float(extra["retry_after"]))))
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def status_for(exc: NetfleetError) -> int:
    if isinstance(exc, AccessDenied):
        return 403 if exc.authenticated else 401
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


async def _netfleet_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NetfleetError)
    extra: dict[str, Any] = {"category": exc.category}
    if isinstance(exc, InvalidInput):
        # An inventory import reports every problem at once (InventoryError.problems).
        found = getattr(exc, "problems", None) or [exc]
        extra["errors"] = [{"field": p.field, "message": p.message, "fix": p.fix}
                           for p in found[:MAX_ERRORS]]
    if isinstance(exc, Overloaded):
        extra["retry_after"] = exc.retry_after
    status = status_for(exc)
    return problem(status, type(exc).__name__, exc.message, **extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"],
         "fix": _fix(e)}
        for e in exc.errors()
    ]
    fields = ", ".join(e["field"] for e in errors)
    return problem(422, "Invalid request", f"invalid field(s): {fields}", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, "HTTP error", str(exc.detail))


def _fix(error: Any) -> str:
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "add this field"
    if kind == "extra_forbidden":
        return "remove this field; it is not part of the request"
    if "expected" in ctx:
        return f"use one of: {ctx['expected']}"
    if kind.startswith(("greater_than", "less_than")):
        return f"use a value within the limit ({', '.join(f'{k} {v}' for k, v in ctx.items())})"
    return "see the schema at /docs"


def install(app: FastAPI) -> None:
    app.add_exception_handler(NetfleetError, _netfleet_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
