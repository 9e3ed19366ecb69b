"""Typed services over an account's personal data, for modules that keep several stores in
step (XEP-0402 bookmarks compatibility, XEP-0398 vCard/avatar conversion) without reaching
into the modules that own them.

Each class is the lookup key and the interface; the owning module provides a subclass
(``self.provide(PersonalEventing, impl)``) and the others ``require`` it. Every write names
its ``source`` (the writing module's name), carried on the change event it causes
(:class:`~salon.core.events.PepItemPublished`, :class:`~salon.core.events.PrivateXmlStored`,
:class:`~salon.core.events.VCardStored`) so that a module can tell its own writes from the
user's and never echo them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from salon.jid import JID
from salon.xml.element import Element


@dataclass(frozen=True, slots=True)
class PepItem:
    id: str
    payload: Element | None


class PersonalEventing:
    """An account's PEP service (XEP-0163), acting as the account itself. Provided by the
    ``pep`` module."""

    async def publish(
        self,
        owner: JID,
        node: str,
        item_id: str,
        payload: Element,
        options: Mapping[str, list[str]] | None = None,
        *,
        source: str,
    ) -> None:
        """Publish as ``owner`` (creating the node with ``options`` as its configuration);
        the owner's interested resources are notified as for any publish. Raises the
        StanzaError a client would get (e.g. conflict/precondition-not-met)."""
        raise NotImplementedError

    async def retract(self, owner: JID, node: str, item_id: str, *, source: str) -> bool:
        """Retract with notification; False when there was no such item or node."""
        raise NotImplementedError

    async def items(self, owner: JID, node: str) -> list[PepItem] | None:
        """Every stored item, oldest first; None when the node does not exist."""
        raise NotImplementedError


class PrivateXml:
    """An account's XEP-0049 private XML storage. Provided by the ``private`` module."""

    async def get(self, user: JID, namespace: str) -> Element | None:
        """The fragment stored in ``namespace``, if any."""
        raise NotImplementedError

    async def put(self, user: JID, fragment: Element, *, source: str) -> None:
        """Replace what is stored in the fragment's namespace."""
        raise NotImplementedError


class VCards:
    """An account's XEP-0054 vCard. Provided by the ``vcard`` module."""

    async def get(self, user: JID) -> Element | None:
        raise NotImplementedError

    async def put(self, user: JID, vcard: Element, *, source: str) -> None:
        raise NotImplementedError
