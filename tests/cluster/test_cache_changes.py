"""Cache changes through the real Redis: a change on one node drops the entry from every node's cache at
once; malformed messages are ignored; a node whose subscription was lost drops its whole cache when it is
back; a change that cannot be published is logged, not raised; an AK revoked on one node is dropped from
the others' caches at once."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from emberrtc.cluster.cache_changes import CacheChanges
from emberrtc.cluster.keyspace import Keyspace
from emberrtc.cluster.subscriber import Subscriber
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.errors import Unauthenticated
from emberrtc.domain.secrets import SecretBox
from tests.cluster.conftest import REDIS_URL
from tests.domain.test_tenant import Node as TenantNode
from tests.support.database import db_url, open_database
from tests.support.waiting import until

__all__ = ["db_url"]


class Node:
    def __init__(self, keys: Keyspace, node_id: str) -> None:
        # A client name of its own: the test finds this node's subscription among the server's clients.
        self.name = f"ember-test-{secrets.token_hex(6)}"
        self.redis = Redis.from_url(REDIS_URL, decode_responses=True, client_name=self.name)
        self.forgotten: list[str | None] = []
        self.subscriber = Subscriber(self.redis, poll=0.2)
        self.changes = CacheChanges(self.redis, keys, node_id, "apps", self.forgotten.append)
        self.changes.listen(self.subscriber)

    async def close(self) -> None:
        await self.subscriber.close()
        await self.redis.aclose()


@pytest.fixture
async def nodes(redis: Redis, keys: Keyspace) -> AsyncIterator[list[Node]]:
    made = [Node(keys, f"node-{i}") for i in range(3)]
    for node in made:
        await node.subscriber.start()
    try:
        yield made
    finally:
        for node in made:
            await node.close()


async def test_a_change_on_one_node_reaches_every_nodes_cache(nodes: list[Node]) -> None:
    app_id = "0123456789abcdef0123456789abcdef"
    await nodes[0].changes.changed(app_id)
    for node in nodes:  # the sender's own cache included
        await until(lambda n=node: n.forgotten == [app_id], within=5, what=node.changes.node_id)


async def test_malformed_messages_are_ignored(redis: Redis, nodes: list[Node]) -> None:
    channel = nodes[0].changes.channel
    for message in ("nope", '{"key": 5, "from": "node-1"}', '{"key": "a/b", "from": "n"}', '{"from": "n"}'):
        await redis.publish(channel, message)
    await nodes[1].changes.changed("app-after")
    await until(lambda: nodes[2].forgotten == ["app-after"], within=5, what="the valid message, alone")


async def test_a_node_whose_subscription_was_lost_drops_its_whole_cache(redis: Redis, nodes: list[Node]) -> None:
    victim = nodes[1]
    clients = await redis.client_list()
    ids = [c["id"] for c in clients if c.get("name") == victim.name and "subscribe" in c.get("cmd", "")]
    assert len(ids) == 1, clients
    await redis.execute_command("CLIENT", "KILL", "ID", ids[0])
    await until(lambda: None in victim.forgotten, within=10, what="the whole cache to be dropped")
    # And it hears changes again.
    await nodes[0].changes.changed("app-later")
    await until(lambda: "app-later" in victim.forgotten, within=5, what="changes after the new subscription")


async def test_a_change_that_cannot_be_published_is_logged(keys: Keyspace, caplog: pytest.LogCaptureFixture) -> None:
    down = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    try:
        changes = CacheChanges(down, keys, "node-x", "apps", lambda app_id: None, timeout=0.5)
        with caplog.at_level(logging.WARNING, logger="emberrtc.cluster.cache_changes"):
            await changes.changed("app-1")
        assert any("EMBER_APP_CACHE_TTL" in r.getMessage() for r in caplog.records)
    finally:
        await down.aclose()


async def test_an_ak_revoked_on_one_node_is_refused_by_the_others_at_once(
    db_url: str, redis: Redis, keys: Keyspace
) -> None:
    """Two tenant services on one database whose revocation check is an hour away (their monotonic clocks
    stand still): only the message can make node B drop the AK it cached."""
    box, clock = SecretBox(Fernet.generate_key()), ManualClock(1_800_000_000.0)
    first, second = await open_database(db_url), await open_database(db_url)
    a, b = TenantNode(first, box, clock), TenantNode(second, box, clock)
    a.tenants._revocation_check = b.tenants._revocation_check = 3600
    buses = [Node(keys, "node-a"), Node(keys, "node-b")]
    try:
        for bus, node in zip(buses, (a, b), strict=True):
            forget = node.tenants.forget
            changes = CacheChanges(bus.redis, keys, bus.changes.node_id, "credentials", lambda ak, f=forget: f())
            changes.listen(bus.subscriber)
            node.tenants.revoked = changes.changed
            await bus.subscriber.start()
        await a.tenants.create_tenant("acme", "long-enough-pw")
        ak, sk, _ = await a.tenants.create_credential("acme")
        assert (await b.tenants.secret_for_ak(ak))[0] == sk  # cached by node B
        assert (await b.tenants.secret_for_ak(ak))[0] == sk
        await a.tenants.revoke_credential(ak)

        async def refused() -> bool:
            try:
                await b.tenants.secret_for_ak(ak)
            except Unauthenticated:
                return True
            return False

        await until(refused, within=5, what="node B to refuse the revoked AK")
    finally:
        for bus in buses:
            await bus.close()
        await first.close()
        await second.close()
