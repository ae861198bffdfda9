"""Secrets kept encrypted in the event log (IMAP passwords): Fernet (AES-128-CBC with an
HMAC-SHA256, from `cryptography`), implementing commands.mail_accounts.Secrets.

The key comes from GB_SECRET_KEY (any text: its SHA-256 is the Fernet key) or, when that is
empty, from `<data dir>/secret.key`, made on first use (0600, created whole: written to a
temporary file, then linked into place, so two processes starting at once agree on one
key). Every process that reads the secrets needs the same key: with several processes that
do not share a data dir (the scaled profile), set GB_SECRET_KEY. A changed key leaves the
stored passwords unreadable (their accounts show the error; connect them again).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from commands.mail_accounts import SecretUnreadable
from infra.config import Settings

KEY_FILE = "secret.key"


def key_from_text(secret: str) -> bytes:
    """A Fernet key (urlsafe base64 of 32 bytes) derived from any text."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


def key_file(path: Path) -> bytes:
    """The key stored at `path`, created (0600) when there is none."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process made one first: use it
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_bytes().strip()
    try:
        Fernet(key)
    except ValueError:
        raise ValueError(
            f"{path} does not hold a key (32 bytes in urlsafe base64): restore it or remove it"
            " (stored passwords then become unreadable)"
        ) from None
    return key


class FernetSecrets:
    """commands.mail_accounts.Secrets over Fernet; the key is read (or made) on first use."""

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.secret_key
        self._path = settings.data_dir / KEY_FILE
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    def _cipher(self) -> Fernet:
        with self._lock:
            if self._fernet is None:
                key = key_from_text(self._secret) if self._secret else key_file(self._path)
                self._fernet = Fernet(key)
            return self._fernet

    def encrypt(self, text: str) -> str:
        return self._cipher().encrypt(text.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._cipher().decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as e:
            raise SecretUnreadable(
                "the stored password cannot be decrypted: GB_SECRET_KEY (or data/secret.key)"
                " is not the one it was stored with; connect the account again"
            ) from e
