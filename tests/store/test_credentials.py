"""Credentials profiles: secrets encrypted at rest, plaintext only through `reveal`."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from netfleet.domain.errors import Conflict, NotFound
from netfleet.store import SecretBox, SecretKeyError, Store, create_engine
from netfleet.store.records import CredentialSpec, CredentialUpdate, DeviceSpec

KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
       "-----END OPENSSH PRIVATE KEY-----")


async def test_secrets_are_not_stored_in_plaintext(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.credentials.create(CredentialSpec("lab", "admin", password="hunter2-pw",
                                                   enable_secret="en-s3cret", ssh_key=KEY))
        raw = (await tx.session.execute(text(
            "SELECT * FROM credential_profiles WHERE name = 'lab'"))).one()
    stored = " ".join(str(v) for v in raw)
    for secret in ("hunter2-pw", "en-s3cret", "OPENSSH", "b3BlbnNzaC1rZXktdjEAAAAA"):
        assert secret not in stored
    assert "admin" in stored  # the username is not a secret


async def test_views_say_which_secrets_are_set_but_never_what(store: Store) -> None:
    async with store.transaction() as tx:
        created = await tx.credentials.create(CredentialSpec("lab", "admin",
                                                             password="s3cr3t-pw"))
        listed = await tx.credentials.all()
    assert (created.has_password, created.has_enable_secret, created.has_ssh_key) == (
        True, False, False)
    assert listed == [created]
    assert "s3cr3t" not in repr(created)


async def test_reveal_returns_the_plaintext_and_hides_it_from_repr(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.credentials.create(CredentialSpec("lab", "admin", password="pw-1",
                                                   enable_secret="en-1", ssh_key=KEY))
        secrets = await tx.credentials.reveal("lab")
    assert (secrets.username, secrets.password, secrets.enable_secret, secrets.ssh_key) == (
        "admin", "pw-1", "en-1", KEY)
    assert "pw-1" not in repr(secrets) and "en-1" not in repr(secrets)


async def test_update_changes_named_secrets_and_keeps_the_rest(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.credentials.create(CredentialSpec("lab", "admin", password="old",
                                                   enable_secret="en"))
        view = await tx.credentials.update("lab", CredentialUpdate(password="new",
                                                                   ssh_key=KEY))
        cleared = await tx.credentials.update("lab", CredentialUpdate(enable_secret=None))
        secrets = await tx.credentials.reveal("lab")
    assert view.has_ssh_key and not cleared.has_enable_secret
    assert (secrets.password, secrets.enable_secret, secrets.ssh_key) == ("new", None, KEY)


async def test_names_are_unique_and_unknown_names_are_not_found(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.credentials.create(CredentialSpec("lab", "admin"))
        with pytest.raises(Conflict):
            await tx.credentials.create(CredentialSpec("lab", "other"))
        with pytest.raises(NotFound):
            await tx.credentials.reveal("ghost")


async def test_a_profile_in_use_cannot_be_deleted(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.credentials.create(CredentialSpec("lab", "admin"))
        await tx.credentials.create(CredentialSpec("spare", "admin"))
        await tx.devices.create(DeviceSpec("ios-1", "192.0.2.1", "cisco_ios",
                                           credentials="lab"))
        with pytest.raises(Conflict, match="used by 1 device"):
            await tx.credentials.delete("lab")
        await tx.credentials.delete("spare")
        assert [p.name for p in await tx.credentials.all()] == ["lab"]


async def test_upsert_detects_changed_secrets_despite_random_ciphertext(store: Store) -> None:
    profiles = [CredentialSpec("a", "admin", password="pw"), CredentialSpec("b", "admin")]
    async with store.transaction() as tx:
        await tx.credentials.upsert_many(profiles)
    async with store.transaction() as tx:
        counts = await tx.credentials.upsert_many(
            [profiles[0], CredentialSpec("b", "admin", password="new")])
        assert (await tx.credentials.reveal("b")).password == "new"
    assert (counts.created, counts.updated, counts.unchanged) == (0, 1, 1)


async def test_the_wrong_key_is_reported_as_a_key_problem(store: Store, db_url: str) -> None:
    async with store.transaction() as tx:
        await tx.credentials.create(CredentialSpec("lab", "admin", password="pw"))
    other = Store(create_engine(db_url), SecretBox.generate())
    try:
        with pytest.raises(SecretKeyError, match="NETFLEET_SECRET_KEY"):
            async with other.transaction(readonly=True) as tx:
                await tx.credentials.reveal("lab")
    finally:
        await other.close()
