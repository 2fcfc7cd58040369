"""The device repository: inventory CRUD, selector queries, bulk upsert, facts and their history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Row, Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from netfleet.domain.errors import Conflict, InvalidInput, NotFound
from netfleet.domain.ports import Target
from netfleet.domain.selectors import Selector
from netfleet.store._sql import chunked, selector_filter
from netfleet.store.models import (
    CredentialProfileRow,
    DeviceFactsHistoryRow,
    DeviceFactsRow,
    DeviceRow,
    utcnow,
)
from netfleet.store.records import (
    HISTORY_FIELDS,
    Device,
    DeviceSpec,
    DeviceUpdate,
    FactChange,
    Facts,
    Page,
    UpsertCounts,
)
from netfleet.store.secrets import SecretBox

MAX_PAGE = 1000


class DeviceRepo:
    def __init__(self, session: AsyncSession, box: SecretBox, dialect: str) -> None:
        self.session = session
        self.box = box
        self.dialect = dialect

    # -- reading ---------------------------------------------------------------------------

    def _select(self) -> Select[DeviceRow, DeviceFactsRow, str]:
        # populate_existing: bulk UPDATEs bypass the session's identity map; never serve a stale
        # row from it.
        return (
            select(DeviceRow, DeviceFactsRow, CredentialProfileRow.name)
            .outerjoin(DeviceFactsRow, DeviceFactsRow.device_id == DeviceRow.id)
            .outerjoin(CredentialProfileRow,
                       CredentialProfileRow.id == DeviceRow.credential_profile_id)
            .execution_options(populate_existing=True)
        )

    async def get(self, name: str) -> Device:
        row = (await self.session.execute(self._select().where(DeviceRow.name == name))).first()
        if row is None:
            raise NotFound(f"device {name!r} not found")
        return _device(row)

    async def get_many(self, names: Sequence[str]) -> dict[str, Device]:
        """The devices among `names` that exist, by name."""
        found: dict[str, Device] = {}
        for chunk in chunked(names):
            rows = await self.session.execute(self._select().where(DeviceRow.name.in_(chunk)))
            found.update((d.name, d) for d in map(_device, rows))
        return found

    async def find(self, selector: Selector | None = None, *, limit: int = 100,
                   after: str | None = None) -> Page[Device]:
        """Devices matching `selector`, by name; `after` is the previous page's next_cursor."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit {limit} is out of range", field="limit",
                               fix=f"use 1 to {MAX_PAGE}")
        stmt = self._select().where(selector_filter(selector or Selector(), self.dialect))
        if after is not None:
            stmt = stmt.where(DeviceRow.name > after)
        rows = (await self.session.execute(stmt.order_by(DeviceRow.name).limit(limit + 1))).all()
        items = [_device(r) for r in rows[:limit]]
        return Page(items, items[-1].name if len(rows) > limit else None)

    async def find_all(self, selector: Selector | None = None) -> list[Device]:
        """Every device matching `selector`, by name (read a page of MAX_PAGE at a time)."""
        out: list[Device] = []
        after: str | None = None
        while True:
            page = await self.find(selector, limit=MAX_PAGE, after=after)
            out.extend(page.items)
            after = page.next_cursor
            if after is None:
                return out

    async def count(self, selector: Selector | None = None) -> int:
        stmt = select(func.count()).select_from(DeviceRow).where(
            selector_filter(selector or Selector(), self.dialect))
        return int((await self.session.execute(stmt)).scalar_one())

    async def targets(self, names: Sequence[str]) -> dict[str, Target | None]:
        """What the engine needs to connect, secrets decrypted. Unknown names are absent;
        a device without a credentials profile maps to None."""
        out: dict[str, Target | None] = {}
        for chunk in chunked(names):
            stmt = (select(DeviceRow, CredentialProfileRow)
                    .outerjoin(CredentialProfileRow,
                               CredentialProfileRow.id == DeviceRow.credential_profile_id)
                    .where(DeviceRow.name.in_(chunk)))
            for device, profile in await self.session.execute(stmt):
                out[device.name] = None if profile is None else Target(
                    name=device.name, host=device.host, port=device.port,
                    platform=device.platform, driver=device.driver,
                    username=profile.username,
                    password=self._open(profile.password_enc),
                    enable_secret=self._open(profile.enable_secret_enc),
                    ssh_key=self._open(profile.ssh_key_enc))
        return out

    def _open(self, token: str | None) -> str | None:
        return None if token is None else self.box.decrypt(token)

    # -- writing ---------------------------------------------------------------------------

    async def create(self, spec: DeviceSpec) -> Device:
        if await self._id(spec.name) is not None:
            raise Conflict(f"device {spec.name!r} already exists")
        profiles = await self._profile_ids([spec.credentials] if spec.credentials else [])
        self.session.add(DeviceRow(**_columns(spec, profiles)))
        await self._flush(spec.name)
        return await self.get(spec.name)

    async def update(self, name: str, change: DeviceUpdate) -> Device:
        current = await self.get(name)
        spec = change.apply(current.spec())
        if spec.name != name and await self._id(spec.name) is not None:
            raise Conflict(f"cannot rename {name!r}: device {spec.name!r} already exists")
        profiles = await self._profile_ids([spec.credentials] if spec.credentials else [])
        try:
            await self.session.execute(
                update(DeviceRow).where(DeviceRow.id == current.id)
                .values(**_columns(spec, profiles), updated_at=utcnow())
                .execution_options(synchronize_session=False))
        except IntegrityError:
            raise Conflict(f"cannot rename {name!r}: device {spec.name!r} already exists") from None
        return await self.get(spec.name)

    async def delete(self, name: str) -> None:
        result = await self.session.execute(delete(DeviceRow).where(DeviceRow.name == name)
                                            .execution_options(synchronize_session=False))
        if not _rowcount(result):
            raise NotFound(f"device {name!r} not found")

    async def upsert_many(self, specs: Sequence[DeviceSpec]) -> UpsertCounts:
        """Create the devices that are new, update those that differ; by name."""
        seen: set[str] = set()
        for spec in specs:
            if spec.name in seen:
                raise InvalidInput(f"device {spec.name!r} is given twice", field="name",
                                   fix="give each device once")
            seen.add(spec.name)
        profiles = await self._profile_ids(sorted({s.credentials for s in specs
                                                   if s.credentials}))
        existing = await self.get_many([s.name for s in specs])
        now = utcnow()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for spec in specs:
            old = existing.get(spec.name)
            if old is None:
                inserts.append({**_columns(spec, profiles), "created_at": now, "updated_at": now})
            elif old.spec() != spec:
                updates.append({**_columns(spec, profiles), "id": old.id, "updated_at": now})
        for batch in chunked(inserts):
            await self.session.execute(insert(DeviceRow), list(batch))
        for batch in chunked(updates):
            await self.session.execute(update(DeviceRow), list(batch))
        return UpsertCounts(created=len(inserts), updated=len(updates),
                            unchanged=len(specs) - len(inserts) - len(updates))

    async def record_facts(self, name: str, facts: Facts) -> list[FactChange]:
        """Store what the device reported; facts it did not report keep their value.
        Returns the changes, which are also written to the history."""
        device_id = await self._id(name)
        if device_id is None:
            raise NotFound(f"device {name!r} not found")
        at = facts.collected_at or utcnow()
        current = await self.session.get(DeviceFactsRow, device_id, populate_existing=True)
        if current is None:
            current = DeviceFactsRow(device_id=device_id, collected_at=at)
            self.session.add(current)
        changes = []
        for field in HISTORY_FIELDS:
            new, old = getattr(facts, field), getattr(current, field)
            if new is not None and new != old:
                changes.append(FactChange(device=name, field=field, old=old, new=new, at=at))
        for field in (*HISTORY_FIELDS, "uptime_seconds"):
            if (value := getattr(facts, field)) is not None:
                setattr(current, field, value)
        current.collected_at = at
        self.session.add_all(
            DeviceFactsHistoryRow(device_id=device_id, field=c.field, old=c.old, new=c.new,
                                  at=c.at) for c in changes)
        await self.session.flush()
        return changes

    async def facts_history(self, name: str, *, limit: int = 100) -> list[FactChange]:
        """The device's fact changes, newest first."""
        device_id = await self._id(name)
        if device_id is None:
            raise NotFound(f"device {name!r} not found")
        stmt = (select(DeviceFactsHistoryRow)
                .where(DeviceFactsHistoryRow.device_id == device_id)
                .order_by(DeviceFactsHistoryRow.at.desc(), DeviceFactsHistoryRow.id.desc())
                .limit(limit))
        return [FactChange(device=name, field=h.field, old=h.old, new=h.new, at=h.at)
                for h in (await self.session.execute(stmt)).scalars()]

    # -- helpers ---------------------------------------------------------------------------

    async def _id(self, name: str) -> int | None:
        stmt = select(DeviceRow.id).where(DeviceRow.name == name)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def _profile_ids(self, names: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in chunked(names):
            stmt = (select(CredentialProfileRow.name, CredentialProfileRow.id)
                    .where(CredentialProfileRow.name.in_(chunk)))
            found.update((r.name, r.id) for r in await self.session.execute(stmt))
        missing = [n for n in names if n not in found]
        if missing:
            raise InvalidInput(f"credentials profile {missing[0]!r} does not exist",
                               field="credentials",
                               fix="create the credentials profile first, or leave it out")
        return found

    async def _flush(self, name: str) -> None:
        try:
            await self.session.flush()
        except IntegrityError:
            # Another transaction took the name between our check and our write.
            raise Conflict(f"device {name!r} already exists") from None


def _columns(spec: DeviceSpec, profiles: dict[str, int]) -> dict[str, Any]:
    return {
        "name": spec.name, "host": spec.host, "port": spec.port, "platform": spec.platform,
        "driver": spec.driver, "site": spec.site, "tags": list(spec.tags),
        "vars": dict(spec.vars),
        "credential_profile_id": profiles[spec.credentials] if spec.credentials else None,
    }


def _device(row: Row[DeviceRow, DeviceFactsRow, str]) -> Device:
    # Outer joins: no facts yet, or no profile, come back as None.
    device, facts, profile = cast(tuple[DeviceRow, DeviceFactsRow | None, str | None], row)
    return Device(
        id=device.id, name=device.name, host=device.host, port=device.port,
        platform=device.platform, driver=device.driver, site=device.site,
        tags=tuple(device.tags), vars=dict(device.vars), credentials=profile,
        created_at=device.created_at, updated_at=device.updated_at,
        facts=None if facts is None else Facts(
            model=facts.model, serial=facts.serial, os_version=facts.os_version,
            uptime_seconds=facts.uptime_seconds, hostname=facts.hostname,
            collected_at=facts.collected_at),
    )


def _rowcount(result: Any) -> int:
    return int(result.rowcount)
