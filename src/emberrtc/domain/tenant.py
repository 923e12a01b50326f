"""Tenants (IAM accounts), their AK/SK credentials and IAM tokens (spec 3.2)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
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
from emberrtc.store.models import Credential, RevocationEpoch, Tenant, Token

log = logging.getLogger(__name__)
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


@dataclass(frozen=True)
class CredentialInfo:
    """An AK/SK pair as ``ember credential list`` shows it: never its SK."""

    ak: str
    tenant: str
    user_name: str
    created_at: float
    #: Last accepted signature, to the minute; None: never used (or not since 0007_revoke).
    last_used_at: float | None
    revoked_at: float | None

    @property
    def state(self) -> str:
        return "revoked" if self.revoked_at is not None else "active"


@dataclass(frozen=True)
class TokenRevocation:
    """What ``ember token revoke`` did: the tenants whose tokens it revoked, and how many were valid."""

    tenants: list[str]
    revoked: int


#: A node writes an AK's ``last_used_at`` at most this often (seconds): one write a minute, not per request.
LAST_USED_RESOLUTION = 60.0


def _bump_epoch(s: Session) -> None:
    """Raise the revocation epoch in the caller's transaction: every node drops its cached credentials
    when it next looks (at most ``revocation_check`` seconds later)."""
    done = s.execute(update(RevocationEpoch).where(RevocationEpoch.id == 1).values(epoch=RevocationEpoch.epoch + 1))
    if done.rowcount == 0:  # type: ignore[attr-defined]  # the row 0007_revoke made is gone: make it again
        s.add(RevocationEpoch(id=1, epoch=1))


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
        revocation_check: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
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
        # AK -> (SK, principal). A credential never changes but can be revoked, on any node or by the CLI:
        # before a request uses this cache, the revocation epoch is read if it was last read more than
        # ``revocation_check`` seconds ago (real time, not the domain clock), and a changed epoch empties
        # the cache. One primary-key read a second per process, whatever the traffic.
        self._ak_cache: dict[str, tuple[str, Principal]] = {}
        self._cache_generation = 0  # raised on every emptying: a lookup begun before it is not cached
        self._revocation_check = revocation_check
        self._monotonic = monotonic
        self._seen_epoch: int | None = None
        self._next_check = float("-inf")
        self._checking: asyncio.Task[None] | None = None
        #: In a cluster (set by bootstrap): tells every node's AK cache at once that an AK was revoked
        #: (``cluster.cache_changes``), rather than at its next revocation check.
        self.revoked: Callable[[str], Awaitable[None]] | None = None
        # AK -> when this node last wrote its ``last_used_at``; the writes in flight.
        self._used_written: dict[str, float] = {}
        self._writes: set[asyncio.Task[None]] = set()

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
            # Expired rows go; revoked ones too once expired (until then they say "revoked", not "unknown").
            s.execute(delete(Token).where(Token.expires_at < now))
            if rehashed is not None:
                s.execute(update(Tenant).where(Tenant.domain_id == domain).values(password_hash=rehashed))

        await self._db.run(store)
        return IssuedToken(token, now + self._token_ttl, now, _principal(tenant))

    async def principal_for_token(self, token: str) -> Principal:
        digest = token_digest(token)
        row = await self._db.run(
            lambda s: s.execute(
                select(Tenant, Token.expires_at, Token.revoked_at)
                .join(Token, Token.domain_id == Tenant.domain_id)
                .where(Token.token_hash == digest)
            ).one_or_none()
        )
        if row is None:
            raise Unauthenticated("the X-Auth-Token is not valid")
        # Read from the database on every request (no cache), so a revocation holds at once on every node.
        tenant, expires_at, revoked_at = row
        if revoked_at is not None:
            raise Unauthenticated("the X-Auth-Token has been revoked; get a new one from POST /v3/auth/tokens")
        if expires_at <= self._clock.now():
            raise Unauthenticated("the X-Auth-Token has expired; get a new one from POST /v3/auth/tokens")
        return _principal(tenant)

    async def revoke_token(self, token: str) -> None:
        """Forget a token (signing out of the console): it stops working on every node at once."""
        digest = token_digest(token)
        await self._db.run(lambda s: s.execute(delete(Token).where(Token.token_hash == digest)))

    async def secret_for_ak(self, ak: str) -> tuple[str, Principal]:
        """The SK and the tenant of an access key, or :class:`Unauthenticated` (unknown or revoked)."""
        await self._revocations_seen()
        cached = self._ak_cache.get(ak)
        if cached is not None:
            return cached
        generation = self._cache_generation
        row = await self._db.run(
            lambda s: s.execute(
                select(Credential.sk_encrypted, Credential.revoked_at, Tenant)
                .join(Tenant, Tenant.domain_id == Credential.domain_id)
                .where(Credential.ak == ak)
            ).one_or_none()
        )
        if row is None:
            raise Unauthenticated("unknown access key (AK)")
        sealed, revoked_at, tenant = row
        if revoked_at is not None:
            raise Unauthenticated("this access key (AK) has been revoked")
        result = (self._box.open(sealed), _principal(tenant))
        # A revocation seen while this row was read may be newer than the row: then it is not kept.
        if generation == self._cache_generation:
            self._ak_cache[ak] = result
        return result

    def note_used(self, ak: str) -> None:
        """A request signed with ``ak`` was accepted: write its ``last_used_at`` if this node has not in
        the last minute (in the background; the request does not wait for it)."""
        now = self._clock.now()
        if now - self._used_written.get(ak, float("-inf")) < LAST_USED_RESOLUTION:
            return
        self._used_written[ak] = now

        def work(s: Session) -> None:
            s.execute(
                update(Credential)
                .where(Credential.ak == ak)
                .where(Credential.last_used_at.is_(None) | (Credential.last_used_at < now))
                .values(last_used_at=now)
            )

        task = asyncio.get_running_loop().create_task(self._db.run(work))
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not record an access key's last use: %s", task.exception())

    async def _revocations_seen(self) -> None:
        """Empty the AK cache if anything was revoked since the epoch was last read, reading it at most
        once every ``revocation_check`` seconds. Requests arriving while it is read wait for that one read,
        so none of them uses a cache older than the interval."""
        if self._checking is None:
            if self._monotonic() < self._next_check:
                return
            self._checking = asyncio.get_running_loop().create_task(self._check_epoch())
        await asyncio.shield(self._checking)

    async def _check_epoch(self) -> None:
        try:
            epoch = await self._db.run(
                lambda s: s.execute(select(RevocationEpoch.epoch).where(RevocationEpoch.id == 1)).scalar_one_or_none()
            )
            if epoch != self._seen_epoch:
                self.forget()
                self._seen_epoch = epoch
        finally:
            self._checking = None
            self._next_check = self._monotonic() + self._revocation_check

    def forget(self) -> None:
        """Drop every cached credential (this node; others follow through the revocation epoch)."""
        self._ak_cache.clear()
        self._cache_generation += 1

    # --- revocation (CLI) ----------------------------------------------------------------------

    async def any_tenant(self) -> bool:
        """Is there a tenant at all (the server's first start says how to make one when there is none)?"""
        return await self._db.run(lambda s: s.scalar(select(Tenant.domain_id).limit(1)) is not None)

    async def list_credentials(self, tenant_name: str | None = None) -> list[CredentialInfo]:
        """Every credential (of one tenant when named), oldest first per tenant; never an SK."""

        def work(s: Session) -> list[CredentialInfo]:
            q = select(Credential, Tenant).join(Tenant, Tenant.domain_id == Credential.domain_id)
            if tenant_name is not None:
                if s.execute(select(Tenant.domain_id).where(Tenant.domain_name == tenant_name)).first() is None:
                    raise InvalidParameterValue(f"no tenant named {tenant_name!r}")
                q = q.where(Tenant.domain_name == tenant_name)
            rows = s.execute(q.order_by(Tenant.domain_name, Credential.created_at, Credential.ak)).all()
            return [
                CredentialInfo(c.ak, t.domain_name, t.user_name, c.created_at, c.last_used_at, c.revoked_at)
                for c, t in rows
            ]

        return await self._db.run(work)

    async def revoke_credential(self, ak: str) -> tuple[CredentialInfo, bool]:
        """Revoke an AK/SK pair: refused on every node within ``revocation_check`` seconds. Returns the
        credential and whether it was revoked already (then nothing changes)."""
        now = self._clock.now()

        def work(s: Session) -> tuple[CredentialInfo, bool]:
            row = s.execute(
                select(Credential, Tenant)
                .join(Tenant, Tenant.domain_id == Credential.domain_id)
                .where(Credential.ak == ak)
                .with_for_update(of=Credential)
            ).one_or_none()
            if row is None:
                raise InvalidParameterValue(f"no credential with the access key {ak!r}")
            cred, tenant = row
            already = cred.revoked_at is not None
            if not already:
                cred.revoked_at = now
                _bump_epoch(s)
            info = CredentialInfo(
                cred.ak, tenant.domain_name, tenant.user_name, cred.created_at, cred.last_used_at, cred.revoked_at
            )
            return info, already

        try:
            info, already = await self._db.run(work)
        finally:
            self.forget()
        if not already and self.revoked is not None:
            await self.revoked(ak)
        return info, already

    async def revoke_tokens(self, *, user_name: str | None = None, tenant_name: str | None = None) -> TokenRevocation:
        """Revoke every unexpired token of an IAM user (found by name, within ``tenant_name`` when given)
        or of a whole tenant. Each tenant has one IAM user today, so both reach the same tokens; the user
        can sign in again with the password. Tokens are checked against the database on every request, so
        the revocation holds at once on every node."""
        if user_name is None and tenant_name is None:
            raise InvalidParameterValue("name the IAM user or the tenant whose tokens to revoke")
        now = self._clock.now()

        def work(s: Session) -> TokenRevocation:
            q = select(Tenant.domain_id, Tenant.domain_name)
            if tenant_name is not None:
                q = q.where(Tenant.domain_name == tenant_name)
            if user_name is not None:
                q = q.where(Tenant.user_name == user_name)
            found = s.execute(q).all()
            if not found:
                what = [f"tenant {tenant_name!r}"] if tenant_name is not None else []
                what += [f"IAM user {user_name!r}"] if user_name is not None else []
                raise InvalidParameterValue(f"no {' with '.join(what)}")
            if tenant_name is None and len(found) > 1:
                raise InvalidParameterValue(
                    f"{len(found)} tenants have an IAM user named {user_name!r}: name the tenant too (--tenant)"
                )
            done = s.execute(
                update(Token)
                .where(Token.domain_id.in_([d for d, _ in found]))
                .where(Token.revoked_at.is_(None), Token.expires_at > now)
                .values(revoked_at=now)
            )
            _bump_epoch(s)
            return TokenRevocation(sorted(n for _, n in found), done.rowcount)  # type: ignore[attr-defined]

        return await self._db.run(work)
