"""Tenants (IAM accounts), their AK/SK credentials and IAM tokens (spec 3.2)."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from emberrtc.domain.clock import Clock
from emberrtc.domain.errors import InvalidParameterValue, Unauthenticated
from emberrtc.domain.secrets import (
    SCRYPT_N,
    SecretBox,
    hash_password,
    new_hex_id,
    password_cost,
    token_digest,
    verify_password,
)
from emberrtc.store.database import Database
from emberrtc.store.models import Credential, Tenant, Token

_NAME_RE = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant a request acts for."""

    domain_id: str
    domain_name: str
    project_id: str
    project_name: str
    user_name: str


def _principal(t: Tenant) -> Principal:
    return Principal(t.domain_id, t.domain_name, t.project_id, t.project_name, t.user_name)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: float
    issued_at: float
    principal: Principal


class TenantService:
    """Creates tenants and credentials (CLI), issues and checks tokens and AK/SK keys (API)."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        clock: Clock,
        token_ttl: int,
        *,
        scrypt_n: int = SCRYPT_N,
        hash_concurrency: int = 2,
    ) -> None:
        self._db = db
        self._box = box
        self._clock = clock
        self._token_ttl = token_ttl
        self._scrypt_n = scrypt_n
        # Each hash holds 128 * 8 * N bytes (128 MiB at 2**17) for its duration: a bounded number at once,
        # so that many sign-ins together queue instead of taking the host's memory.
        self._hashing = asyncio.Semaphore(hash_concurrency)
        self._dummy_hash: str | None = None  # made on first use: it costs as much as a real one
        # AK -> (SK, principal). Credentials are immutable once made, so caching them is safe;
        # deleting a tenant clears the cache through forget().
        self._ak_cache: dict[str, tuple[str, Principal]] = {}

    async def create_tenant(self, name: str, password: str, *, project_name: str = "ember") -> Principal:
        """Create an account with one project and one IAM user named like the account."""
        for what, value in (("tenant name", name), ("project name", project_name)):
            if not _NAME_RE.fullmatch(value):
                raise InvalidParameterValue(f"{what} must be 1-64 letters, digits, '_', '-' or '.'")
        if len(password) < 8:
            raise InvalidParameterValue("password must be at least 8 characters")
        tenant = Tenant(
            domain_id=new_hex_id(),
            domain_name=name,
            project_id=new_hex_id(),
            project_name=project_name,
            user_name=name,
            password_hash=await self._hash(password),
            created_at=self._clock.now(),
        )

        def work(s: Session) -> None:
            s.add(tenant)
            try:
                s.flush()
            except IntegrityError as exc:
                raise InvalidParameterValue(f"tenant {name!r} exists already") from exc

        await self._db.run(work)
        return _principal(tenant)

    async def create_credential(self, tenant_name: str) -> tuple[str, str, Principal]:
        """Make a new AK/SK pair for a tenant; the SK is shown once and stored encrypted."""
        ak = secrets.token_hex(10).upper()
        sk = secrets.token_urlsafe(30)

        def work(s: Session) -> Principal:
            tenant = s.execute(select(Tenant).where(Tenant.domain_name == tenant_name)).scalar_one_or_none()
            if tenant is None:
                raise InvalidParameterValue(f"no tenant named {tenant_name!r}")
            sealed = self._box.seal(sk)
            s.add(Credential(ak=ak, domain_id=tenant.domain_id, sk_encrypted=sealed, created_at=self._clock.now()))
            return _principal(tenant)

        return ak, sk, await self._db.run(work)

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(hash_password, password, self._scrypt_n)

    async def _verify(self, password: str, stored: str | None) -> bool:
        if stored is None:
            # The same work whether the user exists or not, so timing tells nothing.
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash("not-a-password")
            stored = self._dummy_hash
            await self._check(password, stored)
            return False
        return await self._check(password, stored)

    async def _check(self, password: str, stored: str) -> bool:
        async with self._hashing:
            return await asyncio.to_thread(verify_password, password, stored)

    async def issue_token(
        self,
        user_name: str,
        password: str,
        domain_name: str | None,
        domain_id: str | None,
        project: tuple[str | None, str | None] | None = None,
    ) -> IssuedToken:
        """IAM password method: a 24-hour token for the user of the named (or identified) account, scoped
        to ``project`` (name, id; either may be None) when given. A password stored at a lower scrypt cost
        than configured is hashed again, now that it is known."""

        def find(s: Session) -> Tenant | None:
            q = select(Tenant).where(Tenant.user_name == user_name)
            q = q.where(Tenant.domain_name == domain_name) if domain_name else q.where(Tenant.domain_id == domain_id)
            return s.execute(q).scalar_one_or_none()

        tenant = await self._db.run(find)
        # scrypt takes hundreds of milliseconds: off the event loop and off the database thread.
        ok = await self._verify(password, tenant.password_hash if tenant else None)
        if tenant is None or not ok:
            raise Unauthenticated("the user name, password or account name is wrong")
        if project is not None and project[0] not in (None, tenant.project_name):
            raise Unauthenticated("the scoped project does not belong to this account")
        if project is not None and project[1] not in (None, tenant.project_id):
            raise Unauthenticated("the scoped project does not belong to this account")
        rehashed = await self._hash(password) if password_cost(tenant.password_hash) < self._scrypt_n else None
        now = self._clock.now()
        token = "EMB" + secrets.token_urlsafe(48)
        domain = tenant.domain_id

        def store(s: Session) -> None:
            s.add(Token(token_hash=token_digest(token), domain_id=domain, expires_at=now + self._token_ttl))
            s.execute(delete(Token).where(Token.expires_at < now))
            if rehashed is not None:
                s.execute(update(Tenant).where(Tenant.domain_id == domain).values(password_hash=rehashed))

        await self._db.run(store)
        return IssuedToken(token, now + self._token_ttl, now, _principal(tenant))

    async def principal_for_token(self, token: str) -> Principal:
        digest = token_digest(token)
        row = await self._db.run(
            lambda s: s.execute(
                select(Tenant, Token.expires_at)
                .join(Token, Token.domain_id == Tenant.domain_id)
                .where(Token.token_hash == digest)
            ).one_or_none()
        )
        if row is None:
            raise Unauthenticated("the X-Auth-Token is not valid")
        tenant, expires_at = row
        if expires_at <= self._clock.now():
            raise Unauthenticated("the X-Auth-Token has expired; get a new one from POST /v3/auth/tokens")
        return _principal(tenant)

    async def revoke_token(self, token: str) -> None:
        """Forget a token (signing out of the console): it stops working on every node at once."""
        digest = token_digest(token)
        await self._db.run(lambda s: s.execute(delete(Token).where(Token.token_hash == digest)))

    async def secret_for_ak(self, ak: str) -> tuple[str, Principal]:
        """The SK and the tenant of an access key, or :class:`Unauthenticated`."""
        cached = self._ak_cache.get(ak)
        if cached is not None:
            return cached
        row = await self._db.run(
            lambda s: s.execute(
                select(Credential.sk_encrypted, Tenant)
                .join(Tenant, Tenant.domain_id == Credential.domain_id)
                .where(Credential.ak == ak)
            ).one_or_none()
        )
        if row is None:
            raise Unauthenticated("unknown access key (AK)")
        sealed, tenant = row
        result = (self._box.open(sealed), _principal(tenant))
        self._ak_cache[ak] = result
        return result
