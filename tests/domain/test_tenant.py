"""Revocation of AK/SK credentials and IAM tokens in the tenant service (issue 11, item 8): two services on
one database stand for two nodes; a fake monotonic clock drives the revocation check, so nothing sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update

from emberrtc.domain.clock import ManualClock
from emberrtc.domain.errors import InvalidParameterValue, Unauthenticated
from emberrtc.domain.secrets import SecretBox
from emberrtc.domain.tenant import LAST_USED_RESOLUTION, TenantService
from emberrtc.store.database import Database
from emberrtc.store.models import Tenant
from tests.support.database import db_url, open_database
from tests.support.waiting import until

__all__ = ["db_url"]
T = TypeVar("T")
CHECK = 1.0  # the revocation check interval of these services


class CountingDatabase:
    """A node's database, counting its units of work (to show what a request costs)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.runs = 0
        #: Run once, after the next unit of work has read its result and before it is returned.
        self.after_next: Callable[[], Awaitable[None]] | None = None

    async def run(self, work: Callable[[Any], T]) -> T:
        self.runs += 1
        result = await self.db.run(work)
        hook, self.after_next = self.after_next, None
        if hook is not None:
            await hook()
        return result


class Node:
    def __init__(self, db: Database, box: SecretBox, clock: ManualClock) -> None:
        self.db = CountingDatabase(db)
        self.mono = 1000.0  # this node's monotonic clock, moved by the tests
        self.tenants = TenantService(
            self.db,  # type: ignore[arg-type]
            box,
            clock,
            3600,
            scrypt_n=2**14,
            revocation_check=CHECK,
            monotonic=lambda: self.mono,
        )


