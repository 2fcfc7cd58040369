"""Secrets at rest: the Fernet key (from settings, or a key file made on first run) and the box
that encrypts credentials before they reach the database. Plaintext never goes to a log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken

from netfleet.domain.errors import NetfleetError
from netfleet.settings import Settings

log = structlog.get_logger(__name__)

_GENERATE = ("python -c 'from cryptography.fernet import Fernet; "
             "print(Fernet.generate_key().decode())'")


class SecretKeyError(NetfleetError):
    """The secret key is missing, unreadable, malformed, or not the key the data was sealed with."""

    category = "secret_key"


class SecretBox:
    """Encrypts and decrypts short secrets (passwords, SSH keys) with one Fernet key."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise SecretKeyError(f"the secret key is not a Fernet key; generate one with: "
                                 f"{_GENERATE}") from None

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    @classmethod
    def generate(cls) -> SecretBox:
        return cls(Fernet.generate_key())

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken:
            raise SecretKeyError(
                "stored credentials cannot be decrypted with this secret key; set "
                "NETFLEET_SECRET_KEY (or NETFLEET_SECRET_KEY_FILE) to the key they were saved "
                "with") from None


def load_key(settings: Settings) -> bytes:
    """The key from NETFLEET_SECRET_KEY, else from the key file, creating it (0600) if absent."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    return read_or_create_key_file(settings.secret_key_file)


def read_or_create_key_file(path: Path) -> bytes:
    try:
        return _create_key_file(path)
    except FileExistsError:
        pass
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise SecretKeyError(f"cannot read the secret key file {path}: {exc.strerror}; fix its "
                             f"permissions or point NETFLEET_SECRET_KEY_FILE elsewhere") from None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret key file is readable by others", path=str(path),
                    mode=oct(mode & 0o777), fix=f"chmod 600 {path}")
    return key


def _create_key_file(path: Path) -> bytes:
    """Write the key to a private temporary file, then link it into place: link() fails if the
    file exists, so two first runs cannot end up with different keys, and no reader ever sees a
    half-written file. Raises FileExistsError if the key file is already there."""
    if path.exists():
        raise FileExistsError(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Fernet.generate_key()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    log.info("created secret key file", path=str(path))
    return key


def open_box(settings: Settings) -> SecretBox:
    return SecretBox(load_key(settings))
