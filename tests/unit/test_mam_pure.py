"""The sans-IO parts of the archive: data forms, RSM, MAM query parsing, prefs decisions and
what is archived."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from salon.errors import StanzaError
from salon.jid import JID
from salon.modules.mam import is_archivable, strip_stanza_ids
from salon.modules.mam.prefs import Prefs, decide, dumps, loads, parse_prefs, prefs_element
from salon.modules.mam.query import delay_stamp, fin_element, parse_datetime, parse_query
from salon.namespaces import NS_MAM, NS_SID
from salon.storage.interfaces import ArchivePage
from salon.xml.dataforms import DataForm, Field, FormError, form_element, parse_boolean, parse_form
from salon.xml.fragment import parse_element
from salon.xml.rsm import RsmError, RsmRequest, RsmResult, parse_rsm, rsm_element
from salon.xml.serializer import serialize_str

XDATA = "jabber:x:data"
RSM = "http://jabber.org/protocol/rsm"


# ---------------------------------------------------------------------- data forms
def test_form_roundtrip() -> None:
    form = DataForm(
        "submit",
        (Field("FORM_TYPE", "hidden", ("urn:x",)), Field("ids", "list-multi", ("a", "b"))),
        title="T",
    )
    parsed = parse_form(form_element(form))
    assert parsed == form
    assert parsed.form_type == "urn:x" and parsed.value("ids") == "a"
    assert parsed.get("missing") is None


@pytest.mark.parametrize(
    "xml",
    [
        f"<x xmlns='{XDATA}'/>",
        f"<x xmlns='{XDATA}' type='bogus'/>",
        f"<x xmlns='{XDATA}' type='submit'><field type='text-single'/></x>",
        f"<x xmlns='{XDATA}' type='submit'><field var='a'/><field var='a'/></x>",
        f"<x xmlns='{XDATA}' type='submit'><field var='a' type='weird'/></x>",
        f"<x xmlns='{XDATA}' type='submit'><field var='a' type='text-single'>"
        "<value>1</value><value>2</value></field></x>",
        "<x xmlns='urn:other' type='submit'/>",
    ],
)
def test_invalid_forms(xml: str) -> None:
    with pytest.raises(FormError):
        parse_form(parse_element(xml))


def test_boolean_values() -> None:
    assert parse_boolean("1") and parse_boolean("true")
    assert not parse_boolean("0") and not parse_boolean("false")
    with pytest.raises(FormError):
        parse_boolean("yes")


# ---------------------------------------------------------------------- RSM
def test_rsm_request() -> None:
    xml = f"<set xmlns='{RSM}'><max>10</max><before/><index>3</index></set>"
    assert parse_rsm(parse_element(xml)) == RsmRequest(max=10, before="", index=3)
    xml = f"<set xmlns='{RSM}'><after>abc</after></set>"
    assert parse_rsm(parse_element(xml)) == RsmRequest(after="abc")


@pytest.mark.parametrize(
    "inner", ["<max>-1</max>", "<max>x</max>", "<index>1.5</index>", "<after/>", "<max/>"]
)
def test_rsm_malformed(inner: str) -> None:
    with pytest.raises(RsmError):
        parse_rsm(parse_element(f"<set xmlns='{RSM}'>{inner}</set>"))


def test_rsm_result_omits_first_and_last_for_an_empty_page() -> None:
    assert serialize_str(rsm_element(RsmResult(count=4))) == (
        f"<set xmlns='{RSM}'><count>4</count></set>"
    )
    assert serialize_str(rsm_element(RsmResult("a", "b", 0, 9))) == (
        f"<set xmlns='{RSM}'><first index='0'>a</first><last>b</last><count>9</count></set>"
    )


# ---------------------------------------------------------------------- MAM query
def query(inner: str = "", **kw: int | bool) -> object:
    options = {"default_max": 50, "max_max": 100, "max_ids": 3, "with_count": False}
    options.update(kw)
    el = parse_element(f"<query xmlns='{NS_MAM}' queryid='q'>{inner}</query>")
    return parse_query(el, **options)  # type: ignore[arg-type]


def form(**fields: str) -> str:
    inner = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    return f"<x xmlns='{XDATA}' type='submit'>{inner}</x>"


def test_query_defaults_and_limits() -> None:
    parsed = query()
    assert parsed.queryid == "q"  # type: ignore[attr-defined]
    assert parsed.query.max == 50 and not parsed.query.flip  # type: ignore[attr-defined]
    big = query(f"<set xmlns='{RSM}'><max>1000</max></set><flip-page/>")
    assert big.query.max == 100 and big.query.flip  # type: ignore[attr-defined]
    count = query(f"<set xmlns='{RSM}'><max>0</max></set>")
    assert count.query.max == 0 and count.query.with_count  # type: ignore[attr-defined]


def test_query_form_fields() -> None:
    parsed = query(
        form(
            **{
                "with": "Romeo@Example.NET/orchard",
                "start": "2024-01-01T00:00:00+02:00",
                "after-id": " x ",
            }
        )
    ).query  # type: ignore[attr-defined]
    assert parsed.with_jid == "romeo@example.net/orchard"
    assert parsed.start == datetime(2023, 12, 31, 22, tzinfo=UTC)
    assert parsed.after_id == "x"


@pytest.mark.parametrize(
    ("inner", "condition"),
    [
        (form(start="2024-01-01"), "bad-request"),
        (form(end="2024-01-01T00:00:00"), "bad-request"),
        (form(**{"with": "a@b@c"}), "jid-malformed"),
        (form(**{"{urn:x}y": "1"}), "feature-not-implemented"),
        (form(FORM_TYPE="urn:xmpp:mam:1"), "bad-request"),
        (f"<set xmlns='{RSM}'><max>many</max></set>", "bad-request"),
        (
            f"<x xmlns='{XDATA}' type='submit'><field var='ids'>"
            + "".join(f"<value>{n}</value>" for n in range(4))
            + "</field></x>",
            "policy-violation",
        ),
    ],
)
def test_query_errors(inner: str, condition: str) -> None:
    with pytest.raises(StanzaError) as info:
        query(inner)
    assert info.value.condition == condition


def test_datetimes() -> None:
    assert parse_datetime("2010-07-10T23:08:25.123Z") == datetime(
        2010, 7, 10, 23, 8, 25, 123000, tzinfo=UTC
    )
    assert parse_datetime("2010-07-10T23:08:25-05:00").utcoffset() == timedelta(hours=-5)
    assert delay_stamp(datetime(2010, 7, 10, 23, 8, 25, tzinfo=UTC)) == "2010-07-10T23:08:25Z"
    assert delay_stamp(datetime(2010, 7, 10, 23, 8, 25, 5, tzinfo=UTC)).endswith(".000005Z")
    assert parse_datetime("2010-07-10T23:08:25+00:00").tzinfo is not None
    assert UTC == UTC


def test_fin_complete_attribute() -> None:
    done = serialize_str(fin_element(ArchivePage([], None, None, True)))
    assert done == f"<fin xmlns='{NS_MAM}' complete='true'><set xmlns='{RSM}'/></fin>"
    more = serialize_str(fin_element(ArchivePage([], "a", "b", False)))
    assert "complete" not in more and "<first>a</first><last>b</last>" in more


# ---------------------------------------------------------------------- prefs
ROMEO = JID.parse("romeo@example.net/orchard")


@pytest.mark.parametrize(
    ("prefs", "in_roster", "expected"),
    [
        (Prefs("always"), None, True),
        (Prefs("never"), None, False),
        (Prefs("roster"), None, None),
        (Prefs("roster"), True, True),
        (Prefs("roster"), False, False),
        (Prefs("never", always=frozenset({"romeo@example.net"})), None, True),
        (Prefs("never", always=frozenset({"romeo@example.net/orchard"})), None, True),
        (Prefs("never", always=frozenset({"romeo@example.net/balcony"})), None, False),
        (Prefs("always", never=frozenset({"romeo@example.net"})), None, False),
        (
            Prefs(
                "always",
                always=frozenset({"romeo@example.net"}),
                never=frozenset({"romeo@example.net"}),
            ),
            None,
            False,
        ),
    ],
)
def test_prefs_decision(prefs: Prefs, in_roster: bool | None, expected: bool | None) -> None:
    assert decide(prefs, ROMEO, in_roster) is expected


def test_prefs_parse_serialise_and_store() -> None:
    xml = (
        f"<prefs xmlns='{NS_MAM}' default='roster'><always><jid>A@B</jid></always>"
        "<never><jid>c@d/e</jid></never></prefs>"
    )
    prefs = parse_prefs(parse_element(xml))
    assert prefs == Prefs("roster", frozenset({"a@b"}), frozenset({"c@d/e"}))
    assert loads(dumps(prefs)) == prefs
    assert parse_prefs(prefs_element(prefs)) == prefs
    with pytest.raises(StanzaError):
        parse_prefs(parse_element(f"<prefs xmlns='{NS_MAM}'/>"))
    with pytest.raises(StanzaError):
        parse_prefs(
            parse_element(
                f"<prefs xmlns='{NS_MAM}' default='always'><never><jid>@</jid></never></prefs>"
            )
        )


# ---------------------------------------------------------------------- what is archived
@pytest.mark.parametrize(
    ("xml", "stype", "expected"),
    [
        ("<message xmlns='jabber:client'><body>x</body></message>", "chat", True),
        ("<message xmlns='jabber:client'><body>x</body></message>", "normal", True),
        ("<message xmlns='jabber:client'><body>x</body></message>", "headline", False),
        ("<message xmlns='jabber:client'><body>x</body></message>", "groupchat", False),
        ("<message xmlns='jabber:client'><body>x</body></message>", "error", False),
        (
            "<message xmlns='jabber:client'><active xmlns='http://jabber.org/protocol/chatstates'/>"
            "</message>",
            "chat",
            False,
        ),
        ("<message xmlns='jabber:client'><store xmlns='urn:xmpp:hints'/></message>", "chat", True),
        (
            "<message xmlns='jabber:client'><body>x</body><no-store xmlns='urn:xmpp:hints'/>"
            "</message>",
            "chat",
            False,
        ),
        (
            "<message xmlns='jabber:client'><sent xmlns='urn:xmpp:carbons:2'/><body>x</body>"
            "</message>",
            "chat",
            False,
        ),
    ],
)
def test_is_archivable(xml: str, stype: str, expected: bool) -> None:
    assert is_archivable(parse_element(xml), stype) is expected


def test_strip_stanza_ids_only_ours() -> None:
    msg = parse_element(
        f"<message xmlns='jabber:client'><stanza-id xmlns='{NS_SID}' by='a@b' id='1'/>"
        f"<stanza-id xmlns='{NS_SID}' by='room@muc' id='2'/></message>"
    )
    strip_stanza_ids(msg, "a@b")
    assert [s.get("by") for s in msg.find_all("stanza-id", NS_SID)] == ["room@muc"]
