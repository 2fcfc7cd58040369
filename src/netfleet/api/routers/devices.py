"""/api/v1/devices: the inventory — list by selector, CRUD, and bulk import of YAML or CSV."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from netfleet.api.deps import Admin, ServicesDep, Viewer
from netfleet.domain.errors import InvalidInput
from netfleet.domain.selectors import Selector
from netfleet.services.inventory import import_inventory, load_upload
from netfleet.store.devices import MAX_PAGE
from netfleet.store.records import DEFAULT_SSH_PORT, Device, DeviceSpec, DeviceUpdate

router = APIRouter(prefix="/devices", tags=["devices"])


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    host: str = Field(description="IP address or DNS name")
    port: int = DEFAULT_SSH_PORT
    platform: str = Field(description="Netmiko-style name: cisco_ios, arista_eos, …")
    driver: str | None = Field(None, description="asyncssh, netmiko, …; default: by platform")
    site: str | None = None
    tags: list[str] = Field(default_factory=list)
    vars: dict[str, Any] = Field(default_factory=dict)
    credentials: str | None = Field(None, description="credentials profile name")


class DevicePatch(BaseModel):
    """Fields left out keep their value; null clears driver, site or credentials."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    host: str | None = None
    port: int | None = None
    platform: str | None = None
    driver: str | None = None
    site: str | None = None
    tags: list[str] | None = None
    vars: dict[str, Any] | None = None
    credentials: str | None = None


NULLABLE = frozenset({"driver", "site", "credentials"})


class FactsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    model: str | None
    serial: str | None
    os_version: str | None
    uptime_seconds: int | None
    hostname: str | None
    collected_at: datetime | None


class FactChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    field: str
    old: str | None
    new: str | None
    at: datetime


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    host: str
    port: int
    platform: str
    driver: str | None
    site: str | None
    tags: list[str]
    vars: dict[str, Any]
    credentials: str | None
    created_at: datetime
    updated_at: datetime
    facts: FactsOut | None


class DeviceDetail(DeviceOut):
    facts_history: list[FactChangeOut] = Field(description="changes of model, serial, OS "
                                                           "version and hostname, newest first")


class DevicePage(BaseModel):
    devices: list[DeviceOut]
    next: str | None = Field(description="pass as `after` for the next page; null on the last")


class Counts(BaseModel):
    created: int
    updated: int
    unchanged: int


class ImportOut(BaseModel):
    devices: Counts
    credentials: Counts


def _out(device: Device) -> DeviceOut:
    return DeviceOut.model_validate(device, from_attributes=True)


def _selector(where: list[str]) -> Selector:
    try:
        return Selector.parse(where)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="where", fix=exc.fix) from None


@router.get("", response_model=DevicePage)
async def list_devices(
    svc: ServicesDep, who: Viewer,
    where: Annotated[list[str] | None, Query(description="selector term, repeatable: "
                                                         "tag=core, name=ios-0*, "
                                                         "platform=cisco_ios, site=lab1")]
    = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[str | None, Query(description="the previous page's `next`")] = None,
) -> DevicePage:
    selector = _selector(where or [])
    async with svc.store.transaction(readonly=True) as tx:
        page = await tx.devices.find(selector, limit=limit, after=after)
    return DevicePage(devices=[_out(d) for d in page.items], next=page.next_cursor)


@router.post("", status_code=201, response_model=DeviceOut)
async def create(body: DeviceIn, svc: ServicesDep, who: Admin, response: Response) -> DeviceOut:
    spec = DeviceSpec(**body.model_dump())
    async with svc.store.transaction() as tx:
        device = await tx.devices.create(spec)
    svc.jobs.forget([device.name])
    response.headers["Location"] = f"/api/v1/devices/{device.name}"
    return _out(device)


MAX_UPLOAD = 64 * 1024 * 1024


async def _read(upload: UploadFile) -> bytes:
    data = await upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, f"{upload.filename}: larger than {MAX_UPLOAD // 2**20} MiB; "
                                 "split the inventory")
    return data


@router.post("/import", response_model=ImportOut)
async def import_devices(
    svc: ServicesDep, who: Admin,
    file: Annotated[UploadFile, File(description="the inventory: .yaml/.yml (netfleet sim's "
                                                 "fleet.yaml as is) or .csv")],
    secrets: Annotated[UploadFile | None, File(description="the file the YAML's "
                                                           "credentials_file names")] = None,
) -> ImportOut:
    """Create or update every device (and credentials profile) in the file, or none of them:
    all problems come back at once, each with its row, field and fix."""
    data = await _read(file)
    secret_part = None if secrets is None else (secrets.filename or "", await _read(secrets))
    inventory = await asyncio.to_thread(load_upload, file.filename or "", data, secret_part)
    report = await import_inventory(svc.store, inventory)
    changed = [r.spec.name for r in inventory.rows]
    async with svc.store.transaction(readonly=True) as tx:
        changed += await tx.credentials.devices_using([c.name for c in inventory.credentials])
    svc.jobs.forget(changed)
    return ImportOut.model_validate(report, from_attributes=True)


@router.get("/{name}", response_model=DeviceDetail)
async def get(name: str, svc: ServicesDep, who: Viewer) -> DeviceDetail:
    async with svc.store.transaction(readonly=True) as tx:
        device = await tx.devices.get(name)
        history = await tx.devices.facts_history(name)
    return DeviceDetail(**_out(device).model_dump(),
                        facts_history=[FactChangeOut.model_validate(h, from_attributes=True)
                                       for h in history])


@router.patch("/{name}", response_model=DeviceOut)
async def update(name: str, body: DevicePatch, svc: ServicesDep, who: Admin) -> DeviceOut:
    given = {f: getattr(body, f) for f in body.model_fields_set}
    for field, value in given.items():
        if value is None and field not in NULLABLE:
            raise InvalidInput(f"{field} cannot be null", field=field,
                               fix="give a value, or leave the field out to keep it")
    async with svc.store.transaction() as tx:
        device = await tx.devices.update(name, DeviceUpdate(**given))
    svc.jobs.forget({name, device.name})
    return _out(device)


@router.delete("/{name}", status_code=204)
async def delete(name: str, svc: ServicesDep, who: Admin) -> Response:
    async with svc.store.transaction() as tx:
        await tx.devices.delete(name)
    svc.jobs.forget([name])
    return Response(status_code=204)