@pytest.fixture
async def nodes(db_url: str) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes on one database (each with its own connection), sharing the master key and clock."""
    box, clock = SecretBox(Fernet.generate_key()), ManualClock(1_800_000_000.0)
    first, second = await open_database(db_url), await open_database(db_url)
    try:
        yield Node(first, box, clock), Node(second, box, clock)
    finally:
        await first.close()
        await second.close()


async def test_a_credential_revoked_on_one_node_is_refused_by_the_other_within_the_interval(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await a.tenants.create_tenant("acme", "long-enough-pw")
    ak, sk, _ = await a.tenants.create_credential("acme")
    other_ak, other_sk, _ = await a.tenants.create_credential("acme")

    assert (await b.tenants.secret_for_ak(ak))[0] == sk  # read, then cached by node b
    runs = b.db.runs
    for _ in range(50):  # within the interval: served from the cache, no database work per request
        assert (await b.tenants.secret_for_ak(ak))[0] == sk
    assert b.db.runs == runs

    info, already = await a.tenants.revoke_credential(ak)
    assert not already and info.state == "revoked" and info.revoked_at == 1_800_000_000.0
    with pytest.raises(Unauthenticated, match="revoked"):  # the revoking node refuses it at once
        await a.tenants.secret_for_ak(ak)

    b.mono += CHECK  # the interval is over: node b reads the epoch once, empties its cache
    with pytest.raises(Unauthenticated, match="revoked"):
        await b.tenants.secret_for_ak(ak)
    assert b.db.runs == runs + 2  # the epoch, then the credential itself
    assert (await b.tenants.secret_for_ak(other_ak))[0] == other_sk  # the tenant's other AK still works

    _, again = await a.tenants.revoke_credential(ak)
    assert again
    with pytest.raises(InvalidParameterValue, match="NOSUCHAK"):
        await a.tenants.revoke_credential("NOSUCHAK")


async def test_a_lookup_overtaken_by_a_revocation_is_not_cached(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await a.tenants.create_tenant("acme", "long-enough-pw")
    ak, sk, _ = await a.tenants.create_credential("acme")
    with pytest.raises(Unauthenticated):
        await b.tenants.secret_for_ak("NOSUCHAK")  # node b has read the epoch: the next read is a second away

    async def revoked_meanwhile() -> None:
        # After b read the (still active) credential: a revokes it, and b's next epoch read sees that.
        await a.tenants.revoke_credential(ak)
        b.mono += CHECK
        await b.tenants._revocations_seen()

    b.db.after_next = revoked_meanwhile
    assert (await b.tenants.secret_for_ak(ak))[0] == sk  # begun before the revocation: answered
    with pytest.raises(Unauthenticated, match="revoked"):  # but not kept: the next request reads it again
        await b.tenants.secret_for_ak(ak)


async def test_requests_arriving_together_share_one_epoch_read(nodes: tuple[Node, Node]) -> None:
    import asyncio

    a, b = nodes
    await a.tenants.create_tenant("acme", "long-enough-pw")
    ak, _, _ = await a.tenants.create_credential("acme")
    await b.tenants.secret_for_ak(ak)
    await a.tenants.revoke_credential(ak)
    b.mono += CHECK
    runs = b.db.runs
    results = await asyncio.gather(*(b.tenants.secret_for_ak(ak) for _ in range(20)), return_exceptions=True)
    # None of them used the cache from before the revocation: each waited for the one epoch read.
    assert all(isinstance(r, Unauthenticated) for r in results), results
    assert b.db.runs - runs == 1 + 20  # one epoch read, then each looks the (revoked) AK up


async def test_listing_shows_state_and_last_use_and_never_a_secret(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await a.tenants.create_tenant("acme", "long-enough-pw")
    await a.tenants.create_tenant("globex", "long-enough-pw")
    ak1, sk1, _ = await a.tenants.create_credential("acme")
    ak2, _, _ = await a.tenants.create_credential("acme")
    ak3, _, _ = await a.tenants.create_credential("globex")
    await a.tenants.revoke_credential(ak2)

    listed = await b.tenants.list_credentials()
    assert {(c.ak, c.tenant, c.user_name, c.state) for c in listed} == {
        (ak1, "acme", "acme", "active"),
        (ak2, "acme", "acme", "revoked"),
        (ak3, "globex", "globex", "active"),
    }
    assert sk1 not in repr(listed)
    assert [c.ak for c in await b.tenants.list_credentials("globex")] == [ak3]
    with pytest.raises(InvalidParameterValue, match="nobody"):
        await b.tenants.list_credentials("nobody")

    clock: ManualClock = b.tenants._clock  # type: ignore[assignment]
    first_use = clock.now()
    b.tenants.note_used(ak1)

    async def last_used() -> float | None:
        return next(c.last_used_at for c in await a.tenants.list_credentials("acme") if c.ak == ak1)

    await until(lambda: _equals(last_used(), first_use), within=5, what="last use written")
    clock.advance(LAST_USED_RESOLUTION / 2)
    runs = b.db.runs
    b.tenants.note_used(ak1)  # within the minute: no write
    assert b.db.runs == runs and await last_used() == first_use
    clock.advance(LAST_USED_RESOLUTION / 2)
    b.tenants.note_used(ak1)
    await until(lambda: _equals(last_used(), clock.now()), within=5, what="the next minute's use written")


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_token_revocation_by_user_and_by_tenant(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await a.tenants.create_tenant("acme", "long-enough-pw")
    await a.tenants.create_tenant("globex", "long-enough-pw")
    acme1 = (await a.tenants.issue_token("acme", "long-enough-pw", "acme", None)).token
    acme2 = (await b.tenants.issue_token("acme", "long-enough-pw", "acme", None)).token
    globex = (await a.tenants.issue_token("globex", "long-enough-pw", "globex", None)).token

    done = await a.tenants.revoke_tokens(user_name="acme")
    assert (done.tenants, done.revoked) == (["acme"], 2)
    for token in (acme1, acme2):
        for node in (a, b):  # no cache: refused at once everywhere
            with pytest.raises(Unauthenticated, match="revoked"):
                await node.tenants.principal_for_token(token)
    assert (await b.tenants.principal_for_token(globex)).domain_name == "globex"

    fresh = (await a.tenants.issue_token("acme", "long-enough-pw", "acme", None)).token  # signing in again works
    assert (await b.tenants.principal_for_token(fresh)).domain_name == "acme"

    done = await b.tenants.revoke_tokens(tenant_name="globex")
    assert (done.tenants, done.revoked) == (["globex"], 1)
    with pytest.raises(Unauthenticated, match="revoked"):
        await a.tenants.principal_for_token(globex)
    assert (await a.tenants.principal_for_token(fresh)).domain_name == "acme"


async def test_token_revocation_names_what_it_cannot_find(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    await a.tenants.create_tenant("acme", "long-enough-pw")
    await a.tenants.create_tenant("globex", "long-enough-pw")
    with pytest.raises(InvalidParameterValue, match="name the IAM user or the tenant"):
        await a.tenants.revoke_tokens()
    with pytest.raises(InvalidParameterValue, match="'bob'"):
        await a.tenants.revoke_tokens(user_name="bob")
    with pytest.raises(InvalidParameterValue, match="'initech'"):
        await a.tenants.revoke_tokens(tenant_name="initech")
    with pytest.raises(InvalidParameterValue, match="'globex'"):
        await a.tenants.revoke_tokens(user_name="acme", tenant_name="globex")

    # Two tenants with a user of one name (IAM user names are unique within an account only).
    await a.db.run(lambda s: s.execute(update(Tenant).where(Tenant.domain_name == "globex").values(user_name="acme")))
    with pytest.raises(InvalidParameterValue, match="--tenant"):
        await a.tenants.revoke_tokens(user_name="acme")
    token = (await a.tenants.issue_token("acme", "long-enough-pw", "globex", None)).token
    done = await a.tenants.revoke_tokens(user_name="acme", tenant_name="globex")
    assert (done.tenants, done.revoked) == (["globex"], 1)
    with pytest.raises(Unauthenticated, match="revoked"):
        await a.tenants.principal_for_token(token)


async def test_any_tenant_says_whether_the_first_start_should_tell_how_to_make_one(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    assert not await b.tenants.any_tenant()
    await a.tenants.create_tenant("acme", "long-enough-pw")
    assert await b.tenants.any_tenant()
