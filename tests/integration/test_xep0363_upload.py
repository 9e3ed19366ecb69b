"""XEP-0363 HTTP File Upload against the real server: slots over XMPP (slixmpp), PUT and GET
with aiohttp over real sockets on both web ports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
import slixmpp
import trustme

from salon.app import App
from salon.config import settings_from_dict
from salon.core.clock import ManualClock
from tests.integration.harness import (
    DOMAINS,
    RunningServer,
    SlixClient,
    connect_slixmpp,
    issue_host_certs,
    server_settings,
    stanza_error_condition,
)

NS_UPLOAD = "urn:xmpp:http:upload:0"
SERVICE = "upload.localhost"
TIMEOUT = 5.0
Factory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[Factory]:
    """Start a server with ``[modules.upload]`` options and, optionally, a ManualClock."""
    apps: list[App] = []

    async def make(clock: ManualClock | None = None, **options: Any) -> RunningServer:
        data_dir = tmp_path / f"server{len(apps)}"
        data_dir.mkdir()
        data = server_settings(data_dir, issue_host_certs(ca, data_dir, DOMAINS))
        data["modules"] = {"upload": options}
        app = App(settings_from_dict(data), clock=clock)
        await app.start()
        apps.append(app)
        ca_path = data_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        return RunningServer(app, ca, ca_path, data_dir)

    yield make
    for app in apps:
        await app.stop()


@pytest.fixture
async def http(srv: RunningServer) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=srv.client_ssl_context())
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


@pytest.fixture
async def srv(start: Factory) -> RunningServer:
    return await start(max_file_size=1000, quota=3000)


async def login(srv: RunningServer, domain: str = "localhost") -> SlixClient:
    return await connect_slixmpp(srv, await srv.add_user(domain=domain))


def iq(client: SlixClient, to: str, payload: ET.Element) -> Any:
    stanza = client.xmpp.make_iq_get(ito=to)
    stanza.xml.append(payload)
    return stanza


def slot_request(filename: str, size: int, content_type: str | None = None) -> ET.Element:
    attrs = {"filename": filename, "size": str(size)}
    if content_type is not None:
        attrs["content-type"] = content_type
    return ET.Element(f"{{{NS_UPLOAD}}}request", attrs)


async def get_slot(
    client: SlixClient, filename: str, size: int, content_type: str | None = None
) -> tuple[str, str]:
    result = await iq(client, SERVICE, slot_request(filename, size, content_type)).send(
        timeout=TIMEOUT
    )
    slot = result.xml.find(f"{{{NS_UPLOAD}}}slot")
    assert slot is not None, result
    put = slot.find(f"{{{NS_UPLOAD}}}put")
    get = slot.find(f"{{{NS_UPLOAD}}}get")
    assert put is not None and get is not None
    return put.get("url", ""), get.get("url", "")


async def slot_error(client: SlixClient, request: ET.Element) -> ET.Element:
    with pytest.raises(slixmpp.exceptions.IqError) as info:
        await iq(client, SERVICE, request).send(timeout=TIMEOUT)
    error = info.value.iq.xml.find("{jabber:client}error")
    assert error is not None
    return error


def on_http_port(srv: RunningServer, url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("http", f"127.0.0.1:{srv.http_port}", parts.path, parts.query, ""))


# ---------------------------------------------------------------------- discovery
async def test_service_is_discoverable_with_max_file_size(srv: RunningServer) -> None:
    client = await login(srv)
    try:
        items = await iq(
            client, "localhost", ET.Element("{http://jabber.org/protocol/disco#items}query")
        ).send(timeout=TIMEOUT)
        assert SERVICE in [i.get("jid") for i in items.xml.iter() if i.tag.endswith("}item")]
        info = await iq(
            client, SERVICE, ET.Element("{http://jabber.org/protocol/disco#info}query")
        ).send(timeout=TIMEOUT)
        query = info.xml.find("{http://jabber.org/protocol/disco#info}query")
        assert query is not None
        identities = [
            (i.get("category"), i.get("type")) for i in query if i.tag.endswith("identity")
        ]
        assert ("store", "file") in identities
        features = [f.get("var") for f in query if f.tag.endswith("feature")]
        assert NS_UPLOAD in features
        fields = {f.get("var"): [v.text for v in f] for f in query.iter("{jabber:x:data}field")}
        assert fields["FORM_TYPE"] == [NS_UPLOAD]
        assert fields["max-file-size"] == ["1000"]
    finally:
        await client.disconnect()


# ---------------------------------------------------------------------- round trip
async def test_upload_then_download_on_both_ports(
    srv: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await login(srv)
    data = bytes(range(256)) * 3
    try:
        put, get = await get_slot(client, "photo of us.png", len(data), "image/png")
        assert put.startswith(f"https://localhost:{srv.https_port}/")
        assert get.startswith(f"https://localhost:{srv.https_port}/")
        async with http.put(put, data=data, headers={"Content-Type": "image/png"}) as resp:
            assert resp.status == 201
        for url in (get, on_http_port(srv, get)):
            async with http.get(url, headers={"Origin": "https://elsewhere.example"}) as resp:
                assert resp.status == 200
                assert await resp.read() == data
                assert resp.headers["Content-Type"] == "image/png"
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert resp.headers["Content-Disposition"].startswith("inline;")
                assert "photo%20of%20us.png" in resp.headers["Content-Disposition"]
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
        # The upload again: the slot is used.
        async with http.put(put, data=data, headers={"Content-Type": "image/png"}) as resp:
            assert resp.status == 409
    finally:
        await client.disconnect()


async def test_html_is_served_as_attachment(
    srv: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await login(srv)
    data = b"<script>alert(1)</script>"
    try:
        put, get = await get_slot(client, "x.html", len(data), "text/html")
        async with http.put(put, data=data, headers={"Content-Type": "text/html"}) as resp:
            assert resp.status == 201
        async with http.get(get) as resp:
            assert resp.headers["Content-Disposition"].startswith("attachment;")
            assert "sandbox" in resp.headers["Content-Security-Policy"]
    finally:
        await client.disconnect()


async def test_head_range_and_preflight(srv: RunningServer, http: aiohttp.ClientSession) -> None:
    client = await login(srv)
    data = b"0123456789" * 50
    try:
        put, get = await get_slot(client, "digits.txt", len(data), "text/plain")
        async with http.put(put, data=data, headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 201
        async with http.head(get) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == "500"
            assert resp.headers["Accept-Ranges"] == "bytes"
            assert await resp.read() == b""
        async with http.get(get, headers={"Range": "bytes=10-19"}) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == "bytes 10-19/500"
            assert await resp.read() == data[10:20]
        async with http.get(get, headers={"Range": "bytes=-5"}) as resp:
            assert resp.status == 206
            assert await resp.read() == data[-5:]
        async with http.get(get, headers={"Range": "bytes=495-"}) as resp:
            assert await resp.read() == data[495:]
        async with http.get(get, headers={"Range": "bytes=500-"}) as resp:
            assert resp.status == 416
            assert resp.headers["Content-Range"] == "bytes */500"
        async with http.options(
            put,
            headers={"Origin": "https://web.example", "Access-Control-Request-Method": "PUT"},
        ) as resp:
            assert resp.status == 204
            assert "PUT" in resp.headers["Access-Control-Allow-Methods"]
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        await client.disconnect()


# ---------------------------------------------------------------------- refused PUTs
async def test_put_that_does_not_match_the_slot_is_refused(
    srv: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await login(srv)
    data = b"a" * 100
    try:
        put, get = await get_slot(client, "a.bin", len(data), "application/octet-stream")
        ctype = {"Content-Type": "application/octet-stream"}
        base, _, query = put.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&"))
        tampered_mac = params["token"][:-1] + ("0" if params["token"][-1] != "0" else "1")
        later = str(int(params["expires"]) + 3600)
        cases = [
            (f"{base}?expires={params['expires']}&token={tampered_mac}", data, ctype, 403),
            (f"{base}?expires={later}&token={params['token']}", data, ctype, 403),
            (base, data, ctype, 403),  # no token at all
            (put.replace("/a.bin?", "/b.bin?"), data, ctype, 403),  # another name
            (put, data + b"b", ctype, 413),  # bigger than the slot
            (put, data[:-1], ctype, 400),  # smaller than the slot
            (put, data, {"Content-Type": "text/html"}, 400),  # another type
        ]
        for url, body, headers, status in cases:
            async with http.put(url, data=body, headers=headers) as resp:
                assert resp.status == status, (url, len(body), headers, resp.status)
        async with http.get(get) as resp:
            assert resp.status == 404  # nothing was stored
        async with http.put(put, data=data, headers=ctype) as resp:
            assert resp.status == 201  # the right PUT still works
    finally:
        await client.disconnect()


# ---------------------------------------------------------------------- slot errors
async def test_too_large_gets_file_too_large_with_max_file_size(srv: RunningServer) -> None:
    client = await login(srv)
    try:
        error = await slot_error(client, slot_request("big.iso", 1001))
        assert error.get("type") == "modify"
        assert error.find("{urn:ietf:params:xml:ns:xmpp-stanzas}not-acceptable") is not None
        max_size = error.find(f"{{{NS_UPLOAD}}}file-too-large/{{{NS_UPLOAD}}}max-file-size")
        assert max_size is not None and max_size.text == "1000"
    finally:
        await client.disconnect()


async def test_quota_gets_resource_constraint_wait(
    srv: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await login(srv)
    other = await login(srv)
    try:
        for n in range(3):  # three slots of 1000 bytes: the quota (open slots count too)
            await get_slot(client, f"f{n}.bin", 1000)
        error = await slot_error(client, slot_request("one-more.bin", 1))
        assert error.get("type") == "wait"
        assert stanza_error_condition(_wrap(error)) == "resource-constraint"
        await get_slot(other, "mine.bin", 1000)  # the quota is per user
    finally:
        await client.disconnect()
        await other.disconnect()


def _wrap(error: ET.Element) -> ET.Element:
    parent = ET.Element("iq")
    parent.append(error)
    return parent


@pytest.mark.parametrize("filename", ["../../salon.db", "a/b", "..", "", "x\x7fy"])
async def test_bad_filename_gets_bad_request(srv: RunningServer, filename: str) -> None:
    client = await login(srv)
    try:
        error = await slot_error(client, slot_request(filename, 10))
        assert stanza_error_condition(_wrap(error)) == "bad-request"
    finally:
        await client.disconnect()


async def test_users_of_other_domains_get_not_allowed(srv: RunningServer) -> None:
    client = await login(srv, domain="example.test")
    try:
        error = await slot_error(client, slot_request("a.txt", 10))
        assert stanza_error_condition(_wrap(error)) == "not-allowed"
    finally:
        await client.disconnect()


async def test_path_traversal_attempts_get_404(
    srv: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await login(srv)
    data = b"secret-ish"
    try:
        put, get = await get_slot(client, "note.txt", len(data), "text/plain")
        async with http.put(put, data=data, headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 201
        origin = f"https://localhost:{srv.https_port}"
        slot_dir = get.rsplit("/", 1)[0]
        attempts = [
            f"{origin}/upload/{SERVICE}/..%2F..%2Fsalon.db",
            f"{origin}/upload/{SERVICE}/%2e%2e/%2e%2e/salon.db",
            f"{slot_dir}/..%2Fmeta.json",
            f"{slot_dir}/meta.json",
            f"{slot_dir}/data",
            f"{slot_dir}/%2e%2e%2f%2e%2e%2f%2e%2e%2fsalon.db",
            f"{origin}/upload/{SERVICE}/",
        ]
        for url in attempts:
            async with http.get(url) as resp:
                assert resp.status == 404, url
                assert b"secret-ish" not in await resp.read()
    finally:
        await client.disconnect()


# ---------------------------------------------------------------------- time
async def test_slot_and_file_expire_on_the_clock(start: Factory) -> None:
    clock = ManualClock()
    srv = await start(clock=clock, slot_lifetime=60, expire_after=3600)
    client = await login(srv)
    connector = aiohttp.TCPConnector(ssl=srv.client_ssl_context())
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            stale_put, _ = await get_slot(client, "late.txt", 4, "text/plain")
            put, get = await get_slot(client, "kept.txt", 4, "text/plain")
            headers = {"Content-Type": "text/plain"}
            async with http.put(put, data=b"kept", headers=headers) as resp:
                assert resp.status == 201
            await clock.advance(61)
            async with http.put(stale_put, data=b"late", headers=headers) as resp:
                assert resp.status == 403  # the PUT URL expired
            async with http.get(get) as resp:
                assert resp.status == 200  # the file has not
            folders = list((srv.data_dir / "upload" / SERVICE).iterdir())
            assert len(folders) == 1
            await clock.advance(3600)
            async with http.get(get) as resp:
                assert resp.status == 404
            assert not (folders[0] / "data").exists()  # deleted from disk
    finally:
        await client.disconnect()


def quota_retry_stamp(error: ET.Element) -> str | None:
    """The XEP-0363 §4 'quota reached' error's retry stamp, after checking the rest of it."""
    assert error.get("type") == "wait"
    assert stanza_error_condition(_wrap(error)) == "resource-constraint"
    retry = error.find(f"{{{NS_UPLOAD}}}retry")
    assert retry is not None
    return retry.get("stamp")


