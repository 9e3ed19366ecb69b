"""The Prometheus endpoint: scraped over HTTP, its numbers move with what clients do."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Awaitable, Callable

import salon
from tests.integration.harness import PASSWORD, RawClient, RunningServer, connect_slixmpp
from tests.integration.message_helpers import available
from tests.integration.web_helpers import WsClient, http_session

ServerFactory = Callable[..., Awaitable[RunningServer]]


async def scrape(srv: RunningServer, path: str = "/metrics") -> tuple[int, str]:
    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(srv.http_url(path, secure=False), timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    return await asyncio.to_thread(get)


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` of an exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return 0.0


async def test_metrics_move_with_traffic(server: RunningServer) -> None:
    status, before = await scrape(server)
    assert status == 200
    assert value(before, "salon_build_info", version=salon.__version__) == 1.0
    assert value(before, "salon_uptime_seconds") >= 0.0
    assert value(before, "salon_sessions", transport="c2s") == 0.0

    alice = await server.add_user()
    bob = await server.add_user()
    a = await connect_slixmpp(server, alice, mechanism="SCRAM-SHA-1")
    b = await connect_slixmpp(server, bob, mechanism="SCRAM-SHA-1")
    await available(b)
    a.xmpp.send_message(mto=bob, mbody="hello", mtype="chat")
    await b.expect(lambda s: s.name == "message" and s["body"] == "hello")
    # a wrong password: one failure for PLAIN
    raw = await RawClient.connect(server)
    await raw.open()
    await raw.starttls(server)
    await raw.open()
    failure = await raw.auth_plain(alice, PASSWORD + "x")
    assert failure.tag.endswith("failure")
    # a message to an offline account is held
    carol = await server.add_user()
    a.xmpp.send_message(mto=carol, mbody="later", mtype="chat")

    for _ in range(50):
        _, after = await scrape(server)
        if value(after, "salon_offline_messages") >= 1:
            break
        await asyncio.sleep(0.05)
    assert value(after, "salon_sessions", transport="c2s") == 2.0
    assert value(after, "salon_stanzas_in_total", kind="message") >= 2
    assert value(after, "salon_stanzas_out_total", kind="message") >= 1
    assert value(after, "salon_auth_total", mechanism="SCRAM-SHA-1", result="success") == 2
    assert value(after, "salon_auth_total", mechanism="PLAIN", result="failure") == 1
    assert value(after, "salon_offline_messages") == 1
    assert value(after, "salon_storage_latency_seconds_count", operation="select") > value(
        before, "salon_storage_latency_seconds_count", operation="select"
    )
    assert value(after, "salon_event_loop_lag_seconds_count") >= 0
    assert 'salon_queue_length{queue="inbound_stanzas"}' in after
    assert "salon_limit_hits_total" in after
    await a.disconnect()
    await b.disconnect()
    raw.writer.close()


async def test_metrics_refused_outside_allowed_networks(server_factory: ServerFactory) -> None:
    srv = await server_factory(http={"metrics_allow": ["10.0.0.0/8"]})
    status, body = await scrape(srv)
    assert status == 403
    assert "salon_" not in body


async def test_metrics_path_configurable_and_can_be_off(server_factory: ServerFactory) -> None:
    srv = await server_factory(http={"metrics_path": "/internal/prom"})
    status, body = await scrape(srv, "/internal/prom")
    assert status == 200 and "salon_uptime_seconds" in body
    off = await server_factory(http={"metrics_enabled": False})
    status, _ = await scrape(off)
    assert status == 404


async def test_metrics_count_websocket_sessions(server: RunningServer) -> None:
    user = await server.add_user()
    async with http_session(server) as http:
        ws = await WsClient.connect(http, server.http_url("/xmpp-websocket"))
        await ws.login(user)
        for _ in range(50):
            _, text = await scrape(server)
            if value(text, "salon_sessions", transport="websocket") == 1.0:
                break
            await asyncio.sleep(0.05)
        assert value(text, "salon_sessions", transport="websocket") == 1.0
        assert value(text, "salon_sessions", transport="c2s") == 0.0
        assert value(text, "salon_auth_total", mechanism="PLAIN", result="success") == 1
        await ws.close()
