"""/api/v1/keys: API keys. The token is in the create response and nowhere else, ever."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from netfleet.api.deps import Admin, ServicesDep
from netfleet.store.records import ApiKey, Role

router = APIRouter(prefix="/keys", tags=["keys"])


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=255, description="who or what uses the key")
    role: Role = Field(description="viewer (read), operator (jobs), admin (everything)")


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    role: Role
    prefix: str = Field(description="the token's first characters, to tell keys apart")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked: bool


class NewKeyOut(KeyOut):
    token: str = Field(description="send as the X-API-Key header; shown this once only")


def _out(key: ApiKey) -> KeyOut:
    return KeyOut.model_validate(key, from_attributes=True)


@router.post("", status_code=201, response_model=NewKeyOut)
async def create(body: KeyIn, svc: ServicesDep, who: Admin, response: Response) -> NewKeyOut:
    key, token = await svc.keys.create(body.name, body.role)
    response.headers["Location"] = f"/api/v1/keys/{key.id}"
    return NewKeyOut(**_out(key).model_dump(), token=token)


@router.get("", response_model=list[KeyOut])
async def list_keys(svc: ServicesDep, who: Admin) -> list[KeyOut]:
    async with svc.store.transaction(readonly=True) as tx:
        return [_out(k) for k in await tx.api_keys.all()]


@router.delete("/{key_id}", response_model=KeyOut)
async def revoke(key_id: int, svc: ServicesDep, who: Admin) -> KeyOut:
    """Revoke the key: it stops working at once. It stays listed, marked revoked."""
    return _out(await svc.keys.revoke(key_id))
