"""The sans-IO SOCKS5 server handshake (RFC 1928 as XEP-0065 uses it)."""

from __future__ import annotations

import pytest

from salon.stream.socks5 import ConnectRequest, Reply, Socks5Error, Socks5Handshake, reply

ADDRESS = "a" * 40
REQUEST = bytes((5, 1, 0, 3, 40)) + ADDRESS.encode() + b"\x00\x00"


@pytest.mark.parametrize("split", [1, 2, 3, 7, 50])
def test_handshake_in_any_chunks(split: int) -> None:
    data = b"\x05\x02\x02\x00" + REQUEST
    hs = Socks5Handshake()
    out = b""
    request = None
    for i in range(0, len(data), split):
        sent, got = hs.feed(data[i : i + split])
        out += sent
        request = request or got
    assert out == b"\x05\x00"
    assert request == ConnectRequest(ADDRESS, 0)


def test_reply_echoes_the_address() -> None:
    assert reply(Reply.SUCCEEDED, "ab") == b"\x05\x00\x00\x03\x02ab\x00\x00"


@pytest.mark.parametrize(
    ("data", "answer"),
    [
        (b"\x04\x01\x00", b""),  # SOCKS4
        (b"\x05\x01\x02", b"\x05\xff"),  # only username/password offered
        (b"\x05\x01\x00" + b"\x05\x02\x00\x03\x01a\x00\x00", reply(Reply.COMMAND_NOT_SUPPORTED)),
        (
            b"\x05\x01\x00" + b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00",
            reply(Reply.ADDRESS_TYPE_NOT_SUPPORTED),
        ),
        (b"\x05\x01\x00" + REQUEST + b"early", b""),  # data before activation
    ],
)
def test_bad_handshakes_fail_with_the_named_reply(data: bytes, answer: bytes) -> None:
    with pytest.raises(Socks5Error) as err:
        Socks5Handshake().feed(data)
    assert err.value.reply == answer


def test_an_endless_greeting_is_bounded() -> None:
    hs = Socks5Handshake()
    hs.feed(b"\x05\x01\x00")
    with pytest.raises(Socks5Error):
        hs.feed(b"\x05\x01\x00\x03\xff" + b"x" * 1000)
