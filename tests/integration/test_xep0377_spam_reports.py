"""XEP-0377 Spam Reporting on a real server: a report rides a XEP-0191 block, the block is
done as without it, the report is logged on one line and counted in /metrics."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

import pytest
from slixmpp.exceptions import IqError

from tests.integration.harness import RunningServer, SlixClient, connect_slixmpp, q
from tests.integration.test_metrics import scrape, value

NS_BLOCKING = "urn:xmpp:blocking"
NS_REPORTING = "urn:xmpp:reporting:1"
NS_SID = "urn:xmpp:sid:0"
SPAM = "urn:xmpp:reporting:spam"
ABUSE = "urn:xmpp:reporting:abuse"
MODULES = ["disco", "ping", "presence", "message", "blocking", "spam_reports"]
Factory = Callable[..., Awaitable[RunningServer]]
LOGGER = "salon.modules.spam_reports"


@pytest.fixture
async def server(server_factory: Factory) -> RunningServer:
    return await server_factory(modules=MODULES)


async def connect(srv: RunningServer, jid: str) -> SlixClient:
    client = await connect_slixmpp(srv, jid)
    client.xmpp.register_plugin("xep_0191")
    return client


async def block_with_report(
    client: SlixClient, jid: str, reason: str | None, text: str | None = None, *extra: str
) -> None:
    iq = client.xmpp.make_iq_set()
    block = ET.SubElement(iq.xml, q(NS_BLOCKING, "block"))
    item = ET.SubElement(block, q(NS_BLOCKING, "item"), {"jid": jid})
    report = ET.SubElement(
        item, q(NS_REPORTING, "report"), {} if reason is None else {"reason": reason}
    )
    for sid in extra:
        ET.SubElement(report, q(NS_SID, "stanza-id"), {"by": jid, "id": sid})
    if text is not None:
        el = ET.SubElement(report, q(NS_REPORTING, "text"))
        el.text = text
    await iq.send(timeout=5)


async def blocked(client: SlixClient) -> set[str]:
    return {str(j) for j in await client.xmpp.plugin["xep_0191"].get_blocked_jids(timeout=5)}


def report_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and "reason=" in r.getMessage()
    ]


async def test_disco_advertises_reporting_and_reasons(server: RunningServer) -> None:
    await server.add_user("alice")
    alice = await connect(server, "alice@localhost")
    alice.xmpp.register_plugin("xep_0030")
    info = await alice.xmpp.plugin["xep_0030"].get_info(jid="localhost", timeout=5)
    features = set(info["disco_info"]["features"])
    assert {NS_REPORTING, SPAM, ABUSE, NS_BLOCKING} <= features


async def test_report_with_block_is_blocked_logged_and_counted(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    await server.add_user("alice")
    alice = await connect(server, "alice@localhost")
    _, before = await scrape(server)
    start = value(before, "salon_limit_hits_total", limit="spam_reports")

    await block_with_report(alice, "spammer@example.net", SPAM, "buy cheap watches", "m-1", "m-2")
    assert "spammer@example.net" in await blocked(alice)
    await block_with_report(alice, "troll@example.org", ABUSE)
    assert {"spammer@example.net", "troll@example.org"} <= await blocked(alice)

    lines = report_lines(caplog)
    assert len(lines) == 2, lines
    first, second = lines
    assert "\n" not in first
    assert "reporter=alice@localhost" in first and "reported=spammer@example.net" in first
    assert f"reason={SPAM}" in first and 'text="buy cheap watches"' in first
    assert "stanza_ids=m-1,m-2" in first
    assert "reported=troll@example.org" in second and f"reason={ABUSE}" in second

    _, after = await scrape(server)
    assert value(after, "salon_limit_hits_total", limit="spam_reports") == start + 2


async def test_report_of_already_blocked_jid_still_counts(server: RunningServer) -> None:
    await server.add_user("alice")
    alice = await connect(server, "alice@localhost")
    metrics = server.server.core.metrics
    await alice.xmpp.plugin["xep_0191"].block(["spammer@example.net"], timeout=5)
    await block_with_report(alice, "spammer@example.net", SPAM)
    assert metrics.limits["spam_reports"] == 1
    assert await blocked(alice) == {"spammer@example.net"}


async def test_report_without_reason_blocks_but_is_not_counted(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    await server.add_user("alice")
    alice = await connect(server, "alice@localhost")
    await block_with_report(alice, "someone@example.net", None, "no reason given")
    assert "someone@example.net" in await blocked(alice)
    assert server.server.core.metrics.limits["spam_reports"] == 0
    assert report_lines(caplog) == []


async def test_bad_block_with_report_gets_the_block_error_and_no_count(
    server: RunningServer,
) -> None:
    """The report changes nothing about the block: an invalid JID is jid-malformed."""
    await server.add_user("alice")
    alice = await connect(server, "alice@localhost")
    with pytest.raises(IqError) as exc:
        await block_with_report(alice, "@@bad@@", SPAM)
    assert exc.value.condition == "jid-malformed"
    assert server.server.core.metrics.limits["spam_reports"] == 0
    assert await blocked(alice) == set()
