"""XEP-0313 queries, sans IO: the ``<query/>`` read into an :class:`ArchiveQuery`, the
result messages and the ``<fin/>`` built from an :class:`ArchivePage`.

Errors are the ones the XEP names: a malformed form or RSM set is ``bad-request``, a form
field we do not know is ``feature-not-implemented`` (§4.1.5). Unknown UIDs become
``item-not-found`` where the store reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import parse_jid
from salon.namespaces import (
    NS_CLIENT,
    NS_DATA_FORMS,
    NS_DELAY,
    NS_FORWARD,
    NS_MAM,
    NS_RSM,
    NS_XDATA_VALIDATE,
)
from salon.storage.interfaces import ArchiveItem, ArchivePage, ArchiveQuery
from salon.xml.dataforms import DataForm, Field, FormError, form_element, parse_form
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.rsm import RsmError, RsmResult, parse_rsm, rsm_element

__all__ = [
    "ParsedQuery",
    "QueryAnswer",
    "answer_page",
    "delay_stamp",
    "fin_element",
    "metadata_element",
    "parse_datetime",
    "parse_query",
    "query_form",
    "result_message",
]

_FIELDS = ("FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids")


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    queryid: str | None
    query: ArchiveQuery


def _bad(text: str) -> StanzaError:
    return StanzaError(StanzaErrorCondition.BAD_REQUEST, text)


def parse_datetime(text: str) -> datetime:
    """An XEP-0082 DateTime (with its mandatory time zone); bad-request otherwise."""
    value = text.strip()
    if "T" not in value:
        raise _bad(f"not an XEP-0082 DateTime: {text!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(f"not an XEP-0082 DateTime: {text!r}") from None
    if moment.tzinfo is None:
        raise _bad("an XEP-0082 DateTime needs a time zone")
    return moment


def parse_query(
    payload: Element, *, default_max: int, max_max: int, max_ids: int, with_count: bool
) -> ParsedQuery:
    """Read ``<query xmlns='urn:xmpp:mam:2'/>`` (XEP-0313 §4). Pages are limited to
    ``max_max`` items whatever the client asks; without RSM ``default_max`` apply."""
    queryid = payload.get("queryid")
    query = ArchiveQuery(with_count=with_count)
    form_el = payload.find("x", NS_DATA_FORMS)
    if form_el is not None:
        try:
            form = parse_form(form_el)
        except FormError as exc:
            raise _bad(str(exc)) from None
        query = _apply_form(query, form, max_ids)
    rsm_el = payload.find("set", NS_RSM)
    page_max = default_max
    if rsm_el is not None:
        try:
            rsm = parse_rsm(rsm_el)
        except RsmError as exc:
            raise _bad(str(exc)) from None
        if rsm.max is not None:
            page_max = rsm.max
        query = replace(query, after=rsm.after, before=rsm.before, index=rsm.index)
        if rsm.max == 0:
            query = replace(query, with_count=True)  # XEP-0059 §2.6: the count is asked for
    flip = payload.find("flip-page", NS_MAM) is not None
    return ParsedQuery(queryid, replace(query, max=min(page_max, max_max), flip=flip))


def _apply_form(query: ArchiveQuery, form: DataForm, max_ids: int) -> ArchiveQuery:
    if form.type != "submit":
        raise _bad("the query form must be of type submit")
    form_type = form.form_type
    if form_type is not None and form_type != NS_MAM:
        raise _bad(f"FORM_TYPE must be {NS_MAM}")
    for f in form.fields:
        if f.var is not None and f.var not in _FIELDS:
            raise StanzaError(
                StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED, f"unknown field {f.var!r}"
            )
    with_text = _single(form, "with")
    if with_text is not None:
        jid = parse_jid(with_text.strip())
        if jid is None:
            raise StanzaError(StanzaErrorCondition.JID_MALFORMED, "invalid 'with' JID")
        query = replace(query, with_jid=str(jid))
    start, end = _single(form, "start"), _single(form, "end")
    if start is not None:
        query = replace(query, start=parse_datetime(start))
    if end is not None:
        query = replace(query, end=parse_datetime(end))
    after_id, before_id = _single(form, "after-id"), _single(form, "before-id")
    if after_id is not None:
        query = replace(query, after_id=after_id.strip())
    if before_id is not None:
        query = replace(query, before_id=before_id.strip())
    ids_field = form.get("ids")
    if ids_field is not None:
        ids = tuple(dict.fromkeys(v.strip() for v in ids_field.values if v.strip()))
        if len(ids) > max_ids:
            raise StanzaError(
                StanzaErrorCondition.POLICY_VIOLATION, f"at most {max_ids} ids per query"
            )
        if ids:
            query = replace(query, ids=ids)
    return query


def _single(form: DataForm, var: str) -> str | None:
    f = form.get(var)
    if f is None or not f.values:
        return None
    if len(f.values) > 1:
        raise _bad(f"field {var!r} takes one value")
    return f.values[0] or None


def query_form() -> Element:
    """The answer to ``<iq type='get'><query xmlns='urn:xmpp:mam:2'/></iq>`` (§4.1.5)."""
    validate = Element("validate", NS_XDATA_VALIDATE, {"datatype": "xs:string"})
    validate.add("open")
    form = DataForm(
        "form",
        (
            Field("FORM_TYPE", "hidden", (NS_MAM,)),
            Field("with", "jid-single"),
            Field("start", "text-single"),
            Field("end", "text-single"),
            Field("before-id", "text-single"),
            Field("after-id", "text-single"),
            Field("ids", "list-multi", extra=(validate,)),
        ),
    )
    query = Element("query", NS_MAM)
    query.append(form_element(form))
    return query


def delay_stamp(moment: datetime) -> str:
    """XEP-0082 DateTime in UTC, with microseconds when there are any."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def result_message(
    archive_jid: str, to: str, queryid: str | None, item: ArchiveItem, stanza: Element
) -> Element:
    """One result (§4.2): the archived stanza forwarded (XEP-0297) with its delay stamp."""
    message = Element("message", NS_CLIENT, {"from": archive_jid, "to": to})
    attrs = {"id": item.id}
    if queryid is not None:
        attrs["queryid"] = queryid
    forwarded = message.add("result", NS_MAM, attrs).add("forwarded", NS_FORWARD)
    forwarded.add("delay", NS_DELAY, {"stamp": delay_stamp(item.timestamp)})
    forwarded.append(stanza)
    return message


