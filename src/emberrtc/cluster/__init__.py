"""Several Ember nodes on one PostgreSQL and one Redis (docs/scaling.md).

Redis holds what is live and shared: each node's presence with its load (:mod:`.presence`) and which node
hosts each room (:mod:`.placement`); :mod:`.node` puts them together for one node. PostgreSQL holds what
must last, as on a single node. Without ``EMBER_REDIS_URL`` none of this runs.
"""
