"""The secret key: from settings, or a key file created once, privately, on first run."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from netfleet.settings import load_settings
from netfleet.store.secrets import SecretBox, SecretKeyError, load_key, open_box


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the defaults, whatever NETFLEET_* the developer's shell sets."""
    for name in list(os.environ):
        if name.startswith("NETFLEET_"):
            monkeypatch.delenv(name)


def test_first_run_creates_a_private_key_file_and_later_runs_reuse_it(tmp_path: Path) -> None:
    path = tmp_path / ".netfleet" / "secret.key"
    settings = load_settings(secret_key_file=path)
    first = load_key(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(settings) == first
    token = open_box(settings).encrypt("pw")
    assert open_box(settings).decrypt(token) == "pw"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_a_key_in_the_environment_wins_and_no_file_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("NETFLEET_SECRET_KEY", key)
    settings = load_settings(secret_key_file=tmp_path / "secret.key")
    assert load_key(settings) == key.encode()
    assert not (tmp_path / "secret.key").exists()
    assert key not in repr(settings)


def test_a_garbled_key_file_is_reported_with_its_fix(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("not a key\n")
    with pytest.raises(SecretKeyError, match="Fernet"):
        open_box(load_settings(secret_key_file=path))


def test_the_box_never_shows_its_key() -> None:
    key = Fernet.generate_key()
    assert key.decode() not in repr(SecretBox(key))
