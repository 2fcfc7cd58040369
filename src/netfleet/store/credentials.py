"""The credentials-profile repository. Secrets are encrypted before they are written; reading
them back in plaintext takes the explicit `reveal`, which only the engine calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from netfleet.domain.errors import Conflict, NotFound
from netfleet.store._sql import chunked
from netfleet.store.models import CredentialProfileRow, DeviceRow, utcnow
from netfleet.store.records import (
    UNSET,
    CredentialProfile,
    Credentials,
    CredentialSpec,
    CredentialUpdate,
    UpsertCounts,
)
from netfleet.store.secrets import SecretBox

_SECRETS = ("password", "enable_secret", "ssh_key")


class CredentialRepo:
    def __init__(self, session: AsyncSession, box: SecretBox) -> None:
        self.session = session
        self.box = box

    async def get(self, name: str) -> CredentialProfile:
        return _view(await self._row(name))

    async def all(self) -> list[CredentialProfile]:
        stmt = (select(CredentialProfileRow).order_by(CredentialProfileRow.name)
                .execution_options(populate_existing=True))
        return [_view(r) for r in (await self.session.execute(stmt)).scalars()]

    async def existing(self, names: Sequence[str]) -> set[str]:
        """Which of `names` are profiles."""
        found: set[str] = set()
        for chunk in chunked(names):
            stmt = select(CredentialProfileRow.name).where(CredentialProfileRow.name.in_(chunk))
            found.update((await self.session.execute(stmt)).scalars())
        return found

    async def devices_using(self, profiles: Sequence[str]) -> list[str]:
        """Names of the devices that log in with any of these profiles."""
        names: list[str] = []
        for chunk in chunked(profiles):
            stmt = (select(DeviceRow.name)
                    .join(CredentialProfileRow,
                          CredentialProfileRow.id == DeviceRow.credential_profile_id)
                    .where(CredentialProfileRow.name.in_(chunk)))
            names.extend((await self.session.execute(stmt)).scalars())
        return names

    async def reveal(self, name: str) -> Credentials:
        """The profile's secrets in plaintext. For opening sessions only: never return this
        from an API or put it in a log."""
        row = await self._row(name)
        return Credentials(username=row.username, password=self._open(row.password_enc),
                           enable_secret=self._open(row.enable_secret_enc),
                           ssh_key=self._open(row.ssh_key_enc))

    async def create(self, spec: CredentialSpec) -> CredentialProfile:
        if await self._find(spec.name) is not None:
            raise Conflict(f"credentials profile {spec.name!r} already exists")
        self.session.add(CredentialProfileRow(**self._columns(spec)))
        try:
            await self.session.flush()
        except IntegrityError:
            raise Conflict(f"credentials profile {spec.name!r} already exists") from None
        return await self.get(spec.name)

    async def update(self, name: str, change: CredentialUpdate) -> CredentialProfile:
        current = await self.reveal(name)
        merged = CredentialSpec(
            name=name,
            username=current.username if change.username is UNSET else change.username,
            **{f: getattr(current, f) if getattr(change, f) is UNSET else getattr(change, f)
               for f in _SECRETS},
        )
        row = await self._row(name)
        for column, value in self._columns(merged).items():
            setattr(row, column, value)
        row.updated_at = utcnow()
        await self.session.flush()
        return _view(row)

    async def delete(self, name: str) -> None:
        row = await self._row(name)
        users = await self.session.execute(
            select(func.count()).where(DeviceRow.credential_profile_id == row.id))
        if count := users.scalar_one():
            raise Conflict(f"credentials profile {name!r} is used by {count} device(s); "
                           f"give them another profile first")
        await self.session.execute(delete(CredentialProfileRow)
                                   .where(CredentialProfileRow.id == row.id)
                                   .execution_options(synchronize_session=False))

    async def upsert_many(self, specs: Sequence[CredentialSpec]) -> UpsertCounts:
        """Create new profiles and update those whose username or secrets differ; by name."""
        existing: dict[str, CredentialProfileRow] = {}
        for chunk in chunked([s.name for s in specs]):
            stmt = (select(CredentialProfileRow).where(CredentialProfileRow.name.in_(chunk))
                    .execution_options(populate_existing=True))
            existing.update((r.name, r) for r in (await self.session.execute(stmt)).scalars())
        now = utcnow()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for spec in specs:
            row = existing.get(spec.name)
            if row is None:
                inserts.append({**self._columns(spec), "created_at": now, "updated_at": now})
            elif self._plain(row) != spec:
                updates.append({**self._columns(spec), "id": row.id, "updated_at": now})
        for batch in chunked(inserts):
            await self.session.execute(insert(CredentialProfileRow), list(batch))
        for batch in chunked(updates):
            await self.session.execute(update(CredentialProfileRow), list(batch))
        return UpsertCounts(created=len(inserts), updated=len(updates),
                            unchanged=len(specs) - len(inserts) - len(updates))

    # -- helpers ---------------------------------------------------------------------------

    def _columns(self, spec: CredentialSpec) -> dict[str, Any]:
        return {"name": spec.name, "username": spec.username,
                **{f"{f}_enc": self._seal(getattr(spec, f)) for f in _SECRETS}}

    def _plain(self, row: CredentialProfileRow) -> CredentialSpec:
        return CredentialSpec(name=row.name, username=row.username,
                              password=self._open(row.password_enc),
                              enable_secret=self._open(row.enable_secret_enc),
                              ssh_key=self._open(row.ssh_key_enc))

    def _seal(self, value: str | None) -> str | None:
        return None if value is None else self.box.encrypt(value)

    def _open(self, token: str | None) -> str | None:
        return None if token is None else self.box.decrypt(token)

    async def _find(self, name: str) -> CredentialProfileRow | None:
        stmt = (select(CredentialProfileRow).where(CredentialProfileRow.name == name)
                .execution_options(populate_existing=True))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def _row(self, name: str) -> CredentialProfileRow:
        row = await self._find(name)
        if row is None:
            raise NotFound(f"credentials profile {name!r} not found")
        return row


def _view(row: CredentialProfileRow) -> CredentialProfile:
    return CredentialProfile(
        id=row.id, name=row.name, username=row.username,
        has_password=row.password_enc is not None,
        has_enable_secret=row.enable_secret_enc is not None,
        has_ssh_key=row.ssh_key_enc is not None,
        created_at=row.created_at, updated_at=row.updated_at)
