"""Cluster mode: several Salon processes serving as one, over Redis and PostgreSQL.

``directory`` is the shared session directory (local sessions plus a mirror of the other
nodes'); ``node`` is the node's link to Redis: heartbeat, publishing sessions, the per-node
stanza streams, and the clean-up after a node that died.
"""
