"""Tests for salon.xml.parser: the incremental, hardened XMPP stream parser."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salon.errors import StreamError, StreamErrorCondition
from salon.namespaces import NS_CLIENT, NS_STREAM, NS_TLS, NS_XML
from salon.xml.element import Element
from salon.xml.parser import ParserEvent, StreamClosed, StreamOpened, XmlStreamParser
from salon.xml.serializer import STREAM_CLOSE, serialize, stream_header

C = StreamErrorCondition
XML_LANG = f"{{{NS_XML}}}lang"

HEADER = (
    b"<?xml version='1.0'?>"
    b"<stream:stream from='juliet@im.example.com' to='im.example.com' version='1.0'"
    b" xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)
BARE_HEADER = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"

MESSAGE = (
    b"<message to='romeo@example.net' type='chat' xml:lang='fr' id='m1'>"
    b"<body>Bonjour &amp; &lt;salut&gt; &#65;&#x263A; caf\xc3\xa9</body>"
    b"<thread>t-1</thread>"
    b"</message>"
)
FEATURES = (
    b"<stream:features>"
    b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    b"<mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>"
    b"</mechanisms>"
    b"</stream:features>"
)
STREAM = HEADER + FEATURES + b"\n  " + MESSAGE + b" " + b"<presence/>" + b"</stream:stream>"


# helpers ----------------------------------------------------------------------
def parse_all(*chunks: bytes, parser: XmlStreamParser | None = None) -> list[ParserEvent]:
    parser = parser or XmlStreamParser()
    events: list[ParserEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def parse_chunked(
    data: bytes, cuts: list[int], parser: XmlStreamParser | None = None
) -> list[ParserEvent]:
    """Feed ``data`` cut at the offsets in ``cuts``."""
    bounds = [0, *sorted(set(cuts)), len(data)]
    return parse_all(*(data[a:b] for a, b in itertools.pairwise(bounds)), parser=parser)


def stanzas(events: list[ParserEvent]) -> list[Element]:
    return [e for e in events if isinstance(e, Element)]


def only_stanza(data: bytes, header: bytes = HEADER) -> Element:
    (stanza,) = stanzas(parse_all(header + data))
    return stanza


def expect_error(condition: StreamErrorCondition, *chunks: bytes, **kwargs: int) -> StreamError:
    parser = XmlStreamParser(**kwargs)
    with pytest.raises(StreamError) as info:
        for chunk in chunks:
            parser.feed(chunk)
    assert info.value.condition is condition, info.value
    return info.value


# stream header ----------------------------------------------------------------
def test_stream_header_event() -> None:
    assert XmlStreamParser().feed(HEADER) == [
        StreamOpened(
            tag="stream",
            ns=NS_STREAM,
            attrs={
                "from": "juliet@im.example.com",
                "to": "im.example.com",
                "version": "1.0",
                XML_LANG: "en",
            },
            default_ns=NS_CLIENT,
        )
    ]


def test_header_without_declaration_or_default_namespace() -> None:
    assert XmlStreamParser().feed(BARE_HEADER) == [StreamOpened("stream", NS_STREAM, {}, "")]


def test_header_with_utf8_encoding_declaration() -> None:
    for decl in (
        b"<?xml version='1.0' encoding='UTF-8'?>",
        b'<?xml version="1.0" encoding="utf-8"?>',
    ):
        (event,) = XmlStreamParser().feed(decl + BARE_HEADER)
        assert isinstance(event, StreamOpened)


def test_serializer_stream_header_round_trips() -> None:
    header = stream_header(NS_CLIENT, from_="example.com", stream_id="abc", extra_ns={"db": "x:db"})
    assert XmlStreamParser().feed(header) == [
        StreamOpened(
            "stream",
            NS_STREAM,
            {"from": "example.com", "id": "abc", "version": "1.0", XML_LANG: "en"},
            NS_CLIENT,
        )
    ]


def test_header_split_at_every_byte() -> None:
    whole = XmlStreamParser().feed(HEADER)
    for cut in range(len(HEADER)):
        assert parse_chunked(HEADER, [cut]) == whole


# stanzas ------------------------------------------------------------------------
def test_message_stanza_tree() -> None:
    message = only_stanza(MESSAGE)
    assert message == Element(
        "message",
        NS_CLIENT,
        {"to": "romeo@example.net", "type": "chat", XML_LANG: "fr", "id": "m1"},
        [
            Element("body", NS_CLIENT, {}, ["Bonjour & <salut> A\u263a caf\u00e9"]),
            Element("thread", NS_CLIENT, {}, ["t-1"]),
        ],
    )


def test_whole_stream_events() -> None:
    events = parse_all(STREAM)
    assert isinstance(events[0], StreamOpened)
    assert [(e.tag, e.ns) for e in stanzas(events)] == [
        ("features", NS_STREAM),
        ("message", NS_CLIENT),
        ("presence", NS_CLIENT),
    ]
    assert events[-1] == StreamClosed()
    assert len(events) == 5


def test_every_byte_boundary_gives_identical_events() -> None:
    whole = parse_all(STREAM)
    for cut in range(len(STREAM) + 1):
        assert parse_chunked(STREAM, [cut]) == whole, cut


def test_byte_at_a_time() -> None:
    whole = parse_all(STREAM)
    assert parse_all(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == whole


def test_stanza_is_returned_as_soon_as_its_end_tag_is_complete() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER)
    assert parser.feed(MESSAGE[:-1]) == []
    assert parser.feed(MESSAGE[-1:]) == [only_stanza(MESSAGE)]


def test_multiple_stanzas_in_one_chunk() -> None:
    events = parse_all(HEADER + b"<presence/>" * 3 + b"<iq type='get' id='1'/>")
    assert [e.tag for e in stanzas(events)] == ["presence"] * 3 + ["iq"]


def test_mixed_content_is_kept_in_order() -> None:
    body = only_stanza(b"<body>one <b>two</b> three<br/>four</body>")
    assert body.children == [
        "one ",
        Element("b", NS_CLIENT, {}, ["two"]),
        " three",
        Element("br", NS_CLIENT),
        "four",
    ]


def test_text_split_across_feeds_is_one_text_node() -> None:
    events = parse_all(HEADER, b"<body>hel", b"lo ", b"wor", b"ld</body>")
    assert stanzas(events)[0].children == ["hello world"]


def test_long_text_is_one_text_node() -> None:
    text = "x" * 100_000
    assert only_stanza(f"<body>{text}</body>".encode()).children == [text]


def test_cdata_and_whitespace_text() -> None:
    body = only_stanza(b"<body> <![CDATA[<a> & b]]> \n</body>")
    assert body.children == [" <a> & b \n"]


def test_multibyte_character_split_between_feeds() -> None:
    events = parse_all(HEADER, b"<body>\xe2\x98", b"\xba</body>")
    assert stanzas(events)[0].text == "\u263a"


def test_carriage_returns_are_normalised() -> None:
    assert only_stanza(b"<body>a\r\nb\rc</body>").text == "a\nb\nc"


# namespaces ---------------------------------------------------------------------
def test_stream_features_children_have_their_own_namespaces() -> None:
    features = only_stanza(FEATURES)
    assert (features.tag, features.ns) == ("features", NS_STREAM)
    starttls = features.find("starttls", NS_TLS)
    assert starttls is not None
    assert starttls.find("required") == Element("required", NS_TLS)
    mechanisms = features.find("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
    assert mechanisms is not None
    assert [m.text for m in mechanisms.elements()] == ["SCRAM-SHA-1", "PLAIN"]


def test_prefixed_children_and_attributes() -> None:
    iq = only_stanza(
        b"<iq type='get' xmlns:foo='urn:foo'>"
        b"<foo:query foo:attr='1' plain='2'><foo:item/><item/></foo:query>"
        b"</iq>"
    )
    query = iq.first_child
    assert query == Element(
        "query",
        "urn:foo",
        {"{urn:foo}attr": "1", "plain": "2"},
        [Element("item", "urn:foo"), Element("item", NS_CLIENT)],
    )


def test_default_namespace_redeclared_and_undeclared() -> None:
    iq = only_stanza(b"<iq><query xmlns='jabber:iq:roster'><x xmlns=''/></query></iq>")
    query = iq.first_child
    assert query is not None
    assert query.ns == "jabber:iq:roster"
    assert query.first_child == Element("x", "")


def test_element_without_any_namespace() -> None:
    assert only_stanza(b"<message/>", header=BARE_HEADER) == Element("message", "")


def test_stream_prefix_inside_stanzas() -> None:
    error = only_stanza(
        b"<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"</stream:error>"
    )
    assert (error.tag, error.ns) == ("error", NS_STREAM)
    assert error.first_child == Element("not-well-formed", "urn:ietf:params:xml:ns:xmpp-streams")


def test_xml_lang_is_a_clark_key() -> None:
    message = only_stanza(b"<message xml:lang='de'><body xml:lang='en'>hi</body></message>")
    assert message.get(XML_LANG) == "de"
    body = message.first_child
    assert body is not None
    assert body.attrs == {XML_LANG: "en"}


# whitespace, closing, reset -------------------------------------------------------
def test_whitespace_keepalives_are_ignored() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER)
    for _ in range(3):
        assert parser.feed(b" ") == []
        assert parser.feed(b"\n\t\r\n") == []
    assert [e.tag for e in stanzas(parser.feed(b"<presence/>  "))] == ["presence"]


def test_stream_closed() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER)
    assert parser.feed(b"<presence/></stream:stream>") == [
        Element("presence", NS_CLIENT),
        StreamClosed(),
    ]


def test_anything_after_close_is_ignored() -> None:
    parser = XmlStreamParser()
    assert parser.feed(HEADER + STREAM_CLOSE + b"<junk> &bogus; <!-- x -->")[-1] == StreamClosed()
    assert parser.feed(b"\xff\xfe not xml at all") == []
    assert parser.feed(b"<message/>") == []


def test_reset_then_new_header() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER + b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    parser.reset()
    events = parser.feed(HEADER + b"<presence/>")
    assert isinstance(events[0], StreamOpened)
    assert events[1] == Element("presence", NS_CLIENT)


def test_reset_discards_a_partial_stanza_and_the_closed_state() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER + b"<message><body>half")
    parser.reset()
    assert parser.feed(BARE_HEADER + b"<a/>")[1] == Element("a", "")
    parser.feed(STREAM_CLOSE)
    parser.reset()
    assert len(parser.feed(HEADER)) == 1


def test_reset_revives_a_dead_parser() -> None:
    parser = XmlStreamParser()
    with pytest.raises(StreamError):
        parser.feed(b"<<<")
    parser.reset()
    assert len(parser.feed(HEADER)) == 1


# errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        pytest.param(b"<message><body></message>", C.NOT_WELL_FORMED, id="tag-mismatch"),
        pytest.param(b"<message to='a' to='b'/>", C.NOT_WELL_FORMED, id="duplicate-attr"),
        pytest.param(b"<message to=a/>", C.NOT_WELL_FORMED, id="unquoted-attr"),
        pytest.param(b"<body>\xff</body>", C.NOT_WELL_FORMED, id="invalid-utf8"),
        pytest.param(b"<body>\xc3</body>", C.NOT_WELL_FORMED, id="truncated-utf8"),
        pytest.param(b"<body>\xed\xa0\x80</body>", C.NOT_WELL_FORMED, id="utf8-surrogate"),
        pytest.param(b"<body>\x01</body>", C.NOT_WELL_FORMED, id="control-char"),
        pytest.param(b"<body>&#0;</body>", C.NOT_WELL_FORMED, id="bad-char-ref"),
        pytest.param(b"<x xmlns:a='urn:}'/>", C.NOT_WELL_FORMED, id="separator-in-uri"),
        pytest.param(b"<?xml version='1.0'?>", C.NOT_WELL_FORMED, id="late-xml-decl"),
        pytest.param(b"<!-- hi -->", C.RESTRICTED_XML, id="comment-top-level"),
        pytest.param(b"<message><!-- hi --></message>", C.RESTRICTED_XML, id="comment-stanza"),
        pytest.param(b"<?foo bar?>", C.RESTRICTED_XML, id="processing-instruction"),
        pytest.param(b"<body>&nbsp;</body>", C.RESTRICTED_XML, id="undefined-entity"),
        pytest.param(b"<message to='&x;'/>", C.RESTRICTED_XML, id="undefined-entity-attr"),
        pytest.param(b"<foo:bar/>", C.BAD_NAMESPACE_PREFIX, id="unbound-element-prefix"),
        pytest.param(b"<message foo:to='x'/>", C.BAD_NAMESPACE_PREFIX, id="unbound-attr-prefix"),
        pytest.param(b"<message xmlns:foo=''/>", C.BAD_NAMESPACE_PREFIX, id="undeclare-prefix"),
        pytest.param(b"<m xmlns:xml='urn:x'/>", C.BAD_NAMESPACE_PREFIX, id="rebind-xml"),
        pytest.param(b"hello", C.BAD_FORMAT, id="text-in-root"),
        pytest.param(b"<presence/> x <presence/>", C.BAD_FORMAT, id="text-between"),
        pytest.param(b"&#65;", C.BAD_FORMAT, id="char-ref-in-root"),
    ],
)
def test_error_inside_stream(payload: bytes, condition: StreamErrorCondition) -> None:
    expect_error(condition, HEADER + payload)
    expect_error(condition, HEADER, payload)


@pytest.mark.parametrize(
    ("stream", "condition"),
    [
        pytest.param(b"<<stream/>", C.NOT_WELL_FORMED, id="garbage"),
        pytest.param(b"text<stream/>", C.NOT_WELL_FORMED, id="text-before-root"),
        pytest.param(b"<!-- hi -->" + BARE_HEADER, C.RESTRICTED_XML, id="comment-prolog"),
        pytest.param(b"<?php x?>" + BARE_HEADER, C.RESTRICTED_XML, id="pi-prolog"),
        pytest.param(b"<!DOCTYPE stream>" + BARE_HEADER, C.RESTRICTED_XML, id="doctype"),
        pytest.param(
            b"<!DOCTYPE s [<!ENTITY e 'x'>]><s>&e;</s>", C.RESTRICTED_XML, id="entity-decl"
        ),
        pytest.param(
            b"<!DOCTYPE s SYSTEM 'file:///etc/passwd'><s>&e;</s>", C.RESTRICTED_XML, id="xxe"
        ),
        pytest.param(b"<stream:stream>", C.BAD_NAMESPACE_PREFIX, id="unbound-root"),
        pytest.param(
            b"<?xml version='1.0' encoding='ISO-8859-1'?>" + BARE_HEADER,
            C.UNSUPPORTED_ENCODING,
            id="latin1-decl",
        ),
        pytest.param(
            ("<?xml version='1.0' encoding='UTF-16'?>" + BARE_HEADER.decode()).encode("utf-16"),
            C.UNSUPPORTED_ENCODING,
            id="utf16-bom",
        ),
        pytest.param(BARE_HEADER.decode().encode("utf-16-le"), C.UNSUPPORTED_ENCODING, id="utf16"),
        pytest.param(
            BARE_HEADER.decode().encode("utf-16-be"), C.UNSUPPORTED_ENCODING, id="utf16be"
        ),
    ],
)
def test_error_at_stream_start(stream: bytes, condition: StreamErrorCondition) -> None:
    expect_error(condition, stream)


def test_text_checks_cover_all_of_the_root() -> None:
    expect_error(C.BAD_FORMAT, HEADER, b"<presence/>", b"  ", b"oops")


def test_depth_limit() -> None:
    # the stanza is depth 1; max_depth=3 allows two more levels below it
    ok = b"<iq><a><b/></a></iq>"
    assert only_stanza(ok) == XmlStreamParser(max_depth=3).feed(HEADER + ok)[1]
    expect_error(C.POLICY_VIOLATION, HEADER + b"<iq><a><b><c/></b></a></iq>", max_depth=3)


def test_default_depth_limit_stops_deep_nesting() -> None:
    expect_error(C.POLICY_VIOLATION, HEADER, b"<a>" * 33)
    assert len(parse_all(HEADER, b"<a>" * 32 + b"</a>" * 32)) == 2


def test_stanza_size_limit_in_one_chunk() -> None:
    stanza = b"<message><body>" + b"x" * 1000 + b"</body></message>"
    expect_error(C.POLICY_VIOLATION, HEADER + stanza, max_stanza_bytes=500)
    assert len(parse_all(HEADER + stanza, parser=XmlStreamParser(max_stanza_bytes=2000))) == 2


def test_stanza_size_limit_counts_from_its_start_tag() -> None:
    # many stanzas whose total exceeds the limit are fine; only each one's size counts
    parser = XmlStreamParser(max_stanza_bytes=100)
    parser.feed(HEADER)
    for _ in range(50):
        assert len(parser.feed(b"  <message><body>hello</body></message>")) == 1


def test_oversize_stanza_in_small_chunks_is_stopped_early() -> None:
    limit = 4096
    parser = XmlStreamParser(max_stanza_bytes=limit)
    parser.feed(HEADER)
    parser.feed(b"<message><body>")
    sent = 0
    with pytest.raises(StreamError) as info:
        for _ in range(10_000):
            parser.feed(b"y" * 100)
            sent += 100
    assert info.value.condition is C.POLICY_VIOLATION
    assert limit - 100 <= sent <= limit


@pytest.mark.parametrize(
    "opening",
    [
        pytest.param(b"<message to='", id="attribute-value"),
        pytest.param(b"<message ", id="start-tag-spaces"),
        pytest.param(b"<?xml version='1.0' ", id="xml-declaration"),
    ],
)
def test_unterminated_token_is_stopped_early(opening: bytes) -> None:
    limit = 4096
    filler = b" " if opening.endswith(b" ") else b"a"
    parser = XmlStreamParser(max_stanza_bytes=limit)
    if not opening.startswith(b"<?xml"):
        parser.feed(HEADER)
    with pytest.raises(StreamError) as info:
        parser.feed(opening)
        for _ in range(10_000):
            parser.feed(filler * 64)
    assert info.value.condition is C.POLICY_VIOLATION


def test_billion_laughs_is_restricted_and_fast() -> None:
    entities = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    payload = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
        + entities
        + "]><lolz>"
        + "&lol9;" * 10
        + "</lolz>"
    ).encode()
    started = time.perf_counter()
    expect_error(C.RESTRICTED_XML, payload)
    assert time.perf_counter() - started < 0.5


def test_dead_after_error() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER)
    with pytest.raises(StreamError) as first:
        parser.feed(b"<presence/><!-- no -->")
    for chunk in (b"<presence/>", b"", b"</stream:stream>"):
        with pytest.raises(StreamError) as again:
            parser.feed(chunk)
        assert again.value is first.value
        assert again.value.condition is C.RESTRICTED_XML


def test_name_caches_stay_bounded() -> None:
    # white-box: made-up element and attribute names must not pile up for the stream's lifetime
    parser = XmlStreamParser()
    parser.feed(HEADER)
    for i in range(6000):
        assert len(parser.feed(f"<e{i} a{i}='1' b{i}='2'/>".encode())) == 1
    assert parser._parser.intern is parser._interned
    assert 0 < len(parser._interned) <= 5000
    assert len(parser._names) <= 5000


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        XmlStreamParser(max_depth=0)
    with pytest.raises(ValueError):
        XmlStreamParser(max_stanza_bytes=0)


# round trip through the serializer ------------------------------------------------
def reparse(element: Element) -> Element:
    return only_stanza(serialize(element, NS_CLIENT))


@pytest.mark.parametrize(
    "data",
    [
        MESSAGE,
        FEATURES,
        b"<iq xmlns:foo='urn:foo'><foo:q a='&apos;\"&gt;'>x<foo:y/>&#x263A;</foo:q></iq>",
    ],
)
def test_round_trip_through_serializer(data: bytes) -> None:
    parsed = only_stanza(data)
    assert reparse(parsed) == parsed


def test_round_trip_of_attribute_in_custom_namespace() -> None:
    parsed = only_stanza(b"<iq xmlns:foo='urn:foo'><q foo:a='1'/></iq>")
    assert reparse(parsed) == parsed


def test_round_trip_of_whitespace_characters() -> None:
    element = Element("a", NS_CLIENT, {"x": "a\tb\nc\r"}, ["l1\r\nl2\r"])
    assert reparse(element) == element


# hypothesis ---------------------------------------------------------------------
chunkings = st.lists(st.integers(min_value=0, max_value=4000), max_size=40)

_XML_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc", "Cn"), include_characters="\t\n\r"
)
_NAMES = st.sampled_from(["a", "body", "x-y", "\u00e9t\u00e9", "q.1", "_u"])
_NAMESPACES = st.sampled_from([NS_CLIENT, "urn:x", "urn:y:z", ""])
_ATTR_NAMES = st.sampled_from(["id", "type", "to", "a.b-c", XML_LANG, "{urn:x}attr"])


@st.composite
def text_nodes(draw: st.DrawFn) -> str:
    return draw(st.text(_XML_CHARS, min_size=1, max_size=20))


def _elements(children: st.SearchStrategy[list[Element | str]]) -> st.SearchStrategy[Element]:
    attr_values = st.text(_XML_CHARS)
    return st.builds(
        Element,
        _NAMES,
        _NAMESPACES,
        st.dictionaries(_ATTR_NAMES, attr_values, max_size=3),
        children.map(_merge_text),
    )


def _merge_text(children: list[Element | str]) -> list[Element | str]:
    """Adjacent text nodes come back from a parse as one."""
    merged: list[Element | str] = []
    for child in children:
        if isinstance(child, str) and merged and isinstance(merged[-1], str):
            merged[-1] += child
        else:
            merged.append(child)
    return merged


elements = st.recursive(
    _elements(st.just([])),
    lambda inner: _elements(st.lists(inner | text_nodes(), max_size=4)),
    max_leaves=12,
)


@given(st.binary(max_size=300), chunkings)
@settings(max_examples=300)
def test_arbitrary_bytes_raise_only_stream_error(data: bytes, cuts: list[int]) -> None:
    _only_stream_errors(data, cuts)


@given(st.binary(max_size=300), chunkings)
@settings(max_examples=300)
def test_arbitrary_bytes_after_header_raise_only_stream_error(data: bytes, cuts: list[int]) -> None:
    _only_stream_errors(HEADER + data, cuts)


@given(st.data(), chunkings)
@settings(max_examples=300)
def test_mutated_streams_raise_only_stream_error(data: st.DataObject, cuts: list[int]) -> None:
    stream = bytearray(STREAM)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(stream)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(st.sampled_from(b"<>/&;'\"=!?:x \x00\xff\xc3"))
        if action == "insert":
            stream.insert(at, byte)
        elif at < len(stream):
            if action == "delete":
                del stream[at]
            else:
                stream[at] = byte
    _only_stream_errors(bytes(stream), cuts)


def _only_stream_errors(data: bytes, cuts: list[int]) -> None:
    parser = XmlStreamParser(max_stanza_bytes=200, max_depth=4)
    try:
        parse_chunked(data, [c for c in cuts if c < len(data)], parser=parser)
    except StreamError as exc:
        assert exc.condition is not C.INTERNAL_SERVER_ERROR, exc
        with pytest.raises(StreamError):
            parser.feed(b"<presence/>")


@given(st.lists(elements, max_size=4), chunkings)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_valid_streams_parse_identically_in_any_chunking(
    generated: list[Element], cuts: list[int]
) -> None:
    body = b" ".join(serialize(el, NS_CLIENT) for el in generated)
    stream = HEADER + b"\n" + body + STREAM_CLOSE
    whole = parse_all(stream)
    assert stanzas(whole) == generated
    assert parse_chunked(stream, [c for c in cuts if c < len(stream)]) == whole


@given(elements)
@settings(max_examples=200)
def test_round_trip_parse_serialize_parse(element: Element) -> None:
    parsed = reparse(element)
    assert parsed == element
    assert reparse(parsed) == parsed


# hibernation -------------------------------------------------------------------
HIBERNATE_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:x='urn:x' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


def test_hibernated_parser_parses_the_next_stanzas_as_before() -> None:
    awake, sleepy = XmlStreamParser(), XmlStreamParser()
    first = b"<message to='a@b'><body>one</body></message>"
    later = b" <presence><x:c a='1'/></presence><message><body>two</body></message>"
    for parser in (awake, sleepy):
        parser.feed(HIBERNATE_HEADER + first)
    assert sleepy.hibernate()
    assert sleepy.hibernate()  # idempotent
    assert sleepy.feed(later) == awake.feed(later)
    assert sleepy.feed(b"</stream:stream>") == awake.feed(b"</stream:stream>") == [StreamClosed()]


def test_a_hibernated_stream_closes_without_waking_a_parser() -> None:
    parser = XmlStreamParser()
    parser.feed(HIBERNATE_HEADER)
    assert parser.hibernate()
    assert parser.feed(b"\n </stream:stream> ") == [StreamClosed()]
    assert parser._parser is None  # nothing allocated only to be freed
    assert parser.feed(b"<message/>") == []  # closed: nothing more is parsed


def test_a_wrong_end_tag_on_a_hibernated_stream_is_still_an_error() -> None:
    parser = XmlStreamParser()
    parser.feed(HIBERNATE_HEADER)
    assert parser.hibernate()
    with pytest.raises(StreamError) as err:
        parser.feed(b"</x:stream>")
    assert err.value.condition is StreamErrorCondition.NOT_WELL_FORMED


def test_prefixes_declared_on_the_root_still_resolve_after_waking() -> None:
    parser = XmlStreamParser()
    parser.feed(HIBERNATE_HEADER)
    assert parser.hibernate()
    (stanza,) = parser.feed(b"<iq type='get' id='1'><x:q/></iq>")
    assert isinstance(stanza, Element)
    assert stanza.ns == NS_CLIENT
    assert stanza.first_child is not None and stanza.first_child.ns == "urn:x"


def test_no_hibernation_inside_a_stanza_or_before_the_root() -> None:
    parser = XmlStreamParser()
    assert not parser.hibernate()  # no root yet
    parser.feed(HIBERNATE_HEADER + b"<message><body>half")
    assert not parser.hibernate()
    (stanza,) = parser.feed(b" done</body></message>")
    assert isinstance(stanza, Element)
    assert stanza.find_text("body") == "half done"


def test_no_hibernation_with_an_incomplete_token_buffered() -> None:
    parser = XmlStreamParser()
    parser.feed(HIBERNATE_HEADER + b"<mess")
    assert not parser.hibernate()
    (stanza,) = parser.feed(b"age/>")
    assert isinstance(stanza, Element) and stanza.tag == "message"


def test_limits_hold_after_waking() -> None:
    parser = XmlStreamParser(max_stanza_bytes=100)
    parser.feed(HIBERNATE_HEADER)
    assert parser.hibernate()
    with pytest.raises(StreamError) as err:
        parser.feed(b"<message><body>" + b"x" * 200 + b"</body></message>")
    assert err.value.condition is StreamErrorCondition.POLICY_VIOLATION
    bad = XmlStreamParser()
    bad.feed(HIBERNATE_HEADER)
    assert bad.hibernate()
    with pytest.raises(StreamError) as err:
        bad.feed(b"<message><!-- no --></message>")
    assert err.value.condition is StreamErrorCondition.RESTRICTED_XML
