"""Who wants notifications of which PEP nodes (XEP-0163 §4.3): "+notify" features of the
resources' entity capabilities (XEP-0115), kept per account for the resources whose
presence it receives. Pure bookkeeping; the caps lookup itself is done by the PEP module."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from salon.jid import JID
from salon.namespaces import NS_CAPS
from salon.xml.element import Element

NOTIFY_SUFFIX = "+notify"


@dataclass(frozen=True, slots=True)
class CapsRef:
    """A presence's <c/>: ``node#ver`` names the features, ``hash`` says how to check."""

    node: str
    ver: str
    hash: str


def caps_of(presence: Element) -> CapsRef | None:
    c = presence.find("c", NS_CAPS)
    if c is None:
        return None
    node, ver, hash_name = c.get("node"), c.get("ver"), c.get("hash")
    if not node or not ver or not hash_name:
        return None  # legacy caps (no hash) carry no usable ver
    return CapsRef(node, ver, hash_name)


def notify_nodes(features: frozenset[str]) -> frozenset[str]:
    """The nodes a feature list asks notifications for ("urn:x+notify" -> "urn:x")."""
    return frozenset(f.removesuffix(NOTIFY_SUFFIX) for f in features if f.endswith(NOTIFY_SUFFIX))


class CapsCache:
    """Verified feature sets by (hash, ver), least recently used out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._known: OrderedDict[tuple[str, str], frozenset[str]] = OrderedDict()

    def get(self, caps: CapsRef) -> frozenset[str] | None:
        key = (caps.hash, caps.ver)
        found = self._known.get(key)
        if found is not None:
            self._known.move_to_end(key)
        return found

    def put(self, caps: CapsRef, features: frozenset[str]) -> None:
        self._known[(caps.hash, caps.ver)] = features
        self._known.move_to_end((caps.hash, caps.ver))
        while len(self._known) > self.size:
            self._known.popitem(last=False)


class Interests:
    """Per account: each resource that sent it presence, and the nodes that resource
    wants notifications of. At most ``per_account`` resources per account."""

    def __init__(self, per_account: int) -> None:
        self.per_account = per_account
        self._by_owner: dict[JID, dict[JID, frozenset[str]]] = {}

    def set(self, owner: JID, resource: JID, nodes: frozenset[str]) -> frozenset[str]:
        """Record ``resource``'s interest; returns the nodes it did not want before."""
        known = self._by_owner.setdefault(owner, {})
        before = known.get(resource)
        if before is None and len(known) >= self.per_account:
            return frozenset()
        known[resource] = nodes
        return nodes - (before or frozenset())

    def remove(self, owner: JID, resource: JID) -> None:
        known = self._by_owner.get(owner)
        if known is not None:
            known.pop(resource, None)
            if not known:
                del self._by_owner[owner]

    def forget_owner(self, owner: JID) -> None:
        self._by_owner.pop(owner, None)

    def has(self, owner: JID, resource: JID) -> bool:
        return resource in self._by_owner.get(owner, {})

    def interested(self, owner: JID, node: str) -> list[JID]:
        return [r for r, nodes in self._by_owner.get(owner, {}).items() if node in nodes]
