"""The API-key repository. A key is a random token shown once; the database keeps its sha256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import cast

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from netfleet.domain.errors import InvalidInput, NotFound
from netfleet.store.models import ApiKeyRow, utcnow
from netfleet.store.records import ROLES, ApiKey, NewApiKey, Role

TOKEN_PREFIX = "nf_"
# "nf_" and 8 random characters: 48 bits, so a lookup finds one row in practice; collisions
# are still handled (every candidate's hash is compared).
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
# Recording every use would turn each API read into a database write; once a minute is
# enough to tell which keys are alive.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(token: str) -> str:
    # The token has 256 random bits: a fast hash is enough, no salt or KDF needed.
    return hashlib.sha256(token.encode()).hexdigest()


class ApiKeyRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, name: str, role: str) -> NewApiKey:
        """A new key. The returned token is the only copy: it cannot be recovered later."""
        if role not in ROLES:
            raise InvalidInput(f"role {role!r} is unknown", field="role",
                               fix="use viewer (read), operator (jobs) or admin (everything)")
        if not name.strip():
            raise InvalidInput("an API key needs a name", field="name",
                               fix="name it after who or what uses it, e.g. ci-pipeline")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(name=name, role=role, prefix=token[:PREFIX_LENGTH],
                        key_hash=_digest(token))
        self.session.add(row)
        await self.session.flush()
        return NewApiKey(key=_key(row), token=token)

    async def verify(self, token: str) -> ApiKey | None:
        """The live key this token belongs to, or None (unknown, malformed or revoked)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) <= PREFIX_LENGTH:
            return None
        digest = _digest(token)
        stmt = (select(ApiKeyRow).where(ApiKeyRow.prefix == token[:PREFIX_LENGTH])
                .execution_options(populate_existing=True))
        for row in (await self.session.execute(stmt)).scalars():
            if hmac.compare_digest(row.key_hash, digest):
                if row.revoked_at is not None:
                    return None
                now = utcnow()
                if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
                    row.last_used_at = now
                    await self.session.flush()
                return _key(row)
        return None

    async def get(self, key_id: int) -> ApiKey:
        return _key(await self._row(key_id))

    async def all(self) -> list[ApiKey]:
        stmt = select(ApiKeyRow).order_by(ApiKeyRow.id).execution_options(populate_existing=True)
        return [_key(r) for r in (await self.session.execute(stmt)).scalars()]

    async def revoke(self, key_id: int) -> ApiKey:
        """Revoke the key (idempotent); it stops verifying at once."""
        await self.session.execute(
            update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=utcnow()).execution_options(synchronize_session=False))
        return _key(await self._row(key_id))

    async def _row(self, key_id: int) -> ApiKeyRow:
        stmt = (select(ApiKeyRow).where(ApiKeyRow.id == key_id)
                .execution_options(populate_existing=True))
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        return row


def _key(row: ApiKeyRow) -> ApiKey:
    # The CHECK constraint holds role to ROLES.
    return ApiKey(id=row.id, name=row.name, role=cast(Role, row.role), prefix=row.prefix,
                  created_at=row.created_at, last_used_at=row.last_used_at,
                  revoked_at=row.revoked_at)
