"""The cluster's keys in Redis, all under ``ember:{cluster_name}:``.

The braces make the cluster name a Redis Cluster hash tag: every key of one Ember cluster lands in one hash
slot, so the scripts of :mod:`.placement` and :mod:`.presence` that touch several keys work there too.

- ``nodes``: set of the node IDs that registered (a member whose ``node:`` key expired is dead);
- ``node:{node_id}``: hash of a live node (public URL, media IP, load, its process's ``instance`` token),
  expiring ``cluster_node_ttl`` seconds after its last heartbeat;
- ``placing:{node_id}``: sorted set of the rooms placed on the node that its heartbeat does not show yet
  (score: when, in ms of Redis's clock), so placements between two heartbeats count as load;
- ``room:{app_id}/{room_id}``: the node hosting the room, expiring unless its host refreshes it;
- ``failover:{node_id}``: held (briefly) by the live node reconciling a dead node's rooms and jobs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keyspace:
    cluster_name: str

    @property
    def prefix(self) -> str:
        return f"ember:{{{self.cluster_name}}}:"

    @property
    def nodes(self) -> str:
        return self.prefix + "nodes"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def placing(self, node_id: str) -> str:
        return f"{self.prefix}placing:{node_id}"

    def failover(self, node_id: str) -> str:
        return f"{self.prefix}failover:{node_id}"

    @staticmethod
    def room_member(app_id: str, room_id: str) -> str:
        """A room as a member of ``placing:`` sets (neither ID holds ``/``)."""
        return f"{app_id}/{room_id}"

    def room(self, app_id: str, room_id: str) -> str:
        return f"{self.prefix}room:{self.room_member(app_id, room_id)}"
