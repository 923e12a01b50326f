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

#: scrypt's cost: N = 2**17, r = 8, p = 1 (OWASP's password storage guidance), 128 MiB and a few hundred
#: milliseconds per hash. Hashes before it (``scrypt$salt$hash``) used N = 2**14.
SCRYPT_N = 2**17
_R, _P = 8, 1
_LEGACY_N = 2**14


def _scrypt(password: str, salt: bytes, n: int) -> bytes:
    # maxmem: scrypt needs 128 * r * N bytes (and a little more); OpenSSL's default cap is 32 MiB.
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=_R, p=_P, dklen=32, maxmem=130 * _R * n + 2**20)


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    """scrypt with a random salt: ``scrypt$n=<N>$<salt>$<hash>``."""
    salt = os.urandom(16)
    digest = _scrypt(password, salt, n)
    return f"scrypt$n={n}$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def password_cost(stored: str) -> int:
    """The scrypt N a stored hash was made with (0 if it is not a hash this module made)."""
    parts = stored.split("$")
    if parts[0] != "scrypt":
        return 0
    if len(parts) == 3:
        return _LEGACY_N
    if len(parts) == 4 and parts[1].startswith("n=") and parts[1][2:].isdigit():
        return int(parts[1][2:])
    return 0


def verify_password(password: str, stored: str) -> bool:
    n = password_cost(stored)
    if not n or n > 2**20:  # not ours, or a cost that would take more memory than any hash made here
        return False
    salt_b64, digest_b64 = stored.split("$")[-2:]
    digest = _scrypt(password, base64.b64decode(salt_b64), n)
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
