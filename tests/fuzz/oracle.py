"""What a hostile peer may observe from Salon: the conditions the RFCs name, and nothing else.

The lists are written out here from the specifications, not imported from ``salon.errors``,
so a made-up condition in Salon's own enums would fail these tests. Server output is read
back with the standard library's ``XMLPullParser``, a different parser from Salon's own.
"""

from __future__ import annotations

import os
import random
import xml.etree.ElementTree as ET
from collections import Counter

from hypothesis import HealthCheck, Phase, settings

# RFC 6120 §4.9.3: stream error conditions.
STREAM_CONDITIONS = frozenset(
    {
        "bad-format",
        "bad-namespace-prefix",
        "conflict",
        "connection-timeout",
        "host-gone",
        "host-unknown",
        "improper-addressing",
        "internal-server-error",
        "invalid-from",
        "invalid-namespace",
        "invalid-xml",
        "not-authorized",
        "not-well-formed",
        "policy-violation",
        "remote-connection-failed",
        "reset",
        "resource-constraint",
        "restricted-xml",
        "see-other-host",
        "system-shutdown",
        "undefined-condition",
        "unsupported-encoding",
        "unsupported-feature",
        "unsupported-stanza-type",
        "unsupported-version",
    }
)
# RFC 6120 §6.5: SASL failure conditions.
SASL_CONDITIONS = frozenset(
    {
        "aborted",
        "account-disabled",
        "credentials-expired",
        "encryption-required",
        "incorrect-encoding",
        "invalid-authzid",
        "invalid-mechanism",
        "malformed-request",
        "mechanism-too-weak",
        "not-authorized",
        "temporary-auth-failure",
    }
)
# RFC 6120 §8.3.3: stanza error conditions.
STANZA_CONDITIONS = frozenset(
    {
        "bad-request",
        "conflict",
        "feature-not-implemented",
        "forbidden",
        "gone",
        "internal-server-error",
        "item-not-found",
        "jid-malformed",
        "not-acceptable",
        "not-allowed",
        "not-authorized",
        "policy-violation",
        "recipient-unavailable",
        "redirect",
        "registration-required",
        "remote-server-not-found",
        "remote-server-timeout",
        "resource-constraint",
        "service-unavailable",
        "subscription-required",
        "undefined-condition",
        "unexpected-request",
    }
)
# XEP-0124 §17.2 (with XEP-0206's remote-stream-error): BOSH terminal binding conditions.
BOSH_CONDITIONS = frozenset(
    {
        "bad-request",
        "host-gone",
        "host-unknown",
        "improper-addressing",
        "internal-server-error",
        "item-not-found",
        "other-request",
        "policy-violation",
        "remote-connection-failed",
        "remote-stream-error",
        "see-other-uri",
        "system-shutdown",
        "undefined-condition",
    }
)

NS_STREAM = "http://etherx.jabber.org/streams"
NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

# How many examples each fuzz test runs, and how many inputs each example generates and feeds
# (each to a fresh parser or state machine): a few hundred inputs per test in the normal suite;
# `make fuzz` raises both so that the tests together go through more than a million inputs.
# Batching inputs per example spreads hypothesis's own cost per example (about 2 ms, ten times
# what feeding one input costs) over many inputs.
EXAMPLES = int(os.environ.get("SALON_FUZZ_EXAMPLES", "300"))
BATCH = int(os.environ.get("SALON_FUZZ_BATCH", "1"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
    suppress_health_check=list(HealthCheck),
)

# Inputs fed per test, printed at the end of the session (tests/fuzz/conftest.py).
FED: Counter[str] = Counter()
# Which states the stream machines reached (after a chunk), to see the fuzz gets past the header.
REACHED: Counter[str] = Counter()


def input_seeds(seed: int) -> list[int]:
    """The seeds of the inputs one example feeds: its own, or ``BATCH`` derived from it. A
    failure names the input's seed (hypothesis prints the note), so it can be replayed."""
    if BATCH == 1:
        seeds = [seed]
    else:
        rng = random.Random(seed)
        seeds = [rng.getrandbits(64) for _ in range(BATCH)]
    return seeds


def conditions(parent: ET.Element, ns: str) -> list[str]:
    """The defined-condition children of an error element (``<text/>`` left out)."""
    prefix = f"{{{ns}}}"
    return [
        child.tag[len(prefix) :]
        for child in parent
        if child.tag.startswith(prefix) and child.tag != f"{prefix}text"
    ]


def check_element(el: ET.Element) -> None:
    """Every error inside a top-level element the server wrote names an RFC condition."""
    if el.tag == f"{{{NS_STREAM}}}error":
        found = conditions(el, NS_STREAMS)
        assert len(found) == 1 and found[0] in STREAM_CONDITIONS, ET.tostring(el)
        return
    if el.tag == f"{{{NS_SASL}}}failure":
        found = conditions(el, NS_SASL)
        assert len(found) == 1 and found[0] in SASL_CONDITIONS, ET.tostring(el)
        return
    for error in el.iter():
        if error.tag.rpartition("}")[2] != "error" or error is el:
            continue
        found = conditions(error, NS_STANZAS)
        assert len(found) == 1 and found[0] in STANZA_CONDITIONS, ET.tostring(el)


class OutputReader:
    """The server's bytes as its peer reads them: well-formed XML, with allowed errors only.
    A new ``<?xml`` declaration or stream header starts a new stream (after STARTTLS, SASL)."""

    def __init__(self) -> None:
        self._parser: ET.XMLPullParser | None = None
        self._depth = 0
        self.closed = False
        self.elements = 0
        self.stream_errors: list[str] = []

    def feed(self, data: bytes) -> None:
        if data.startswith(b"<?xml"):
            self._parser = ET.XMLPullParser(events=("start", "end"))
            self._depth = 0
            self.closed = False
        assert self._parser is not None, f"the server wrote {data!r} before a stream header"
        assert not self.closed, f"the server wrote {data!r} after closing its stream"
        self._parser.feed(data)
        for event, el in self._parser.read_events():
            assert isinstance(el, ET.Element)
            if event == "start":
                self._depth += 1
                continue
            self._depth -= 1
            if self._depth == 1:
                self.elements += 1
                check_element(el)
                if el.tag == f"{{{NS_STREAM}}}error":
                    self.stream_errors.extend(conditions(el, NS_STREAMS))
            elif self._depth == 0:
                self.closed = True