def fin_element(page: ArchivePage) -> Element:
    """``<fin/>`` (§4.3): complete='true' on the last page in the direction of paging, and
    the RSM set (first/last of the page, index and count when known)."""
    fin = Element("fin", NS_MAM)
    if page.complete:
        fin.set("complete", "true")
    fin.append(rsm_element(RsmResult(page.first, page.last, page.index, page.count)))
    return fin


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    """What a query page sends: the result messages, then the iq result's ``<fin/>``."""

    results: list[Element]
    fin: Element
    unreadable: tuple[str, ...]
    """UIDs of archived items that no longer parse (left out, worth a log line)."""


def answer_page(archive_jid: str, to: str, queryid: str | None, page: ArchivePage) -> QueryAnswer:
    """The answer to one page of any archive, a user's or a room's (§4.2, §4.3)."""
    results: list[Element] = []
    unreadable: list[str] = []
    for item in page.items:
        try:
            stanza = parse_element(item.stanza)
        except ValueError:
            unreadable.append(item.id)
            continue
        results.append(result_message(archive_jid, to, queryid, item, stanza))
    return QueryAnswer(results, fin_element(page), tuple(unreadable))


def metadata_element(oldest: ArchiveItem | None, newest: ArchiveItem | None) -> Element:
    """Archive metadata (§6): the first and the last item, if any."""
    metadata = Element("metadata", NS_MAM)
    if oldest is not None and newest is not None:
        for tag, item in (("start", oldest), ("end", newest)):
            stamp = item.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            metadata.add(tag, attrs={"id": item.id, "timestamp": stamp})
    return metadata