async def test_daily_quota_resets_by_the_clock(start: Factory) -> None:
    clock = ManualClock()  # 2023-11-14T22:13:20Z
    srv = await start(
        clock=clock, max_file_size=1000, daily_quota=2500, slot_lifetime=60, expire_after=259200
    )
    client = await login(srv)
    other = await login(srv)
    connector = aiohttp.TCPConnector(ssl=srv.client_ssl_context())
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            put, get = await get_slot(client, "kept.bin", 1000)
            headers = {"Content-Type": "application/octet-stream"}
            async with http.put(put, data=b"k" * 1000, headers=headers) as resp:
                assert resp.status == 201
            await get_slot(client, "unused.bin", 1000)
            await get_slot(client, "last.bin", 500)  # 2500 bytes granted today: the quota
            error = await slot_error(client, slot_request("one-more.bin", 1))
            assert quota_retry_stamp(error) == "2023-11-15T00:00:00Z"  # the next midnight
            await get_slot(other, "mine.bin", 1000)  # the daily quota is per user

            await clock.advance(61)  # the two unused slots lapse: their bytes come back
            await get_slot(client, "again.bin", 1000)
            error = await slot_error(client, slot_request("one-more.bin", 501))
            assert quota_retry_stamp(error) == "2023-11-15T00:00:00Z"

            await clock.advance(6400)  # past midnight: a new day, a new quota
            for n in range(2):
                await get_slot(client, f"day2-{n}.bin", 1000)
            await get_slot(client, "day2-last.bin", 500)
            error = await slot_error(client, slot_request("one-more.bin", 1))
            assert quota_retry_stamp(error) == "2023-11-16T00:00:00Z"
            async with http.get(get) as resp:  # yesterday's file is still served
                assert resp.status == 200
                assert await resp.read() == b"k" * 1000
    finally:
        await client.disconnect()
        await other.disconnect()


async def test_quota_retry_stamp_names_when_bytes_come_back(start: Factory) -> None:
    clock = ManualClock()  # 2023-11-14T22:13:20Z
    srv = await start(clock=clock, max_file_size=1000, quota=2000, daily_quota=0, slot_lifetime=60)
    client = await login(srv)
    connector = aiohttp.TCPConnector(ssl=srv.client_ssl_context())
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            put, _ = await get_slot(client, "kept.bin", 1000)
            headers = {"Content-Type": "application/octet-stream"}
            async with http.put(put, data=b"k" * 1000, headers=headers) as resp:
                assert resp.status == 201  # kept a week
            await clock.advance(10)
            await get_slot(client, "unused.bin", 1000)  # its PUT URL lapses 60 s from now
            error = await slot_error(client, slot_request("one-more.bin", 1))
            assert quota_retry_stamp(error) == "2023-11-14T22:14:31Z"  # the slot lapses
            await clock.advance(61)
            await get_slot(client, "now-it-fits.bin", 1000)
    finally:
        await client.disconnect()
