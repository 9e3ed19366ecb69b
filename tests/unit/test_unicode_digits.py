"""Numbers in hostile input are ASCII digits only. ``str.isdigit()`` is also true for "²"
(then ``int()`` raises ValueError, an exception the callers did not expect) and for "٣"
(which ``int()`` reads as 3). The BOSH fuzz found the first case in ``rid``; these are the
same check elsewhere."""

from __future__ import annotations

import pytest

from salon.modules.upload.rules import parse_range
from salon.namespaces import NS_RSM
from salon.xml.element import Element
from salon.xml.rsm import RsmError, parse_rsm

DIGITS = ["\u00b2", "\u0663", "\uff11", "1\u00b2"]


@pytest.mark.parametrize("text", DIGITS)
def test_rsm_max_and_index_are_ascii_numbers(text: str) -> None:
    for child in ("max", "index"):
        request = Element("set", NS_RSM)
        request.add(child, NS_RSM, text=text)
        with pytest.raises(RsmError):
            parse_rsm(request)


@pytest.mark.parametrize("text", DIGITS)
def test_http_range_with_non_ascii_digits_is_ignored(text: str) -> None:
    # RFC 9110 §14.2: a Range header that does not parse is ignored (the whole file is sent).
    assert parse_range(f"bytes={text}-", 100) is None
    assert parse_range(f"bytes=0-{text}", 100) is None
    assert parse_range(f"bytes=-{text}", 100) is None
