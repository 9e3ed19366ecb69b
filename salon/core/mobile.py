"""Typed services over a session's mobile state, for modules that act on it (XEP-0357 push)
without reaching into the modules that keep it. Each class is the lookup key and the
interface; the owning module provides a subclass, and the others look it up with
``Module.optional``: a host may run without either module."""

from __future__ import annotations

from salon.core.session import C2SSession, Connection
from salon.xml.element import Element


class ClientStates:
    """XEP-0352 client state indication. Provided by the ``csi`` module."""

    def is_inactive(self, session: C2SSession) -> bool:
        """Whether the client said it is in the background."""
        raise NotImplementedError


class Hibernation:
    """XEP-0198 stream management. Provided by the ``smacks`` module."""

    def unacknowledged(self, session: C2SSession, connection: Connection) -> list[Element] | None:
        """What ``session`` was sent and did not acknowledge, when the session may be
        resumed and ``connection`` is the one it had; None otherwise."""
        raise NotImplementedError
