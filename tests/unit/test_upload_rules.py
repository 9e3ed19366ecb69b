"""XEP-0363's pure rules: file names, content types, the slot HMAC, Range, disposition."""

from __future__ import annotations

import pytest

from salon.modules.upload.rules import (
    ByteRange,
    RangeNotSatisfiable,
    check_filename,
    content_disposition,
    mac_matches,
    normalise_content_type,
    parse_range,
    slot_mac,
)


@pytest.mark.parametrize("name", ["a.txt", "été 2024.jpg", "x" * 255, "..a", "a..b"])
def test_good_filenames(name: str) -> None:
    assert check_filename(name) is None


@pytest.mark.parametrize(
    "name", ["", " ", ".", "..", "a/b", "..\\x", "a\x00b", "a\nb", "é" * 128, "a\u202eb"]
)
def test_bad_filenames(name: str) -> None:
    assert check_filename(name) is not None


def test_content_types() -> None:
    assert normalise_content_type(None) == "application/octet-stream"
    assert normalise_content_type("Image/PNG") == "image/png"
    assert normalise_content_type("text/plain; charset=utf-8") == "text/plain; charset=utf-8"
    for bad in ("image", "a/b/c", "text/plain\r\nX-Evil: 1", "<x>/y"):
        assert normalise_content_type(bad) is None


def test_mac_binds_every_slot_parameter() -> None:
    secret = b"k" * 32
    base = ("slot123456789012345", "a.txt", 10, "text/plain", 1000)
    mac = slot_mac(secret, *base)
    assert mac_matches(mac, slot_mac(secret, *base))
    for i, other in enumerate(("slotXXXXXXXXXXXXXXX", "b.txt", 11, "text/html", 1001)):
        changed = list(base)
        changed[i] = other
        assert not mac_matches(mac, slot_mac(secret, *changed))  # type: ignore[arg-type]
    assert not mac_matches(mac, slot_mac(b"j" * 32, *base))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=5-", ByteRange(5, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-1000", ByteRange(0, 99)),
        ("bytes=90-1000", ByteRange(90, 99)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("items=0-1", None),
        ("bytes=9-5", None),
        ("bytes=abc", None),
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=150-200", "bytes=-0"])
def test_unsatisfiable_range(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_disposition() -> None:
    assert content_disposition("a b.png", "image/png").startswith('inline; filename="a b.png"')
    assert content_disposition("x.svg", "image/svg+xml").startswith("attachment;")
    assert content_disposition("x.html", "text/html").startswith("attachment;")
    header = content_disposition('é"x.txt', "text/plain")
    assert 'filename="__x.txt"' in header and "filename*=UTF-8''%C3%A9%22x.txt" in header
