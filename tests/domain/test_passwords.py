"""Stored passwords: scrypt at N=2**17 by default, older (cheaper) hashes replaced at the next sign-in
(issue 11, item 10)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from emberrtc.config import Settings
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.errors import Unauthenticated
from emberrtc.domain.secrets import SCRYPT_N, SecretBox, hash_password, password_cost, verify_password
from emberrtc.domain.tenant import TenantService
from emberrtc.store.database import Database, default_url
from emberrtc.store.models import Tenant


def test_the_default_cost_is_current_guidance() -> None:
    assert SCRYPT_N == 2**17 and Settings().password_scrypt_n == 2**17
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$n=131072$") and password_cost(stored) == 2**17
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsf", stored)


def test_hashes_of_the_earlier_format_still_verify() -> None:
    # As Ember stored them before: scrypt$salt$hash with N=2**14, r=8, p=1.
    salt = os.urandom(16)
    digest = hashlib.scrypt(b"old password", salt=salt, n=2**14, r=8, p=1, dklen=32)
    legacy = f"scrypt${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert password_cost(legacy) == 2**14
    assert verify_password("old password", legacy) and not verify_password("old passwore", legacy)
    assert not verify_password("x", "bcrypt$whatever") and not verify_password("x", "scrypt$n=99999999$a$b")


@pytest.fixture
async def db(backend: Settings) -> AsyncIterator[Database]:
    database = Database(backend.database_url or default_url(backend.data_dir))
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


async def stored_hash(db: Database, name: str) -> str:
    return str(
        await db.run(lambda s: s.execute(select(Tenant.password_hash).where(Tenant.user_name == name)).scalar_one())
    )


async def test_a_cheaper_hash_is_replaced_at_the_next_sign_in(db: Database) -> None:
    box, clock = SecretBox(Fernet.generate_key()), ManualClock()
    name = f"rehash{os.urandom(4).hex()}"
    await TenantService(db, box, clock, 3600, scrypt_n=2**14).create_tenant(name, "a long password")
    assert password_cost(await stored_hash(db, name)) == 2**14
    # The operator raised the cost (the lowest costs are used here to keep the test fast).
    stronger = TenantService(db, box, clock, 3600, scrypt_n=2**15)
    with pytest.raises(Unauthenticated):
        await stronger.issue_token(name, "a wrong password", name, None)
    assert password_cost(await stored_hash(db, name)) == 2**14  # only a correct password is re-hashed
    await stronger.issue_token(name, "a long password", name, None)
    rehashed = await stored_hash(db, name)
    assert password_cost(rehashed) == 2**15 and verify_password("a long password", rehashed)
    await stronger.issue_token(name, "a long password", name, None)  # and it still signs in
