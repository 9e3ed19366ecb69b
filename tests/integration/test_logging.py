"""Structured logs on a live server: one line per record, and every line logged while the
server handles a connection (TCP, WebSocket, BOSH) carries that connection's id, also from
the core and modules; ``server.log_levels`` quiets one subsystem."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator

import pytest

from salon.logs import configure
from tests.integration.harness import NS_SASL, RawClient, RunningServer, q, until
from tests.integration.web_helpers import BoshClient, WsClient, http_session

Factory = Callable[..., Awaitable[RunningServer]]
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Salon's own log handler (``configure``, as ``salon serve`` sets it up) writing here:
    level info, salon.core.hosts at debug, the storage at warning."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    configure("info", {"salon.core.hosts": "debug", "salon.storage": "warning"}, "text")
    handler = next(h for h in root.handlers if getattr(h, "salon", False))
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    stream = handler.setStream(buffer)
    yield buffer
    handler.setStream(stream)
    configure("info", {}, "text")  # per-subsystem levels undone
    root.setLevel(level)
    if handler not in handlers:
        root.removeHandler(handler)


def records(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    parsed = []
    for line in lines:
        fields = {key: value for key, value in FIELD.findall(line)}
        assert {"ts", "level", "logger", "msg"} <= fields.keys(), line  # one record, one line
        fields["msg"] = json.loads(fields["msg"])
        parsed.append(fields)
    return parsed


def conn_of(lines: list[dict[str, str]], opening: str) -> str:
    """The id on the line that opened a connection (``opening`` is in its message)."""
    [line] = [r for r in lines if opening in r["msg"]]
    return line["conn"]


async def test_every_line_about_a_connection_carries_its_id(
    server_factory: Factory, log_output: io.StringIO
) -> None:
    srv = await server_factory(modules=["disco", "ping", "roster", "presence", "message"])
    alice = await srv.add_user()
    tcp = await RawClient.connect(srv)
    host, port = tcp.writer.get_extra_info("sockname")[:2]
    peer = f"{host}:{port}"
    await tcp.open()
    await tcp.starttls(srv)
    await tcp.open()
    failed = await tcp.auth_plain(alice, "wrong")
    assert failed.tag == q(NS_SASL, "failure")
    assert (await tcp.auth_plain(alice)).tag == q(NS_SASL, "success")
    await tcp.open()
    full = await tcp.bind("logs")
    await tcp.ping(iq_id="p1")
    async with http_session(srv) as http:
        ws = await WsClient.connect(http, "ws" + srv.http_url("/xmpp-websocket")[4:])
        ws_jid = await ws.login(await srv.add_user())
        bosh = BoshClient(http, srv.http_url("/http-bind"))
        bosh_jid = await bosh.login(await srv.add_user())
        await ws.ws.close()
        await bosh.request(type="terminate")
    await tcp.close()
    await until(lambda: not srv.server.connections, "every connection to end")
    lines = records(log_output.getvalue())

    tcp_id = conn_of(lines, f"connection from {peer}")
    ws_id = conn_of(lines, "WebSocket connection from")
    bosh_id = conn_of(lines, "BOSH session from")
    assert len({tcp_id, ws_id, bosh_id}) == 3
    assert tcp_id.startswith("c2s-") and ws_id.startswith("ws-") and bosh_id.startswith("bosh-")
    for mark, conn in ((full, tcp_id), (peer, tcp_id), (ws_jid, ws_id), (bosh_jid, bosh_id)):
        about = [r for r in lines if mark.split("/")[0] in r["msg"]]
        # the authentication, the binding, the end of the session (logged by the core)...
        assert len(about) >= 2, mark
        for record in about:
            assert record.get("conn") == conn, record
    tcp_lines = [r for r in lines if r.get("conn") == tcp_id]
    assert any("failed to authenticate" in r["msg"] for r in tcp_lines)
    assert any(r["logger"] == "salon.core.server" for r in tcp_lines)
    assert len(tcp_lines) >= 4
    # every line of the network side and the core about a client is tagged
    for record in lines:
        if record["logger"].startswith(("salon.net.shell", "salon.net.c2s", "salon.net.bosh")):
            assert "conn" in record, record
    # server.log_levels: salon.core.hosts tells at debug which modules it loads; the
    # storage's migrations (info) are quiet at warning
    loaded = [r for r in lines if r["logger"] == "salon.core.hosts"]
    assert loaded and {r["level"] for r in loaded} == {"debug"}
    assert not [r for r in lines if r["logger"].startswith("salon.storage")]
    assert not [r for r in lines if r["level"] == "debug" and r["logger"] != "salon.core.hosts"]
