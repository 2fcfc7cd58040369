"""/api/v1/credentials: login profiles for devices. Secrets go in and are never sent back:
a response says only whether each one is set."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from netfleet.api.deps import Admin, ServicesDep, Viewer
from netfleet.domain.errors import InvalidInput
from netfleet.store.records import CredentialProfile, CredentialSpec, CredentialUpdate

router = APIRouter(prefix="/credentials", tags=["credentials"])


class CredentialIn(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    name: str
    username: str
    password: str | None = None
    enable_secret: str | None = None
    ssh_key: str | None = Field(None, description="a private key in OpenSSH or PEM format")


class CredentialPatch(BaseModel):
    """Fields left out keep their value; null removes a secret."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    username: str | None = None
    password: str | None = None
    enable_secret: str | None = None
    ssh_key: str | None = None


class CredentialOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    username: str
    has_password: bool
    has_enable_secret: bool
    has_ssh_key: bool
    created_at: datetime
    updated_at: datetime


def _out(profile: CredentialProfile) -> CredentialOut:
    return CredentialOut.model_validate(profile, from_attributes=True)


@router.get("", response_model=list[CredentialOut])
async def list_credentials(svc: ServicesDep, who: Viewer) -> list[CredentialOut]:
    async with svc.store.transaction(readonly=True) as tx:
        return [_out(p) for p in await tx.credentials.all()]


@router.post("", status_code=201, response_model=CredentialOut)
async def create(body: CredentialIn, svc: ServicesDep, who: Admin,
                 response: Response) -> CredentialOut:
    spec = CredentialSpec(**body.model_dump())
    async with svc.store.transaction() as tx:
        profile = await tx.credentials.create(spec)
    response.headers["Location"] = f"/api/v1/credentials/{profile.name}"
    return _out(profile)


@router.get("/{name}", response_model=CredentialOut)
async def get(name: str, svc: ServicesDep, who: Viewer) -> CredentialOut:
    async with svc.store.transaction(readonly=True) as tx:
        return _out(await tx.credentials.get(name))


@router.patch("/{name}", response_model=CredentialOut)
async def update(name: str, body: CredentialPatch, svc: ServicesDep,
                 who: Admin) -> CredentialOut:
    given = {f: getattr(body, f) for f in body.model_fields_set}
    if "username" in given and given["username"] is None:
        raise InvalidInput("username cannot be null", field="username",
                           fix="give a login name, or leave the field out to keep it")
    async with svc.store.transaction() as tx:
        profile = await tx.credentials.update(name, CredentialUpdate(**given))
        users = await tx.credentials.devices_using([name])
    svc.jobs.forget(users)  # their next job logs in with the new secrets
    return _out(profile)


@router.delete("/{name}", status_code=204)
async def delete(name: str, svc: ServicesDep, who: Admin) -> Response:
    async with svc.store.transaction() as tx:
        await tx.credentials.delete(name)
    return Response(status_code=204)
