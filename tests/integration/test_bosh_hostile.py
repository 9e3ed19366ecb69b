"""Hostile BOSH request bodies against a real server over HTTPS: every answer is a ``<body/>``
(HTTP 200, or the status codes XEP-0124 §17.1 gives clients before version 1.6), a terminate
names a condition of XEP-0124 §17.2, nothing is a 500, and the server serves a normal client
afterwards. The bodies are those of tests/fuzz/test_fuzz_bosh.py, a few hundred of them."""

from __future__ import annotations

import asyncio
import random
import xml.etree.ElementTree as ET

from tests.fuzz.oracle import BOSH_CONDITIONS
from tests.fuzz.test_fuzz_bosh import fuzz_body
from tests.integration.harness import RunningServer, q
from tests.integration.web_helpers import NS_HTTPBIND, BoshClient, http_session

BODIES = 300


def check_answer(status: int, data: bytes, sent: bytes) -> None:
    assert status in (200, 400, 403, 404), (status, data, sent)
    root = ET.fromstring(data)
    assert root.tag == q(NS_HTTPBIND, "body"), (data, sent)
    if root.get("type") == "terminate" and root.get("condition") is not None:
        assert root.get("condition") in BOSH_CONDITIONS, (data, sent)


async def test_a_rid_of_unicode_digits_is_bad_request(server: RunningServer) -> None:
    """Regression (found by the fuzz): rid='²' passed str.isdigit() and int() raised: a 500."""
    async with http_session(server) as http:
        client = BoshClient(http, server.http_url("/http-bind"))
        for rid in ("\u00b2", "\u0663"):
            attrs = {"rid": rid, "to": "localhost", "wait": "60", "hold": "1", "ver": "1.11"}
            body = client.body(**attrs)
            status, data = await client.post_raw(body.encode())
            assert status == 200, (status, data)
            root = ET.fromstring(data)
            assert root.get("type") == "terminate" and root.get("condition") == "bad-request"


async def test_a_ver_of_unicode_digits_is_answered(server: RunningServer) -> None:
    """ver='².6' passed str.isdigit() and int() raised: a 500 for session creation. A version
    that does not parse is a client older than 1.6."""
    async with http_session(server) as http:
        client = BoshClient(http, server.http_url("/http-bind"))
        attrs = {"to": "localhost", "ver": "\u00b2.6", "xmpp_version": "1.0", "wait": "60"}
        status, data = await client.post_raw(client.body(**attrs).encode())
        assert status == 200, (status, data)
        assert ET.fromstring(data).get("sid"), data


async def test_fuzzed_bodies_get_bosh_answers_and_the_server_keeps_serving(
    server: RunningServer,
) -> None:
    async with http_session(server) as http:
        client = BoshClient(http, server.http_url("/http-bind"))
        for seed in range(BODIES):
            sent = fuzz_body(random.Random(seed))
            status, data = await asyncio.wait_for(client.post_raw(sent), 20)
            check_answer(status, data, sent)
        user = await server.add_user()
        normal = BoshClient(http, server.http_url("/http-bind"))
        assert (await normal.login(user)).endswith("/bosh")
