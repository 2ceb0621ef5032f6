"""Annotator tokens that a copy of the vote database does not give away.

A server secret (random bytes, hex, in ``DB.secret`` beside the database, mode 0600) keys two
HMAC-SHA256s: generated tokens are derived from the secret and the annotator's name, so ``serve``
can print the links again, and the database keeps only a keyed digest of each token. Without the
secret the database holds no token and nothing to test a guessed token against.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from ctxsim.errors import InputError, Problem

log = logging.getLogger(__name__)

SECRET_SUFFIX = ".secret"
SECRET_BYTES = 32
#: Length of a derived token (URL-safe base64 of the HMAC: 32 characters are 192 bits).
TOKEN_CHARS = 32
#: Owner read/write only: the database and the secret give voting rights together.
PRIVATE_MODE = 0o600
# Domain separation: a derived token is never the digest of anything, and vice versa.
_TOKEN_LABEL = b"ctxsim-labeling-token\0"
_DIGEST_LABEL = b"ctxsim-labeling-digest\0"
_FINGERPRINT_LABEL = b"ctxsim-labeling-fingerprint"


def secret_path(db_path: str | os.PathLike) -> Path:
    db_path = Path(db_path)
    return db_path.with_name(db_path.name + SECRET_SUFFIX)


def make_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if missing; take group and other access off if present."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
        return
    except FileExistsError:
        pass
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); now 0600", path, mode)
        path.chmod(PRIVATE_MODE)


class TokenKey:
    """The server secret, and the two keyed hashes made with it."""

    def __init__(self, secret: bytes):
        self._secret = secret

    @classmethod
    def load(cls, path: Path, *, create: bool) -> TokenKey | None:
        """The secret in ``path``; a new one when it is missing and ``create`` (else None)."""
        if not path.exists():
            if not create:
                return None
            _write_new_secret(path)
        make_private(path)
        text = path.read_text().strip()
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            secret = b""
        if len(secret) != SECRET_BYTES:
            raise InputError([Problem(str(path), f"not a vote database secret (expected {2 * SECRET_BYTES} hex digits)")])
        return cls(secret)

    def _mac(self, label: bytes, text: str) -> bytes:
        return hmac.new(self._secret, label + text.encode(), hashlib.sha256).digest()

    def derive(self, name: str) -> str:
        """The generated token of annotator ``name``."""
        return base64.urlsafe_b64encode(self._mac(_TOKEN_LABEL, name)).decode()[:TOKEN_CHARS]

    def digest(self, token: str) -> str:
        """What the database keeps of a token."""
        return self._mac(_DIGEST_LABEL, token).hex()

    def fingerprint(self) -> str:
        """Stored in the database to tell its own secret from another one."""
        return self._mac(_FINGERPRINT_LABEL, "").hex()


def _write_new_secret(path: Path) -> None:
    """Write a fresh secret whole, 0600 from the start; if another process got there first, keep its."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(SECRET_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # atomic, and fails instead of replacing a secret already there
        log.info("created the token secret %s (keep it with the database: it checks the annotators' links)", path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
