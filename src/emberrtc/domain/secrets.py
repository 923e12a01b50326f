"""Secrets at rest: passwords and tokens hashed, keys that must be read back encrypted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """scrypt with a random salt: ``scrypt$<salt>$<hash>``."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), dklen=32, **_SCRYPT)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def token_digest(token: str) -> str:
    """Tokens are long random strings, so a plain SHA-256 is enough to keep them unusable at rest."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_hex_id() -> str:
    """32 lowercase hex characters, like SparkRTC's app and job IDs."""
    return secrets.token_hex(16)


def private_key_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """Read a key file, creating it (mode 0600) with ``make()`` on first use.

    Written to a private temporary file, then linked into place: a CLI command and the server starting
    together both end up with the one key that won the link.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, make())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()


class SecretBox:
    """Symmetric encryption (Fernet: AES-128-CBC + HMAC-SHA256) for secrets that must be read back."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_settings(cls, master_key: str, data_dir: Path) -> SecretBox:
        """Use the configured key, else ``master.key`` in the data folder (created 0600 on first use)."""
        if master_key:
            return cls(master_key.encode())
        path = data_dir / "master.key"
        return cls(private_key_file(path, Fernet.generate_key))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:  # a different master key than the one that sealed it
            raise RuntimeError("cannot decrypt a stored secret: wrong master key for this database") from exc
