"""IQ requests to the server and to accounts: dispatch by (type, namespace, element, target).

RFC 6120 §8.2.3: every get/set is answered; an unhandled one gets service-unavailable
(§8.4); result and error are never answered.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Flag, auto

from salon.core.session import C2SSession
from salon.jid import JID
from salon.xml.element import Element
from salon.xml.stanza import iq_result


class Target(Flag):
    """Whom an IQ is addressed to, seen from the server."""

    HOST = auto()  # the server's domain
    SELF = auto()  # the sender's own bare JID (or no 'to')
    BARE = auto()  # another local account's bare JID
    ACCOUNT = SELF | BARE
    ANY = HOST | SELF | BARE


@dataclass(slots=True)
class IqRequest:
    stanza: Element
    origin: C2SSession | None
    sender: JID
    to: JID
    target: Target

    @property
    def payload(self) -> Element:
        child = self.stanza.first_child
        assert child is not None
        return child

    @property
    def type(self) -> str:
        return self.stanza.get("type") or ""

    def result(self, payload: Element | None = None) -> Element:
        return iq_result(self.stanza, payload)


IqHandler = Callable[[IqRequest], "Element | Awaitable[Element | None] | None"]


@dataclass(slots=True)
class _IqRoute:
    handler: IqHandler
    targets: Target
    owner: str
    is_async: bool


class IqHandlers:
    """The IQ handler table of one host."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str, str], list[_IqRoute]] = {}

    def add(
        self,
        iq_type: str,
        ns: str,
        tag: str,
        handler: IqHandler,
        targets: Target,
        owner: str,
    ) -> Callable[[], None]:
        route = _IqRoute(handler, targets, owner, inspect.iscoroutinefunction(handler))
        self._routes.setdefault((iq_type, ns, tag), []).append(route)

        def remove() -> None:
            routes = self._routes.get((iq_type, ns, tag), [])
            if route in routes:
                routes.remove(route)

        return remove

    def find(self, iq_type: str, ns: str, tag: str, target: Target) -> _IqRoute | None:
        for route in self._routes.get((iq_type, ns, tag), ()):
            if route.targets & target:
                return route
        return None


class PendingIqs:
    """IQs the server sent (e.g. pings to clients) waiting for their result or error."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[asyncio.Future[Element], str | None]] = {}
        self._ids = itertools.count(1)
        # In a cluster: this node's name goes into every id, and an answer that reaches
        # another node is handed back here by ``forward(node, answer)``.
        self.node: str | None = None
        self.forward: Callable[[str, Element], None] | None = None

    def new_id(self) -> str:
        """A fresh id; the random part keeps other entities from answering in our peer's
        place (e.g. keeping a dead session alive by answering its pings)."""
        if self.node is not None:
            return f"salon~{self.node}~{next(self._ids)}-{secrets.token_urlsafe(6)}"
        return f"salon-{next(self._ids)}-{secrets.token_urlsafe(6)}"

    def answer(self, stanza: Element) -> None:
        """A result or error for the server: resolve it here, or, in a cluster, send it to
        the node whose id it carries."""
        if self.resolve(stanza) or self.forward is None:
            return
        parts = (stanza.get("id") or "").split("~")
        if len(parts) == 3 and parts[0] == "salon" and parts[1] != self.node:
            self.forward(parts[1], stanza)

    def expect(self, iq_id: str, peer: str | None = None) -> asyncio.Future[Element]:
        """A future for the answer to ``iq_id``; when ``peer`` is given, only an answer
        from that address counts."""
        future: asyncio.Future[Element] = asyncio.get_running_loop().create_future()
        self._pending[iq_id] = (future, peer)
        future.add_done_callback(lambda _f: self._pending.pop(iq_id, None))
        return future

    def resolve(self, stanza: Element) -> bool:
        entry = self._pending.get(stanza.get("id") or "")
        if entry is None:
            return False
        future, peer = entry
        if future.done() or (peer is not None and stanza.get("from") != peer):
            return False
        future.set_result(stanza)
        return True
