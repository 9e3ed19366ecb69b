"""The server side of a SOCKS5 handshake (RFC 1928) as XEP-0065 uses it, sans-IO.

Feed bytes in; get back bytes to send and, once the client has asked to CONNECT, the
destination it named. XEP-0065 §6.3.2 narrows SOCKS5 down to: no authentication (method
0x00), the CONNECT command, and a domain-name address (type 0x03) that is the hex SHA-1 of
SID + requester JID + target JID, with port 0. Anything else is answered with the SOCKS5
reply code RFC 1928 §6 names for it and the handshake fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

VERSION = 5
METHOD_NO_AUTH = 0x00
METHOD_UNACCEPTABLE = 0xFF
CMD_CONNECT = 0x01
ATYP_DOMAIN = 0x03
MAX_HANDSHAKE = 2 + 255 + 4 + 1 + 255 + 2  # the largest greeting plus the largest request


class Reply(IntEnum):
    """RFC 1928 §6 reply codes."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    CONNECTION_REFUSED = 0x05
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class Socks5Error(Exception):
    """The handshake failed; ``reply`` holds the bytes to send before closing (maybe none)."""

    def __init__(self, reason: str, reply: bytes = b"") -> None:
        super().__init__(reason)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """The client asked to CONNECT to ``address`` (a domain name) and ``port``."""

    address: str
    port: int


def reply(code: Reply, address: str = "", port: int = 0) -> bytes:
    """A reply to a CONNECT request, echoing the address as a domain name (XEP-0065)."""
    raw = address.encode("ascii")
    return bytes((VERSION, code, 0, ATYP_DOMAIN, len(raw))) + raw + port.to_bytes(2, "big")


class Socks5Handshake:
    """Greeting → method selection → CONNECT request. ``feed`` returns the bytes to send and
    the request once complete; it raises :class:`Socks5Error` on a protocol violation."""

    __slots__ = ("_buffer", "_greeted", "request")

    def __init__(self) -> None:
        self._buffer = b""
        self._greeted = False
        self.request: ConnectRequest | None = None

    def feed(self, data: bytes) -> tuple[bytes, ConnectRequest | None]:
        if self.request is not None:
            raise Socks5Error("data after the CONNECT request, before the stream is ready")
        self._buffer += data
        if len(self._buffer) > MAX_HANDSHAKE:
            raise Socks5Error("handshake too long")
        out = b""
        if not self._greeted:
            selected = self._greeting()
            if selected is None:
                return b"", None
            out += selected
        request = self._request()
        return out, request

    def _greeting(self) -> bytes | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        if buf[0] != VERSION:
            raise Socks5Error(f"SOCKS version {buf[0]} is not 5")
        count = buf[1]
        if len(buf) < 2 + count:
            return None
        methods = buf[2 : 2 + count]
        self._buffer = buf[2 + count :]
        if METHOD_NO_AUTH not in methods:
            raise Socks5Error(
                "the client offers no method without authentication",
                bytes((VERSION, METHOD_UNACCEPTABLE)),
            )
        self._greeted = True
        return bytes((VERSION, METHOD_NO_AUTH))

    def _request(self) -> ConnectRequest | None:
        buf = self._buffer
        if len(buf) < 5:
            return None
        if buf[0] != VERSION:
            raise Socks5Error(f"SOCKS version {buf[0]} is not 5")
        if buf[1] != CMD_CONNECT:
            raise Socks5Error("only CONNECT is supported", reply(Reply.COMMAND_NOT_SUPPORTED))
        if buf[3] != ATYP_DOMAIN:
            raise Socks5Error(
                "the address must be a domain name", reply(Reply.ADDRESS_TYPE_NOT_SUPPORTED)
            )
        length = buf[4]
        end = 5 + length + 2
        if len(buf) < end:
            return None
        if len(buf) > end:
            raise Socks5Error("data after the CONNECT request, before the stream is ready")
        try:
            address = buf[5 : 5 + length].decode("ascii")
        except UnicodeDecodeError:
            raise Socks5Error(
                "the address is not ASCII", reply(Reply.ADDRESS_TYPE_NOT_SUPPORTED)
            ) from None
        port = int.from_bytes(buf[5 + length : end], "big")
        self._buffer = b""
        self.request = ConnectRequest(address, port)
        return self.request
