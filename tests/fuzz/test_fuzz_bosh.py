"""Fuzz BOSH request bodies (XEP-0124, XEP-0206): a body either parses or is refused with
``bad-request``, a terminal condition of XEP-0124 §17.2; the numeric attributes either read
as whole numbers or are ``bad-request``; and what a body carries, handed to the client stream
machine as a BOSH session does, gives only RFC-named errors back."""

from __future__ import annotations

import itertools
import random
import xml.etree.ElementTree as ET

from hypothesis import given, note

from salon.namespaces import NS_HTTPBIND, NS_STREAM
from salon.stream.c2s import C2SPolicy, C2SStream
from salon.stream.events import CloseConnection, DelayedSend, Send
from salon.stream.framing import BoshError, BoshFraming, body_events, parse_body
from tests.fuzz.oracle import (
    BOSH_CONDITIONS,
    FED,
    FUZZ,
    REACHED,
    STREAM_CONDITIONS,
    check_element,
    input_seeds,
)
from tests.fuzz.strategies import C2S_VALID, SEEDS, mutate, piece

MAX_STANZA = 65536
OPEN = (
    f"<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh' xmlns:stream='{NS_STREAM}'"
).encode()
ATTRIBUTES = [
    b" rid='1573741820'",
    b" rid='99999999999999999999999'",
    b" rid='-1'",
    b" rid='0x10'",
    b" rid='\xd9\xa3'",  # an Arabic-Indic digit: str.isdigit() says yes, int() says yes
    b" rid='\xc2\xb2'",  # superscript two: isdigit() yes, int() no
    b" to='localhost'",
    b" to='unknown.example'",
    b" sid='abc'",
    b" wait='60'",
    b" hold='1'",
    b" pause='5'",
    b" ver='1.6'",
    b" ver='1.5'",
    b" xmpp:version='1.0'",
    b" xmpp:restart='true'",
    b" type='terminate'",
    b" xml:lang='en'",
    b" ack='1'",
    b" content='text/xml; charset=utf-8'",
]
STANZAS = [
    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHVzZXIAcGVuY2ls</auth>",
    b"<iq type='set' id='b1' xmlns='jabber:client'>"
    b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    b"<message to='juliet@localhost'><body>hi</body></message>",
    b"<presence xmlns='jabber:client'/>",
]


def fuzz_body(rng: random.Random) -> bytes:
    attrs = b"".join(rng.choice(ATTRIBUTES) for _ in range(rng.randint(0, 6)))
    inner = b"".join(
        rng.choice(STANZAS) if rng.random() < 0.5 else piece(rng, C2S_VALID)
        for _ in range(rng.randint(0, 4))
    )
    roll = rng.random()
    if roll < 0.2:
        body = OPEN + attrs + b"/>"
    elif roll < 0.9:
        body = OPEN + attrs + b">" + inner + b"</body>"
    else:
        body = rng.choice([b"<body/>", b"<stream:stream/>", b"", b"<body xmlns='urn:x'/>"])
        body += inner
    return mutate(rng, body) if rng.random() < 0.3 else body


def check_output(actions: list[object]) -> None:
    for action in actions:
        if isinstance(action, Send | DelayedSend) and action.data:
            wrapped = OPEN + b">" + action.data + b"</body>"
            for child in ET.fromstring(wrapped):
                check_element(child)
        elif isinstance(action, CloseConnection) and action.error is not None:
            assert action.error.value in STREAM_CONDITIONS


@FUZZ
@given(SEEDS)
def test_bosh_body(seed: int) -> None:
    for one in input_seeds(seed):
        note(f"input seed {one}")
        bosh_input(random.Random(one))


def bosh_input(rng: random.Random) -> None:
    FED["bosh"] += 1
    data = fuzz_body(rng)
    try:
        body = parse_body(data, max_stanza_bytes=MAX_STANZA, max_depth=32)
        for name in ("rid", "wait", "hold", "pause"):
            value = body.int_attr(name)
            assert value is None or value >= 0
    except BoshError as err:
        assert err.condition in BOSH_CONDITIONS
        REACHED[f"bosh refused {err.condition}"] += 1
        return
    REACHED["bosh parsed"] += 1
    ids = itertools.count()
    stream = C2SStream(
        C2SPolicy(
            is_local_host={"localhost"}.__contains__,
            default_host="localhost",
            new_id=lambda: f"id{next(ids)}",
        ),
        is_secure=True,
        framing=BoshFraming(),
    )
    check_output(list(stream.receive_events(body_events(body, opens_stream=True))))


def test_non_ascii_digits_are_bad_request() -> None:
    """Found by this fuzz: ``str.isdigit()`` is true for "²" (then int() raised ValueError,
    which no caller expected) and for "٣" (read as 3). XEP-0124 numbers are ASCII digits."""
    for value in ("\u00b2", "\u0663", "\uff11"):
        body = parse_body(
            OPEN + f" rid='{value}'/>".encode(), max_stanza_bytes=MAX_STANZA, max_depth=32
        )
        try:
            body.int_attr("rid")
        except BoshError as err:
            assert err.condition == "bad-request"
        else:
            raise AssertionError(f"rid={value!r} was read as a number")
