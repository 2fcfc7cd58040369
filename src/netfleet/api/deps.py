"""Request dependencies: the services container and the caller's API key with its role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from netfleet.domain.errors import AccessDenied

ROLES = ("viewer", "operator", "admin")  # each includes the ones before it

_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def services(request: Request) -> Any:
    return request.app.state.services


ServicesDep = Annotated[Any, Depends(services)]


class Caller:
    def __init__(self, name: str, role: str) -> None:
        self.name = name
        self.role = role

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


async def caller(request: Request, key: Annotated[str | None, Depends(_header)]) -> Caller:
    if not key:
        raise AccessDenied("no API key; send it in the X-API-Key header "
                           "(`netfleet keys create` makes one)")
    found = await request.app.state.services.keys.verify(key)
    if found is None:
        raise AccessDenied("unknown or revoked API key")
    name, role = found
    return Caller(name, role)


def require(role: str) -> Callable[..., Awaitable[Caller]]:
    async def check(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if not who.can(role):
            raise AccessDenied(f"this needs the {role} role; key {who.name!r} is {who.role}",
                               authenticated=True)
        return who

    return check


Viewer = Annotated[Caller, Depends(require("viewer"))]
Operator = Annotated[Caller, Depends(require("operator"))]
Admin = Annotated[Caller, Depends(require("admin"))]
