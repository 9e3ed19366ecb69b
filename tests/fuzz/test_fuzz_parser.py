"""Fuzz the XML stream parser: only StreamError with an RFC 6120 condition ever leaves
``feed``, a failed parser stays failed, every element it yields serializes back to XML that
another parser reads, and memory stays bounded whatever the peer sends."""

from __future__ import annotations

import random
import tracemalloc
import xml.etree.ElementTree as ET

from hypothesis import given, note

from salon.errors import StreamError
from salon.xml.element import Element
from salon.xml.parser import StreamOpened, XmlStreamParser
from salon.xml.serializer import serialize
from tests.fuzz.oracle import FED, FUZZ, NS_STREAM, STREAM_CONDITIONS, input_seeds
from tests.fuzz.strategies import (
    C2S_HEADER,
    C2S_VALID,
    COMPONENT_VALID,
    S2S_VALID,
    SEEDS,
    build_stream,
)

MAX_STANZA = 65536


def _roundtrip(el: Element) -> None:
    """What the parser built is what the serializer can write and another parser read (inside
    a stream, where the ``stream:`` prefix is declared)."""
    ET.fromstring(b"<w xmlns:stream='%s'>%s</w>" % (NS_STREAM.encode(), serialize(el, "")))


@FUZZ
@given(SEEDS)
def test_parser_yields_events_or_an_rfc_stream_error(seed: int) -> None:
    for one in input_seeds(seed):
        note(f"input seed {one}")
        parser_input(random.Random(one))


def parser_input(rng: random.Random) -> None:
    FED["parser"] += 1
    chunks = build_stream(rng, C2S_VALID + S2S_VALID + COMPONENT_VALID, C2S_HEADER, [])
    parser = XmlStreamParser(max_stanza_bytes=MAX_STANZA, max_depth=32)
    for chunk in chunks:
        try:
            events = parser.feed(chunk)
        except StreamError as err:
            assert err.condition.value in STREAM_CONDITIONS
            # Not a bug swallowed and relabelled: the parser's own catch-all says that.
            assert err.condition.value != "internal-server-error", err.text
            try:
                parser.feed(b"<presence/>")
            except StreamError as again:
                assert again.condition is err.condition
            else:
                raise AssertionError("a failed parser accepted more input")
            return
        for event in events:
            if isinstance(event, Element):
                _roundtrip(event)
            else:
                assert isinstance(event, StreamOpened) or type(event).__name__ == "StreamClosed"


def _never_ending(unit: bytes, total: int) -> tuple[int, int]:
    """Feed a stanza that never ends, 4 KiB at a time; return (bytes fed when it was cut
    off, peak bytes allocated meanwhile)."""
    parser = XmlStreamParser(max_stanza_bytes=MAX_STANZA)
    parser.feed(C2S_HEADER)
    chunk = unit * (4096 // len(unit))
    fed = 0
    tracemalloc.start()
    try:
        parser.feed(b"<message><body>" if unit != b"a" else b"<message id='")
        while fed < total:
            parser.feed(chunk)
            fed += len(chunk)
    except StreamError as err:
        assert err.condition.value == "policy-violation"
        return fed, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    raise AssertionError(f"{total} bytes of one stanza were accepted")


def test_a_stanza_that_never_ends_is_cut_off_with_bounded_memory() -> None:
    for unit in (b"a", b"text ", b"&amp;", b"<x/>", b"<x>" * 3 + b"</x>" * 3):
        fed, peak = _never_ending(unit, 10 * 1024 * 1024)
        assert fed <= MAX_STANZA + 4096
        # Bounded by the stanza limit: a stanza of many empty elements costs the most (about
        # 50 bytes of tree per byte of input, Element objects); text costs about 2.
        assert peak < 64 * MAX_STANZA, (unit, peak)


def test_endless_made_up_names_do_not_grow_memory() -> None:
    """A peer inventing a new element and attribute name for every stanza: the name caches
    are bounded, so memory after 60,000 stanzas is what it was after 10,000."""
    parser = XmlStreamParser()
    parser.feed(C2S_HEADER)

    def batch(start: int) -> None:
        for i in range(start, start + 10_000):
            parser.feed(f"<n{i} xmlns='urn:x:{i}' a{i}='v'/>".encode())

    batch(0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for start in range(10_000, 60_000, 10_000):
            batch(start)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 2 * 1024 * 1024, grown
