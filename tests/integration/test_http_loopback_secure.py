"""A browser on this machine may log in over plain HTTP (``[http] consider_loopback_secure``,
on by default), so the README's ``http://localhost:5280/chat/`` works for a newcomer; a
remote client never may, and a remote browser on the plain-HTTP chat page is sent to HTTPS.

Every client here connects from 127.0.0.1; a request carrying ``X-Forwarded-For`` plays a
remote client behind a reverse proxy on this machine.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.integration.harness import NS_STREAM, RunningServer, q
from tests.integration.web_helpers import BoshClient, WsClient, http_session, mechanisms

Factory = Callable[..., Awaitable[RunningServer]]
REMOTE = {"X-Forwarded-For": "203.0.113.7"}


def ws_url(srv: RunningServer) -> str:
    return "ws" + srv.http_url("/xmpp-websocket", secure=False).removeprefix("http")


def bosh_url(srv: RunningServer) -> str:
    return srv.http_url("/http-bind", secure=False)


async def ws_mechanisms(srv: RunningServer, **headers: str) -> list[str]:
    async with http_session(srv) as http:
        client = await WsClient.connect(http, ws_url(srv), **headers)
        _, features = await client.open()
        await client.ws.close()
    return mechanisms(features)


async def bosh_mechanisms(srv: RunningServer, **headers: str) -> list[str]:
    async with http_session(srv) as http:
        created = await BoshClient(http, bosh_url(srv), **headers).create()
    features = created.find(q(NS_STREAM, "features"))
    assert features is not None, ET.tostring(created)
    return mechanisms(features)


@pytest.fixture
def converse(tmp_path: Path) -> Path:
    """A stand-in for Converse.js's dist folder (the page is only served when it is there)."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "converse.min.js").write_text("export default {initialize() {}};\n")
    return dist


# --------------------------------------------------------------------------- SASL offers
async def test_ws_from_loopback_offers_plain_and_logs_in(server: RunningServer) -> None:
    offered = await ws_mechanisms(server)
    assert "PLAIN" in offered and "SCRAM-SHA-256" in offered
    assert not any(m.endswith("-PLUS") for m in offered)  # no TLS, no channel binding
    async with http_session(server) as http:
        client = await WsClient.connect(http, ws_url(server))
        jid = await server.add_user()
        assert (await client.login(jid)).startswith(jid + "/")
        await client.ws.close()


async def test_bosh_from_loopback_offers_plain(server: RunningServer) -> None:
    assert "PLAIN" in await bosh_mechanisms(server)


@pytest.mark.parametrize("transport", ["ws", "bosh"])
@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "203.0.113.7"},
        {"X-Forwarded-For": "127.0.0.1"},  # whatever address the proxy reports
        {"Forwarded": "for=203.0.113.7"},
        {"Via": "1.1 proxy.example"},
        {"X-Forwarded-Proto": "http"},
    ],
    ids=["x-forwarded-for", "x-forwarded-for-loopback", "forwarded", "via", "proto-http"],
)
async def test_a_proxied_plain_request_is_never_local(
    server: RunningServer, transport: str, header: dict[str, str]
) -> None:
    offer = ws_mechanisms if transport == "ws" else bosh_mechanisms
    assert await offer(server, **header) == []  # c2s.require_encryption, as on TCP


@pytest.mark.parametrize("transport", ["ws", "bosh"])
async def test_loopback_is_plain_when_the_option_is_off(
    server_factory: Factory, transport: str
) -> None:
    srv = await server_factory(http={"consider_loopback_secure": False})
    offer = ws_mechanisms if transport == "ws" else bosh_mechanisms
    assert await offer(srv) == []


async def test_host_meta_from_loopback_still_points_at_https(server: RunningServer) -> None:
    """Counting as secure changes what SASL offers, not the scheme the client is on."""
    async with http_session(server) as http:
        url = server.http_url("/.well-known/host-meta.json", secure=False)
        async with http.get(url) as response:
            links = {link["rel"]: link["href"] for link in (await response.json())["links"]}
    assert set(links.values()) == {
        f"https://127.0.0.1:{server.https_port}/http-bind",
        f"wss://127.0.0.1:{server.https_port}/xmpp-websocket",
    }


# --------------------------------------------------------------------------- the chat page
async def test_chat_page_over_plain_http_from_loopback_is_served(
    server_factory: Factory, converse: Path
) -> None:
    srv = await server_factory(http={"web_client_dir": str(converse)})
    async with http_session(srv) as http:
        url = f"http://localhost:{srv.http_port}/chat/"
        async with http.get(url, allow_redirects=False) as response:
            assert response.status == 200
            assert "converse.min.js" in await response.text()


@pytest.mark.parametrize(
    "options, headers",
    [({}, REMOTE), ({"consider_loopback_secure": False}, {})],
    ids=["remote-client", "loopback-not-trusted"],
)
async def test_chat_page_over_plain_http_redirects_to_https(
    server_factory: Factory, converse: Path, options: dict[str, bool], headers: dict[str, str]
) -> None:
    srv = await server_factory(http={"web_client_dir": str(converse), **options})
    async with http_session(srv) as http:
        url = f"http://localhost:{srv.http_port}/chat/?transport=bosh"
        async with http.get(url, headers=headers, allow_redirects=False) as response:
            assert response.status == 302
            location = response.headers["Location"]
    assert location == f"https://localhost:{srv.https_port}/chat/?transport=bosh"
    async with http_session(srv) as http, http.get(location) as response:
        assert response.status == 200
        assert "converse.min.js" in await response.text()


async def test_chat_page_without_https_explains_instead_of_failing_to_log_in(
    server_factory: Factory, converse: Path
) -> None:
    srv = await server_factory(http={"web_client_dir": str(converse), "tls_enabled": False})
    async with http_session(srv) as http:
        url = f"http://localhost:{srv.http_port}/chat/"
        async with http.get(url, headers=REMOTE, allow_redirects=False) as response:
            assert response.status == 200
            page = await response.text()
    assert "needs an encrypted connection" in page
    assert "converse.min.js" not in page
