"""Raw-protocol clients for the web transports: BOSH over aiohttp's HTTP client and XMPP over
WebSocket over aiohttp's WebSocket client. Server output is read with the standard library's
ElementTree, a different parser from Salon's own."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp

from tests.integration.harness import (
    DEFAULT_TIMEOUT,
    NS_BIND,
    NS_CLIENT,
    NS_SASL,
    NS_STREAM,
    NS_STREAMS,
    PASSWORD,
    RunningServer,
    q,
)

NS_HTTPBIND = "http://jabber.org/protocol/httpbind"
NS_XBOSH = "urn:xmpp:xbosh"
NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
NS_XRD = "http://docs.oasis-open.org/ns/xri/xrd-1.0"


def plain_payload(jid: str, password: str = PASSWORD) -> str:
    local = jid.split("@", 1)[0]
    return base64.b64encode(f"\0{local}\0{password}".encode()).decode()


def stream_error_conditions(error: ET.Element) -> list[str]:
    return [
        child.tag.split("}", 1)[1]
        for child in error
        if child.tag.startswith(f"{{{NS_STREAMS}}}") and not child.tag.endswith("}text")
    ]


def mechanisms(features: ET.Element) -> list[str]:
    return [m.text or "" for m in features.iter(q(NS_SASL, "mechanism"))]


def http_session(srv: RunningServer) -> aiohttp.ClientSession:
    """An HTTP client that trusts the test CA."""
    connector = aiohttp.TCPConnector(ssl=srv.client_ssl_context())
    return aiohttp.ClientSession(connector=connector)


# --------------------------------------------------------------------------- BOSH
class BoshClient:
    """Speaks XEP-0124/XEP-0206 one request at a time, or several with ``post_later``."""

    def __init__(self, http: aiohttp.ClientSession, url: str, **headers: str) -> None:
        self.http = http
        self.url = url
        self.headers = {"Content-Type": "text/xml; charset=utf-8", **headers}
        self.rid = random.randint(1_000_000, 9_000_000)
        self.sid: str | None = None
        self.created: ET.Element | None = None

    def next_rid(self) -> int:
        self.rid += 1
        return self.rid

    async def post_raw(self, data: str | bytes) -> tuple[int, bytes]:
        async with self.http.post(self.url, data=data, headers=self.headers) as response:
            return response.status, await response.read()

    async def post(self, data: str | bytes, *, status: int = 200) -> ET.Element:
        code, body = await asyncio.wait_for(self.post_raw(data), DEFAULT_TIMEOUT * 3)
        assert code == status, (code, body)
        root = ET.fromstring(body)
        assert root.tag == q(NS_HTTPBIND, "body"), body
        return root

    def body(self, payload: str = "", *, rid: int | None = None, **attrs: str) -> str:
        rid = self.next_rid() if rid is None else rid
        extra = {"rid": str(rid), **({"sid": self.sid} if self.sid else {}), **attrs}
        attr_text = "".join(f" {k.replace('_', ':', 1)}='{v}'" for k, v in extra.items())
        return f"<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}'{attr_text}>{payload}</body>"

    async def create(self, to: str = "localhost", **attrs: str) -> ET.Element:
        """Session creation (XEP-0206 §3); returns the response <body/>."""
        options = {"to": to, "wait": "60", "hold": "1", "ver": "1.11", "xmpp_version": "1.0"}
        options.update(attrs)
        response = await self.post(self.body(**options))
        self.sid = response.get("sid")
        self.created = response
        return response

    async def request(self, payload: str = "", **attrs: str) -> ET.Element:
        return await self.post(self.body(payload, **attrs))

    def post_later(self, payload: str = "", **attrs: Any) -> asyncio.Task[ET.Element]:
        """Send a request now, without waiting for its answer (a held long-poll)."""
        task = asyncio.get_running_loop().create_task(self.post(self.body(payload, **attrs)))
        return task

    async def login(
        self, jid: str, resource: str = "bosh", password: str = PASSWORD, **create: str
    ) -> str:
        """Create a session (with ``create`` attributes), SASL PLAIN, restart, bind; returns
        the bound full JID."""
        created = await self.create(to=jid.split("@", 1)[1], **create)
        features = created.find(q(NS_STREAM, "features"))
        assert features is not None and "PLAIN" in mechanisms(features), ET.tostring(created)
        success = await self.request(
            f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{plain_payload(jid, password)}</auth>"
        )
        assert success.find(q(NS_SASL, "success")) is not None, ET.tostring(success)
        restarted = await self.request(xmpp_restart="true")
        assert restarted.find(f"{q(NS_STREAM, 'features')}/{q(NS_BIND, 'bind')}") is not None
        bound = await self.request(
            f"<iq xmlns='{NS_CLIENT}' type='set' id='bind1'><bind xmlns='{NS_BIND}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        jid_el = bound.find(f"{q(NS_CLIENT, 'iq')}/{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}")
        assert jid_el is not None and jid_el.text, ET.tostring(bound)
        return jid_el.text


# --------------------------------------------------------------------------- WebSocket
class WsClient:
    """RFC 7395 from the client side: one element per message."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def connect(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        *,
        protocols: tuple[str, ...] = ("xmpp",),
        **headers: str,
    ) -> WsClient:
        ws = await http.ws_connect(url, protocols=protocols, headers=headers)
        return cls(ws)

    async def send(self, data: str) -> None:
        await self.ws.send_str(data)

    async def next_text(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        return str(msg.data)

    async def next(self, timeout: float = DEFAULT_TIMEOUT) -> ET.Element:
        """The next message, parsed as a complete XML document of its own."""
        return ET.fromstring(await self.next_text(timeout))

    async def open(self, to: str = "localhost") -> tuple[ET.Element, ET.Element]:
        """Send <open/>; return the server's <open/> and <stream:features/>."""
        await self.send(f"<open xmlns='{NS_FRAMING}' to='{to}' version='1.0'/>")
        opened = await self.next()
        assert opened.tag == q(NS_FRAMING, "open"), ET.tostring(opened)
        features = await self.next()
        assert features.tag == q(NS_STREAM, "features"), ET.tostring(features)
        return opened, features

    async def login(self, jid: str, resource: str = "ws", password: str = PASSWORD) -> str:
        """Open, SASL PLAIN, reopen, bind; returns the bound full JID."""
        _, features = await self.open(jid.split("@", 1)[1])
        assert "PLAIN" in mechanisms(features), ET.tostring(features)
        await self.send(
            f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{plain_payload(jid, password)}</auth>"
        )
        success = await self.next()
        assert success.tag == q(NS_SASL, "success"), ET.tostring(success)
        _, features = await self.open(jid.split("@", 1)[1])
        assert features.find(q(NS_BIND, "bind")) is not None
        await self.send(
            f"<iq xmlns='{NS_CLIENT}' type='set' id='bind1'><bind xmlns='{NS_BIND}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        bound = await self.next()
        jid_el = bound.find(f"{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}")
        assert jid_el is not None and jid_el.text, ET.tostring(bound)
        return jid_el.text

    async def expect_closed(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """The server closes the WebSocket (after its <close/>, which must come first)."""
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg

    async def expect_stream_error(self, condition: str) -> None:
        """<stream:error> with ``condition``, then <close/>, then the WebSocket closes."""
        error = await self.next()
        assert error.tag == q(NS_STREAM, "error"), ET.tostring(error)
        assert stream_error_conditions(error) == [condition], ET.tostring(error)
        close = await self.next()
        assert close.tag == q(NS_FRAMING, "close"), ET.tostring(close)
        await self.expect_closed()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
