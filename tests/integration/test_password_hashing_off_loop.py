"""PBKDF2 never runs on the event loop: SASL PLAIN verification, XEP-0077 registration and
password changes derive keys in Salon's bounded password pool (threads named
``salon-passwords``), so one login costs other clients no loop time.

``hashlib.pbkdf2_hmac`` (what Salon and scramp call, and which releases the GIL) is wrapped to
record the thread of every call; nothing of Salon's is replaced.
"""

from __future__ import annotations

import hashlib
import threading
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.integration.harness import NS_SASL, PASSWORD, RawClient, RunningServer, q, raw_session

Factory = Callable[..., Awaitable[RunningServer]]
NS_REGISTER = "jabber:iq:register"
POOL_THREAD_PREFIX = "salon-passwords"


@pytest.fixture
def pbkdf2_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The name of the thread of every PBKDF2 run from now on."""
    threads: list[str] = []
    real = hashlib.pbkdf2_hmac

    def recording(*args: Any, **kwargs: Any) -> bytes:
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", recording)
    yield threads


async def _plain(srv: RunningServer, username: str, password: str) -> str:
    client = await RawClient.connect(srv)
    await client.open()
    await client.starttls(srv)
    await client.open()
    reply = await client.auth_plain(f"{username}@localhost", password)
    await client.close()
    assert reply.tag in (q(NS_SASL, "success"), q(NS_SASL, "failure")), ET.tostring(reply)
    return reply.tag.split("}", 1)[1]


async def test_plain_verification_runs_in_the_password_pool(
    server: RunningServer, pbkdf2_threads: list[str]
) -> None:
    jid = await server.add_user("juliet")  # keys derived here, on the test's loop thread
    pbkdf2_threads.clear()
    assert await _plain(server, "juliet", PASSWORD) == "success"
    assert await _plain(server, "juliet", "wrong password") == "failure"
    assert await _plain(server, "nobody", PASSWORD) == "failure"  # the same work, faked
    assert len(pbkdf2_threads) == 3, pbkdf2_threads
    assert all(name.startswith(POOL_THREAD_PREFIX) for name in pbkdf2_threads), pbkdf2_threads
    client, _ = await raw_session(server, jid)  # the login path still ends bound
    await client.ping()


async def test_registration_and_password_change_hash_in_the_password_pool(
    server_factory: Factory, pbkdf2_threads: list[str]
) -> None:
    srv = await server_factory(
        modules=["disco", "ping", "presence", "message", "register"],
        module_options={"register": {"allow_registration": True}},
    )
    client = await RawClient.connect(srv)
    await client.open()
    await client.starttls(srv)
    await client.open()
    await client.send(
        f"<iq type='set' id='r1'><query xmlns='{NS_REGISTER}'>"
        f"<username>romeo</username><password>{PASSWORD}</password></query></iq>"
    )
    reply = await client.next()
    assert reply.get("type") == "result", ET.tostring(reply)
    await client.close()
    registered = len(pbkdf2_threads)
    assert registered >= 3, pbkdf2_threads  # one key per SCRAM hash

    session, _ = await raw_session(srv, "romeo@localhost")
    await session.send(
        f"<iq type='set' id='c1'><query xmlns='{NS_REGISTER}'>"
        "<username>romeo</username><password>a new one</password></query></iq>"
    )
    reply = await session.next()
    assert reply.get("type") == "result", ET.tostring(reply)
    assert len(pbkdf2_threads) > registered + 1, pbkdf2_threads  # login + new keys
    assert all(name.startswith(POOL_THREAD_PREFIX) for name in pbkdf2_threads), pbkdf2_threads
    assert await _plain(srv, "romeo", "a new one") == "success"
