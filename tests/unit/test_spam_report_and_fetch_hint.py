"""Pure pieces: XEP-0377 report parsing and its log line; the Converse.js fetch command."""

from __future__ import annotations

from pathlib import Path

from salon.jid import JID
from salon.modules.spam_reports import SpamReport, log_line, parse_report
from salon.namespaces import NS_REPORTING, NS_SID
from salon.net.chat_page import CONVERSE_VERSION, fetch_command
from salon.xml.element import Element


def test_parse_full_report() -> None:
    report = Element("report", NS_REPORTING, {"reason": "urn:xmpp:reporting:spam"})
    report.add("stanza-id", NS_SID, {"by": "x@y", "id": "a"})
    report.add("text", NS_REPORTING, text="  cheap\\nwatches ")
    report.add("report-origin", NS_REPORTING)
    parsed = parse_report(report)
    assert parsed == SpamReport(
        "urn:xmpp:reporting:spam", "cheap\\nwatches", ("a",), report_origin=True
    )


def test_report_without_reason_is_none() -> None:
    assert parse_report(Element("report", NS_REPORTING)) is None


def test_log_line_is_one_line_and_quotes_text() -> None:
    report = SpamReport("urn:xmpp:reporting:abuse", 'he said "hi"\nthen left')
    line = log_line(JID.parse("alice@localhost/phone"), JID.parse("troll@example.org"), report)
    assert "\n" not in line
    assert line.startswith("spam report reporter=alice@localhost reported=troll@example.org ")
    assert 'text="he said \\"hi\\"\\nthen left"' in line


def test_fetch_command_for_the_default_layout() -> None:
    folder = Path("/srv/salon/web/node_modules/converse.js/dist")
    assert fetch_command(folder) == (
        f"npm install --prefix /srv/salon/web converse.js@{CONVERSE_VERSION}"
    )


def test_fetch_command_for_another_folder_copies_dist() -> None:
    command = fetch_command(Path("/opt/chat files"))
    assert command.startswith("npm install --prefix /opt/.converse-npm converse.js@")
    assert command.endswith(
        "cp -R /opt/.converse-npm/node_modules/converse.js/dist/. '/opt/chat files'/"
    )
