"""API keys: the token is shown once, stored hashed, verified to a role, and revocable."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from sqlalchemy import text

from netfleet.domain.errors import InvalidInput, NotFound
from netfleet.store import Store


async def test_a_new_token_verifies_to_its_key_and_role(store: Store) -> None:
    async with store.transaction() as tx:
        new = await tx.api_keys.create("ci", "operator")
    async with store.transaction() as tx:
        key = await tx.api_keys.verify(new.token)
    assert key is not None
    assert (key.id, key.name, key.role) == (new.key.id, "ci", "operator")
    assert key.last_used_at is not None
    assert new.token.startswith(key.prefix)
    assert new.token not in repr(new)


async def test_only_a_hash_of_the_token_is_stored(store: Store) -> None:
    async with store.transaction() as tx:
        new = await tx.api_keys.create("ci", "viewer")
        raw = (await tx.session.execute(text("SELECT * FROM api_keys"))).one()
    stored = " ".join(str(v) for v in raw)
    assert new.token not in stored
    assert new.token[len(new.key.prefix):] not in stored
    assert hashlib.sha256(new.token.encode()).hexdigest() in stored


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),   # last character wrong
    lambda t: t[:12],                                    # truncated
    lambda t: "",                                        # empty
    lambda t: "Bearer " + t,                             # wrong format
])
async def test_wrong_tokens_do_not_verify(store: Store, mangle: Callable[[str], str]) -> None:
    async with store.transaction() as tx:
        new = await tx.api_keys.create("ci", "admin")
        assert await tx.api_keys.verify(mangle(new.token)) is None


async def test_a_revoked_key_stops_verifying(store: Store) -> None:
    async with store.transaction() as tx:
        keep = await tx.api_keys.create("keep", "viewer")
        gone = await tx.api_keys.create("gone", "viewer")
    async with store.transaction() as tx:
        revoked = await tx.api_keys.revoke(gone.key.id)
        again = await tx.api_keys.revoke(gone.key.id)
    async with store.transaction() as tx:
        assert await tx.api_keys.verify(gone.token) is None
        assert await tx.api_keys.verify(keep.token) is not None
        listed = {k.name: k.revoked for k in await tx.api_keys.all()}
    assert revoked.revoked and again.revoked_at == revoked.revoked_at
    assert listed == {"keep": False, "gone": True}


async def test_roles_are_checked_and_unknown_keys_are_not_found(store: Store) -> None:
    async with store.transaction() as tx:
        with pytest.raises(InvalidInput) as caught:
            await tx.api_keys.create("ci", "root")
        assert caught.value.field == "role"
        with pytest.raises(NotFound):
            await tx.api_keys.revoke(12345)
