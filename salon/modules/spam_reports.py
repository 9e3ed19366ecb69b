"""XEP-0377: Spam Reporting (Blocking Command Reports), received with the block.

The blocking module does the block exactly as without a report (§"Submitting Reports as Part
of Blocking": the server MUST block the JID or return an error as it would with no report) and
then fires :class:`~salon.modules.blocking.BlockReported` for each item that carried one. This
module turns each into one log line (reporter, reported JID, reason, text, the reported
stanza-ids and opt-ins) on the ``salon.modules.spam_reports`` logger and counts it in the
``spam_reports`` limit metric (``salon_limit_hits_total{limit="spam_reports"}``).

A report without the required ``reason`` is not counted (the block stands); a reason this
server does not know is kept as sent (the reason registry is open). The report is not
forwarded anywhere: the ``report-origin`` and ``third-party`` opt-ins are logged only (the
text allows a server to ignore them).

Discovery: ``urn:xmpp:reporting:1`` on the server, with the two reasons the XEP defines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from salon.core.module import Module, ModuleOptions, Spec
from salon.jid import JID
from salon.modules.blocking import BlockReported
from salon.namespaces import NS_REPORTING, NS_SID
from salon.xml.element import Element

REASON_SPAM = "urn:xmpp:reporting:spam"
REASON_ABUSE = "urn:xmpp:reporting:abuse"
MAX_TEXT = 1000  # characters of the user's text kept in the log line
MAX_STANZA_IDS = 20  # stanza-ids kept in the log line


@dataclass(frozen=True, slots=True)
class SpamReport:
    """A parsed ``<report xmlns='urn:xmpp:reporting:1'/>``."""

    reason: str
    text: str | None = None
    stanza_ids: tuple[str, ...] = ()
    report_origin: bool = False
    third_party: bool = False


def parse_report(report: Element) -> SpamReport | None:
    """The report, or None when it has no ``reason`` (the XEP makes it required)."""
    reason = (report.get("reason") or "").strip()
    if not reason:
        return None
    texts = [t.text.strip() for t in report.find_all("text", NS_REPORTING) if t.text.strip()]
    ids = tuple(
        sid.get("id") or ""
        for sid in report.find_all("stanza-id", NS_SID)[:MAX_STANZA_IDS]
        if sid.get("id")
    )
    return SpamReport(
        reason=reason,
        text=" / ".join(texts)[:MAX_TEXT] if texts else None,
        stanza_ids=ids,
        report_origin=report.find("report-origin", NS_REPORTING) is not None,
        third_party=report.find("third-party", NS_REPORTING) is not None,
    )


def log_line(reporter: JID, reported: JID, report: SpamReport) -> str:
    """One line, key=value, values that may hold spaces JSON-quoted."""
    parts = [
        "spam report",
        f"reporter={reporter.bare}",
        f"reported={reported}",
        f"reason={report.reason}",
    ]
    if report.text is not None:
        parts.append("text=" + json.dumps(report.text, ensure_ascii=False))
    if report.stanza_ids:
        parts.append("stanza_ids=" + ",".join(report.stanza_ids))
    if report.report_origin:
        parts.append("report_origin=yes")
    if report.third_party:
        parts.append("third_party=yes")
    return " ".join(parts)


class SpamReports(Module[ModuleOptions]):
    name = "spam_reports"
    specs = (Spec("XEP-0377", "0.4.1", "reports logged and counted, not forwarded"),)
    depends = ("blocking",)

    def setup(self) -> None:
        self.add_feature(NS_REPORTING)
        self.add_feature(REASON_SPAM)
        self.add_feature(REASON_ABUSE)
        self.hook(BlockReported, self.reported)

    def reported(self, event: BlockReported) -> None:
        report = parse_report(event.report)
        if report is None:
            self.log.info(
                "spam report without a reason ignored reporter=%s reported=%s",
                event.reporter.bare,
                event.jid,
            )
            return
        self.host.metrics.limit_hit("spam_reports")
        self.log.warning("%s", log_line(event.reporter, event.jid, report))
