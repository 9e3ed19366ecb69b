"""XEP-0156 discovery (host-meta as XRD and JSON), CORS for browser clients on other origins,
configurable mount points and the /chat page, over the web server's real ports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.integration.harness import RunningServer, q
from tests.integration.web_helpers import NS_XRD, BoshClient, http_session

Factory = Callable[..., Awaitable[RunningServer]]
REL_BOSH = "urn:xmpp:alt-connections:xbosh"
REL_WEBSOCKET = "urn:xmpp:alt-connections:websocket"


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(server) as session:
        yield session


async def xrd_links(http: aiohttp.ClientSession, url: str, **headers: str) -> dict[str, str]:
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "application/xrd+xml"
        root = ET.fromstring(await response.read())
    assert root.tag == q(NS_XRD, "XRD")
    return {link.get("rel", ""): link.get("href", "") for link in root.iter(q(NS_XRD, "Link"))}


async def test_host_meta_advertises_both_endpoints(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    links = await xrd_links(http, server.http_url("/.well-known/host-meta"))
    port = server.https_port
    assert links == {
        REL_BOSH: f"https://localhost:{port}/http-bind",
        REL_WEBSOCKET: f"wss://localhost:{port}/xmpp-websocket",
    }


async def test_host_meta_json_advertises_both_endpoints(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(server.http_url("/.well-known/host-meta.json")) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        document = json.loads(await response.read())
    links = {link["rel"]: link["href"] for link in document["links"]}
    port = server.https_port
    assert links == {
        REL_BOSH: f"https://localhost:{port}/http-bind",
        REL_WEBSOCKET: f"wss://localhost:{port}/xmpp-websocket",
    }


async def test_host_meta_over_plain_http_points_to_https(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    links = await xrd_links(http, server.http_url("/.well-known/host-meta", secure=False))
    assert links[REL_BOSH] == f"https://127.0.0.1:{server.https_port}/http-bind"
    assert links[REL_WEBSOCKET] == f"wss://127.0.0.1:{server.https_port}/xmpp-websocket"


async def test_host_meta_behind_a_reverse_proxy(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    links = await xrd_links(
        http,
        server.http_url("/.well-known/host-meta", secure=False),
        **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "chat.example.test"},
    )
    assert links == {
        REL_BOSH: "https://chat.example.test/http-bind",
        REL_WEBSOCKET: "wss://chat.example.test/xmpp-websocket",
    }


async def test_public_url_and_mount_points_are_configurable(server_factory: Factory) -> None:
    srv = await server_factory(
        http={
            "public_url": "https://xmpp.example.test/",
            "bosh_path": "/bosh",
            "websocket_path": "/ws",
        }
    )
    async with http_session(srv) as http:
        links = await xrd_links(http, srv.http_url("/.well-known/host-meta"))
        assert links == {
            REL_BOSH: "https://xmpp.example.test/bosh",
            REL_WEBSOCKET: "wss://xmpp.example.test/ws",
        }
        created = await BoshClient(http, srv.http_url("/bosh")).create()
        assert created.get("sid")
        ws = await http.ws_connect(
            "wss" + srv.http_url("/ws").removeprefix("https"), protocols=("xmpp",)
        )
        await ws.close()
        async with http.post(srv.http_url("/http-bind"), data="<body/>") as response:
            assert response.status == 404


# --------------------------------------------------------------------------- CORS
async def test_cors_lets_pages_on_other_origins_use_bosh_and_host_meta(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    preflight = {**origin, "Access-Control-Request-Method": "POST"}
    async with http.options(server.http_url("/http-bind"), headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    created = BoshClient(http, server.http_url("/http-bind"), **origin)
    async with http.post(
        created.url, data=created.body(to="localhost", ver="1.11"), headers=created.headers
    ) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    async with http.get(server.http_url("/.well-known/host-meta"), headers=origin) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_cors_origins_can_be_restricted(server_factory: Factory) -> None:
    srv = await server_factory(http={"cors_origins": ["https://good.example"]})
    async with http_session(srv) as http:
        url = srv.http_url("/.well-known/host-meta")
        async with http.get(url, headers={"Origin": "https://good.example"}) as response:
            assert response.headers["Access-Control-Allow-Origin"] == "https://good.example"
            assert response.headers["Vary"] == "Origin"
        async with http.get(url, headers={"Origin": "https://evil.example"}) as response:
            assert "Access-Control-Allow-Origin" not in response.headers
        ws_url = "wss" + srv.http_url("/xmpp-websocket").removeprefix("https")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                ws_url, protocols=("xmpp",), headers={"Origin": "https://evil.example"}
            )
        assert refused.value.status == 403
        own = {"Origin": f"https://localhost:{srv.https_port}"}  # the /chat page's own origin
        ws = await http.ws_connect(ws_url, protocols=("xmpp",), headers=own)
        await ws.close()


# --------------------------------------------------------------------------- /chat
async def test_chat_page_says_when_converse_is_missing(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(server.http_url("/chat"), allow_redirects=False) as response:
        assert response.status == 302 and response.headers["Location"] == "/chat/"
    async with http.get(server.http_url("/chat/")) as response:
        assert response.status == 200
        page = await response.text()
    assert "The web chat is not installed" in page
    assert "npm install --prefix " in page and " converse.js@" in page


async def test_chat_page_configures_converse(server_factory: Factory, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "converse.min.js").write_text("export default {initialize() {}};\n")
    srv = await server_factory(http={"web_client_dir": str(dist)})
    async with http_session(srv) as http:
        async with http.get(srv.http_url("/chat/")) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            page = await response.text()
        async with http.get(srv.http_url("/chat/converse.min.js")) as response:
            assert response.status == 200
            assert "initialize" in await response.text()
        async with http.get(srv.http_url("/chat/../salon.db")) as response:
            assert response.status == 404
    config = json.loads(page.split('id="salon-config">', 1)[1].split("</script>", 1)[0])
    assert config == {
        "domain": "localhost",
        "bosh_path": "/http-bind",
        "websocket_path": "/xmpp-websocket",
    }
    assert 'import converse from "./converse.min.js"' in page
    assert "cdn" not in page.lower()
