"""The web server: BOSH, WebSocket, XEP-0156 host-meta and the chat page, on aiohttp.

It listens on ``http.port`` (plain) and ``http.tls_port`` (HTTPS with the hosts'
certificates, picked by SNI). Behind a reverse proxy, requests from ``trusted_proxies``
carry the client's address and scheme in ``X-Forwarded-For`` / ``X-Forwarded-Proto``.
A plain-HTTP client is not encrypted, so it gets no SASL mechanism while
``c2s.require_encryption`` holds: the same rule as on TCP. Two exceptions make the chat page
work for a newcomer: a browser on this machine talking to the loopback address directly
counts as secure (``consider_loopback_secure``, on by default: loopback traffic never
crosses a network, and browsers themselves treat ``http://localhost`` as a secure context),
and a remote browser that opens the page over plain HTTP is redirected to the HTTPS port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from salon.core.items import HTTP_BASE_URL, HTTP_ROUTE
from salon.core.web import HttpRequest, HttpRoute
from salon.namespaces import NS_XRD
from salon.net.bosh import BoshManager
from salon.net.chat_page import chat_page, insecure_page, missing_page
from salon.net.listen import listen
from salon.net.metrics import MetricsEndpoint
from salon.net.websocket import serve_websocket
from salon.xml.element import Element
from salon.xml.serializer import serialize

if TYPE_CHECKING:
    from salon.app import App

log = logging.getLogger(__name__)

REL_BOSH = "urn:xmpp:alt-connections:xbosh"
REL_WEBSOCKET = "urn:xmpp:alt-connections:websocket"
#: Headers a reverse proxy adds: a request with one of them speaks for another client.
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Via")
BODY_OVERHEAD = 65536  # bytes a BOSH request may carry beyond one maximal stanza
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpService:
    """The aiohttp application and its listeners."""

    def __init__(self, server: App) -> None:
        self.server = server
        self.options = server.settings.http
        self.bosh = BoshManager(server)
        self.client_dir = server.settings.resolve(self.options.web_client_dir)
        self.app = web.Application(
            middlewares=[self._cors],
            client_max_size=server.settings.c2s.max_stanza_size + BODY_OVERHEAD,
        )
        self._add_routes()
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)

    def _add_routes(self) -> None:
        o = self.options
        router = self.app.router
        for path in (o.bosh_path, o.bosh_path + "/"):
            router.add_post(path, self.bosh_post)
            router.add_get(path, self.bosh_get)
            router.add_route("OPTIONS", path, self.preflight)
        for path in (o.websocket_path, o.websocket_path + "/"):
            router.add_get(path, self.websocket)
        for path in ("/.well-known/host-meta", "/.well-known/host-meta.json"):
            router.add_get(path, self.host_meta)
            router.add_route("OPTIONS", path, self.preflight)
        router.add_get(o.chat_path, self.chat_redirect)
        router.add_get(o.chat_path + "/", self.chat)
        router.add_get(o.chat_path + "/index.html", self.chat)
        if o.metrics_enabled:
            router.add_get(o.metrics_path, MetricsEndpoint(self.server).handle)
        if (self.client_dir / "converse.min.js").is_file():
            router.add_static(o.chat_path, self.client_dir, follow_symlinks=False)
        # Last: paths that modules serve (HTTP_ROUTE items), looked up per request so that
        # loading or unloading a module needs no new router.
        router.add_route("*", "/{tail:.*}", self.module_route)

    async def start(self) -> dict[str, list[asyncio.Server]]:
        """Listen on the configured ports; the listeners by kind ("http", "https")."""
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        o = self.options
        handler = self.runner.server
        assert handler is not None
        listeners: dict[str, list[asyncio.Server]] = {
            "http": [await listen(loop, handler, host, o.port) for host in o.interfaces]
        }
        ctx = self.server.tls.https_context()
        if o.tls_enabled and ctx is not None:
            listeners["https"] = [
                await listen(
                    loop,
                    handler,
                    host,
                    o.tls_port,
                    ssl=ctx,
                    ssl_handshake_timeout=self.server.settings.c2s.handshake_timeout,
                )
                for host in o.interfaces
            ]
        self._publish_base_urls(listeners)
        return listeners

    def _publish_base_urls(self, listeners: dict[str, list[asyncio.Server]]) -> None:
        """Tell each host where its web server is (HTTP_BASE_URL): ``public_url`` when set,
        else the host's own name on the HTTPS port (the HTTP port without TLS)."""
        for domain, host in self.server.core.hosts.items():
            base = self.options.public_url
            if not base:
                kind, scheme = ("https", "https") if "https" in listeners else ("http", "http")
                port = listeners[kind][0].sockets[0].getsockname()[1]
                base = f"{scheme}://{domain}:{port}"
            host.items.add(HTTP_BASE_URL, base)

    async def stop(self) -> None:
        await self.runner.cleanup()

    # ------------------------------------------------------------------ clients
    def client(self, request: web.Request) -> tuple[str, bool]:
        """The client's ``ip:port`` (believing a trusted proxy's ``X-Forwarded-For``) and
        whether its stream counts as secure for SASL: encrypted (:meth:`is_https`), or a
        direct loopback connection (:meth:`is_local_browser`)."""
        peername = request.transport.get_extra_info("peername") if request.transport else None
        ip, port = (str(peername[0]), str(peername[1])) if peername else ("unknown", "0")
        if ip in self.options.trusted_proxies:
            forwarded_for = request.headers.get("X-Forwarded-For", "")
            if forwarded_for:
                ip = forwarded_for.rsplit(",", 1)[-1].strip() or ip
        is_secure = self.is_https(request) or self.is_local_browser(request)
        return f"{ip}:{port}", is_secure

    def is_https(self, request: web.Request) -> bool:
        """Whether the client's connection is encrypted: TLS on our HTTPS port, or at a
        trusted proxy that says so (``X-Forwarded-Proto: https``, or ``consider_secure``)."""
        if request.secure or self.options.consider_secure:
            return True
        peername = request.transport.get_extra_info("peername") if request.transport else None
        return (
            peername is not None
            and str(peername[0]) in self.options.trusted_proxies
            and request.headers.get("X-Forwarded-Proto", "").lower() == "https"
        )

    def is_local_browser(self, request: web.Request) -> bool:
        """A client on this machine connected straight to a loopback address (no proxy
        headers), with ``consider_loopback_secure`` on: nothing it sends crosses a network."""
        if not self.options.consider_loopback_secure:
            return False
        if any(name in request.headers for name in PROXY_HEADERS):
            return False
        peername = request.transport.get_extra_info("peername") if request.transport else None
        if not peername:
            return False
        try:
            address = ipaddress.ip_address(str(peername[0]).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback

    def _host(self, request: web.Request) -> str:
        """The host (and port) the client asked for, as a trusted proxy reports it."""
        peername = request.transport.get_extra_info("peername") if request.transport else None
        if peername and str(peername[0]) in self.options.trusted_proxies:
            return request.headers.get("X-Forwarded-Host", request.host)
        return request.host

    def _origin_allowed(self, origin: str, request: web.Request) -> bool:
        """``cors_origins`` lists it, or it is this server's own (the /chat page)."""
        allowed = self.options.cors_origins
        if "*" in allowed or origin in allowed:
            return True
        scheme = "https" if self.is_https(request) else "http"
        return origin == f"{scheme}://{self._host(request)}"

    # ------------------------------------------------------------------ middleware
    @web.middleware
    async def _cors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """CORS for browser clients on other origins (BOSH and host-meta; WebSocket
        handshakes from disallowed origins are refused)."""
        origin = request.headers.get("Origin")
        response = await handler(request)
        if (
            origin
            and self.options.cors_origins
            and self._origin_allowed(origin, request)
            and not isinstance(response, web.WebSocketResponse)
            and not response.prepared
        ):
            everyone = "*" in self.options.cors_origins
            response.headers["Access-Control-Allow-Origin"] = "*" if everyone else origin
            if not everyone:
                response.headers["Vary"] = "Origin"
        return response

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "86400",
            },
        )

    # ------------------------------------------------------------------ endpoints
    async def bosh_post(self, request: web.Request) -> web.Response:
        peer, is_secure = self.client(request)
        return await self.bosh.handle(request, peer=peer, is_secure=is_secure)

    async def bosh_get(self, request: web.Request) -> web.Response:
        return web.Response(
            text="Salon's BOSH endpoint (XEP-0124, XEP-0206): POST <body/> requests here.\n"
        )

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin and self.options.cors_origins and not self._origin_allowed(origin, request):
            return web.Response(status=403, text="This origin may not connect.\n")
        peer, is_secure = self.client(request)
        return await serve_websocket(self.server, request, peer=peer, is_secure=is_secure)

    async def host_meta(self, request: web.Request) -> web.Response:
        """XEP-0156 §3: where BOSH and WebSocket are, as XRD or JSON."""
        bosh, websocket = self.endpoints(request)
        if request.path.endswith(".json"):
            links = [{"rel": REL_BOSH, "href": bosh}, {"rel": REL_WEBSOCKET, "href": websocket}]
            return web.json_response({"links": links})
        xrd = Element("XRD", NS_XRD)
        xrd.add("Link", NS_XRD, {"rel": REL_BOSH, "href": bosh})
        xrd.add("Link", NS_XRD, {"rel": REL_WEBSOCKET, "href": websocket})
        data = b"<?xml version='1.0' encoding='utf-8'?>\n" + serialize(xrd)
        return web.Response(body=data, content_type="application/xrd+xml", charset="utf-8")

    def endpoints(self, request: web.Request) -> tuple[str, str]:
        """Absolute BOSH and WebSocket URLs: ``public_url`` when set, else this request's
        host, preferring the HTTPS port when the request came in plain."""
        o = self.options
        base = o.public_url
        if not base:
            host = self._host(request)
            if self.is_https(request):
                base = f"https://{host}"
            elif "https" in self.server.listeners:
                hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
                base = f"https://{hostname}:{self.server.port('https')}"
            else:
                base = f"http://{host}"
        ws_base = "ws" + base.removeprefix("http")
        return base + o.bosh_path, ws_base + o.websocket_path

    # ------------------------------------------------------------------ module routes
    def _module_route(self, path: str) -> HttpRoute | None:
        best: HttpRoute | None = None
        for host in self.server.core.hosts.values():
            for route in host.items.get(HTTP_ROUTE):
                if path.startswith(route.prefix) and (
                    best is None or len(route.prefix) > len(best.prefix)
                ):
                    best = route
        return best

    async def module_route(self, request: web.Request) -> web.StreamResponse:
        """A path a module serves: translate to and from its aiohttp-free handler, streaming
        the request and response bodies."""
        raw_path = request.rel_url.raw_path
        route = self._module_route(raw_path)
        if route is None:
            raise web.HTTPNotFound()
        peer, is_secure = self.client(request)
        req = HttpRequest(
            method=request.method.upper(),
            path=request.path,
            subpath=raw_path[len(route.prefix) :],
            headers={key.lower(): value for key, value in request.headers.items()},
            query=dict(request.query),
            body=request.content.iter_chunked(65536),
            content_length=request.content_length,
            remote=peer,
            is_secure=is_secure,
        )
        resp = await route.handler(req)
        if isinstance(resp.body, bytes) and request.method != "HEAD":
            return web.Response(status=resp.status, headers=resp.headers, body=resp.body)
        stream = web.StreamResponse(status=resp.status, headers=resp.headers)
        await stream.prepare(request)
        body = resp.body
        try:
            if request.method != "HEAD" and not isinstance(body, bytes):
                async for chunk in body:
                    await stream.write(chunk)
        except ConnectionError:
            return stream  # the client stopped reading (a download cancelled)
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()  # a file stays open no longer than the client does
        await stream.write_eof()
        return stream

    async def chat_redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(self.options.chat_path + "/")

    async def chat(self, request: web.Request) -> web.Response:
        o = self.options
        domain = self.page_domain(request)
        if self.server.settings.c2s.require_encryption and not self.client(request)[1]:
            # The page could load but not log in (no SASL mechanism in the clear).
            if "https" in self.server.listeners:
                raise web.HTTPFound(self._https_url(request))
            text = insecure_page(domain=domain)
            return web.Response(text=text, content_type="text/html")
        if (self.client_dir / "converse.min.js").is_file():
            text = chat_page(domain=domain, bosh_path=o.bosh_path, websocket_path=o.websocket_path)
        else:
            text = missing_page(
                domain=domain,
                folder=str(self.client_dir),
                bosh_path=o.bosh_path,
                websocket_path=o.websocket_path,
            )
        return web.Response(text=text, content_type="text/html")

    def _https_url(self, request: web.Request) -> str:
        """This request's URL on the HTTPS port."""
        host = self._host(request)
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return str(
            request.url.with_scheme("https")
            .with_host(hostname.strip("[]"))
            .with_port(self.server.port("https"))
        )

    def page_domain(self, request: web.Request) -> str:
        """The hosted domain the page logs in to: the request's host name when hosted."""
        hostname = (request.url.host or "").lower().rstrip(".")
        if hostname in self.server.core.hosts:
            return hostname
        return self.server.c2s_policy.default_host
