"""The cluster's session directory: this node's sessions plus a mirror of every other node's.

The router and the modules ask it the questions they ask a single process's
``SessionRegistry`` (``get``, ``resources``, ``available``, ...) and get back sessions of
both kinds: local ``C2SSession``s, and ``RemoteSession``s standing for sessions bound on
another node. A remote session carries what the modules read (full JID, priority,
availability, the last available presence, the shared slots such as carbons enabled or
roster pushes wanted); its ``send`` forwards the stanza to its node and ``close`` asks that
node to close it. So presence broadcasts, message delivery, carbons and roster pushes reach
users on other nodes without any module knowing about the cluster.

The mirror is fed by :mod:`salon.cluster.node` from Redis (a hash per node, and events).
This file does no IO.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Protocol

from salon.core.session import C2SSession, Connection, SessionSlot
from salon.core.sessions import SessionRegistry
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.serializer import serialize_str


class Transport(Protocol):
    """What the directory needs from the node: forwarding and publishing."""

    def forward(self, node: str, to: JID, stanza: Element, hops: int = 0) -> None: ...
    def close_remote(
        self, node: str, to: JID, condition: StreamErrorCondition | None = None
    ) -> None: ...
    def published(self, session: C2SSession) -> None: ...
    def withdrawn(self, session: C2SSession) -> None: ...


class RemoteLink:
    """The ``Connection`` of a remote session: its stanzas go to its node."""

    __slots__ = ("jid", "node", "transport")

    def __init__(self, transport: Transport, node: str, jid: JID) -> None:
        self.transport = transport
        self.node = node
        self.jid = jid

    def send_stanza(self, stanza: Element) -> None:
        self.transport.forward(self.node, self.jid, stanza)

    def close_stream(
        self,
        condition: StreamErrorCondition | None = None,
        text: str | None = None,
        extra: Element | None = None,
    ) -> None:
        # A resource conflict (the newest wins), an account removed or disabled, ...
        self.transport.close_remote(self.node, self.jid, condition)

    def idle_seconds(self) -> float:
        return 0.0  # its own node pings it

    @property
    def peer(self) -> str:
        return f"cluster node {self.node}"


class RemoteSession(C2SSession):
    """A session bound on another node, as this node knows it."""

    is_remote = True
    __slots__ = ("node",)

    def __init__(self, jid: JID, node: str, link: Connection) -> None:
        super().__init__(jid, link)
        self.node = node

    def update(self, record: dict[str, Any]) -> None:
        """Take the state its node published (see ``session_record``)."""
        self.priority = int(record.get("p", 0))
        self.is_available = bool(record.get("a", False))
        presence = record.get("x")
        self.presence = parse_element(presence) if presence else None
        self._slots = None
        for name, value in (record.get("s") or {}).items():
            slot = SessionSlot.registry.get(name)
            if slot is not None:
                if self._slots is None:
                    self._slots = {}
                self._slots[slot] = value

    def __repr__(self) -> str:
        return f"<RemoteSession {self.jid} on {self.node}>"


def session_record(session: C2SSession) -> str:
    """What other nodes keep of a local session, as JSON."""
    record: dict[str, Any] = {"p": session.priority, "a": session.is_available}
    if session.is_available and session.presence is not None:
        record["x"] = serialize_str(session.presence)
    shared = session.shared_slots()
    if shared:
        record["s"] = shared
    return json.dumps(record, separators=(",", ":"))


class ClusterDirectory:
    """Local sessions (a ``SessionRegistry``) and the other nodes' (``RemoteSession``s)."""

    def __init__(self, node: str, max_resources: int = 16) -> None:
        self.node = node
        self.local = SessionRegistry(max_resources)
        self.max_resources = max_resources
        self._remote: dict[JID, dict[str, RemoteSession]] = {}
        self.transport: Transport | None = None

    def __len__(self) -> int:
        return len(self.local)

    # ------------------------------------------------------------------ SessionDirectory
    def get(self, full: JID) -> C2SSession | None:
        session = self.local.get(full)
        if session is not None or full.resource is None:
            return session
        remote = self._remote.get(full.bare)
        return remote.get(full.resource) if remote else None

    def resources(self, bare: JID) -> list[C2SSession]:
        found = self.local.resources(bare)
        remote = self._remote.get(bare)
        if remote:
            found.extend(remote.values())
        return found

    def available(self, bare: JID) -> list[C2SSession]:
        found = self.local.available(bare)
        remote = self._remote.get(bare)
        if remote:
            found.extend(s for s in remote.values() if s.is_available)
        return found

    def is_online(self, bare: JID) -> bool:
        return self.local.is_online(bare) or bare in self._remote

    def pick_resource(self, bare: JID, requested: str | None) -> tuple[str, C2SSession | None]:
        """As ``SessionRegistry.pick_resource``, over the resources of every node: a session
        of the same full JID on another node is replaced too (RFC 6120 §7.7.2.2)."""
        taken = {s.jid.resource for s in self.resources(bare)}
        if requested is None:
            requested = secrets.token_hex(6)
            while requested in taken:
                requested = secrets.token_hex(6)
        existing = self.get(bare.with_resource(requested))
        if existing is None and len(taken) >= self.max_resources:
            raise StanzaError(StanzaErrorCondition.RESOURCE_CONSTRAINT, "too many resources")
        return requested, existing

    def add(self, session: C2SSession) -> None:
        self.local.add(session)
        session.observer = self._changed
        if self.transport is not None:
            self.transport.published(session)

    def remove(self, session: C2SSession) -> bool:
        if isinstance(session, RemoteSession):
            return self.remote_down(session.node, session.jid)
        if not self.local.remove(session):
            return False
        session.observer = None
        if self.transport is not None:
            self.transport.withdrawn(session)
        return True

    def all_sessions(self) -> list[C2SSession]:
        found = self.local.all_sessions()
        found.extend(s for r in self._remote.values() for s in r.values())
        return found

    def _changed(self, session: C2SSession) -> None:
        if self.transport is not None and not session.is_unbound:
            self.transport.published(session)

    # ------------------------------------------------------------------ the mirror
    def remote_get(self, full: JID) -> RemoteSession | None:
        remote = self._remote.get(full.bare)
        return remote.get(full.resource or "") if remote else None

    def remote_up(self, node: str, full: JID, record: dict[str, Any]) -> RemoteSession | None:
        """A session of ``node`` was bound or changed."""
        if node == self.node or full.resource is None or self.transport is None:
            return None
        resources = self._remote.setdefault(full.bare, {})
        session = resources.get(full.resource)
        if session is None or session.node != node:
            session = RemoteSession(full, node, RemoteLink(self.transport, node, full))
            resources[full.resource] = session
        session.update(record)
        return session

    def remote_down(self, node: str, full: JID) -> bool:
        """A session of ``node`` ended (one of another node by that JID stays)."""
        resources = self._remote.get(full.bare)
        if not resources:
            return False
        session = resources.get(full.resource or "")
        if session is None or session.node != node:
            return False
        del resources[full.resource or ""]
        session.is_closed = True
        if not resources:
            del self._remote[full.bare]
        return True

    def remote_node(self, node: str) -> list[RemoteSession]:
        return [s for r in self._remote.values() for s in r.values() if s.node == node]

    def remote_nodes(self) -> set[str]:
        return {s.node for r in self._remote.values() for s in r.values()}

    def drop_node(self, node: str) -> list[RemoteSession]:
        """Forget every session of ``node`` (it died, or is about to be reloaded)."""
        gone = self.remote_node(node)
        for session in gone:
            self.remote_down(node, session.jid)
        return gone
