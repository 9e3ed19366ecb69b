"""What a SOCKS5 bytestream proxy module (XEP-0065) needs from the network side.

The relay listens for SOCKS5 connections and pairs the two whose destination address is the
same SHA-1 hash; it starts relaying only when the module, having checked the requester's
``<activate/>``, asks it to. ``salon.app`` adds the relay to every host as the
``BYTESTREAM_RELAY`` item once it listens; the module never imports ``salon.net``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from salon.core.registry import ItemKind


class Activation(Enum):
    """What became of an activation request (XEP-0065 §6.3.5)."""

    ACTIVATED = "activated"
    UNKNOWN = "unknown"  # no connection has this hash: item-not-found
    ONE_SIDE = "one-side"  # only one party is connected: not-allowed
    ALREADY_ACTIVE = "already-active"  # not-allowed


@dataclass(frozen=True, slots=True)
class StreamHost:
    """Where clients reach the relay: ``<streamhost host=... port=.../>``."""

    host: str
    port: int


class BytestreamRelay(Protocol):
    def streamhosts(self) -> list[StreamHost]:
        """The addresses to announce, first the preferred one."""
        ...

    def activate(self, dst_addr: str) -> Activation:
        """Start relaying between the two connections that asked for ``dst_addr``."""
        ...


BYTESTREAM_RELAY = ItemKind[BytestreamRelay]("bytestream_relay")


def dst_addr(sid: str, requester: str, target: str) -> str:
    """XEP-0065 §5.3.2: DST.ADDR = hex SHA-1 of SID + requester full JID + target full JID."""
    return hashlib.sha1(f"{sid}{requester}{target}".encode()).hexdigest()
