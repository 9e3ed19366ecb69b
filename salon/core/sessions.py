"""Online resources per account: binding, conflicts, lookup by bare and full JID."""

from __future__ import annotations

import secrets
from typing import Protocol

from salon.core.session import C2SSession
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID


class SessionDirectory(Protocol):
    """Where the router and modules find online resources. ``SessionRegistry`` is the
    in-process one; a cluster puts a shared directory behind the same methods."""

    def get(self, full: JID) -> C2SSession | None: ...
    def resources(self, bare: JID) -> list[C2SSession]: ...
    def available(self, bare: JID) -> list[C2SSession]: ...
    def is_online(self, bare: JID) -> bool: ...
    def pick_resource(self, bare: JID, requested: str | None) -> tuple[str, C2SSession | None]: ...
    def add(self, session: C2SSession) -> None: ...
    def remove(self, session: C2SSession) -> bool: ...
    def all_sessions(self) -> list[C2SSession]: ...


class SessionRegistry:
    """Every bound session of the server, indexed by bare JID then resource."""

    def __init__(self, max_resources: int = 16) -> None:
        self.max_resources = max_resources
        self._by_bare: dict[JID, dict[str, C2SSession]] = {}

    def __len__(self) -> int:
        return sum(len(r) for r in self._by_bare.values())

    def get(self, full: JID) -> C2SSession | None:
        resources = self._by_bare.get(full.bare)
        if resources is None or full.resource is None:
            return None
        return resources.get(full.resource)

    def resources(self, bare: JID) -> list[C2SSession]:
        resources = self._by_bare.get(bare)
        return list(resources.values()) if resources else []

    def available(self, bare: JID) -> list[C2SSession]:
        """Sessions of ``bare`` that have sent available presence."""
        resources = self._by_bare.get(bare)
        if not resources:
            return []
        return [s for s in resources.values() if s.is_available]

    def is_online(self, bare: JID) -> bool:
        return bare in self._by_bare

    def pick_resource(self, bare: JID, requested: str | None) -> tuple[str, C2SSession | None]:
        """The resource to bind and the session it replaces (RFC 6120 §7.7.2.2: the new
        session wins; the old one is closed with <conflict/>)."""
        resources = self._by_bare.get(bare, {})
        if requested is None:
            requested = secrets.token_hex(6)
            while requested in resources:
                requested = secrets.token_hex(6)
        existing = resources.get(requested)
        if existing is None and len(resources) >= self.max_resources:
            raise StanzaError(StanzaErrorCondition.RESOURCE_CONSTRAINT, "too many resources")
        return requested, existing

    def add(self, session: C2SSession) -> None:
        assert session.jid.resource is not None
        self._by_bare.setdefault(session.jid.bare, {})[session.jid.resource] = session

    def remove(self, session: C2SSession) -> bool:
        """Forget ``session``; False when it was not (or no longer) registered."""
        bare = session.jid.bare
        resources = self._by_bare.get(bare)
        if not resources or resources.get(session.jid.resource or "") is not session:
            return False
        del resources[session.jid.resource or ""]
        if not resources:
            del self._by_bare[bare]
        return True

    def all_sessions(self) -> list[C2SSession]:
        return [s for r in self._by_bare.values() for s in r.values()]


def delivery_targets(sessions: list[C2SSession], stype: str) -> list[C2SSession]:
    """The resources a message to a bare JID goes to (RFC 6121 §8.5.2.1)."""
    eligible = [s for s in sessions if s.is_available and s.priority >= 0]
    if not eligible or stype == "headline":
        return eligible
    top = max(s.priority for s in eligible)
    return [s for s in eligible if s.priority == top]
