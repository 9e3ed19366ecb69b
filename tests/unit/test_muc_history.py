"""The room history buffer and the <history/> limits of XEP-0045 §7.2.13, on given times."""

from __future__ import annotations

from salon.modules.muc.history import History, HistoryRequest, parse_stamp, stamp
from salon.namespaces import NS_CLIENT, NS_DELAY
from salon.xml.element import Element

ROOM = "coven@chat.shakespeare.lit"
T0 = 1_700_000_000.0


def message(n: int) -> Element:
    msg = Element("message", NS_CLIENT, {"type": "groupchat", "from": f"{ROOM}/w"})
    msg.add("body", text=f"m{n}")
    return msg


def filled(count: int = 5, length: int = 20) -> History:
    history = History(ROOM, length)
    for n in range(count):
        history.add(message(n), T0 + 10 * n)  # m0 at T0, m1 at T0+10, ...
    return history


def bodies(stanzas: list[Element]) -> list[str]:
    return [s.find_text("body") or "" for s in stanzas]


def test_no_limits_gives_everything_oldest_first_with_delay() -> None:
    got = filled().select(HistoryRequest(), T0 + 100)
    assert bodies(got) == ["m0", "m1", "m2", "m3", "m4"]
    delay = got[0].find("delay", NS_DELAY)
    assert delay is not None and delay.get("from") == ROOM
    assert delay.get("stamp") == stamp(T0)


def test_buffer_keeps_the_newest_length_messages() -> None:
    assert bodies(filled(5, 3).select(HistoryRequest(), T0 + 100)) == ["m2", "m3", "m4"]


def test_zero_length_keeps_nothing() -> None:
    assert filled(5, 0).select(HistoryRequest(), T0) == []


def test_maxstanzas() -> None:
    assert bodies(filled().select(HistoryRequest(maxstanzas=2), T0 + 100)) == ["m3", "m4"]
    assert filled().select(HistoryRequest(maxstanzas=0), T0 + 100) == []


def test_maxchars_counts_whole_stanzas() -> None:
    history = filled()
    one = next(iter(history)).chars
    assert bodies(history.select(HistoryRequest(maxchars=2 * one), T0 + 100)) == ["m3", "m4"]
    assert bodies(history.select(HistoryRequest(maxchars=2 * one - 1), T0 + 100)) == ["m4"]
    assert history.select(HistoryRequest(maxchars=0), T0 + 100) == []


def test_seconds_counts_back_from_now() -> None:
    got = filled().select(HistoryRequest(seconds=15), T0 + 40)  # m3 (T0+30) and m4 (T0+40)
    assert bodies(got) == ["m3", "m4"]


def test_since_is_exclusive() -> None:
    got = filled().select(HistoryRequest(since=T0 + 20), T0 + 100)
    assert bodies(got) == ["m3", "m4"]


def test_all_limits_apply_together() -> None:
    got = filled().select(HistoryRequest(maxstanzas=3, seconds=25), T0 + 40)
    assert bodies(got) == ["m2", "m3", "m4"]
    got = filled().select(HistoryRequest(maxstanzas=1, seconds=25), T0 + 40)
    assert bodies(got) == ["m4"]


def test_request_parsing() -> None:
    history = Element("history", "http://jabber.org/protocol/muc")
    history.set("maxchars", "100")
    history.set("maxstanzas", "bogus")
    history.set("since", "1970-01-02T00:00:00Z")
    request = HistoryRequest.parse(history)
    assert request == HistoryRequest(maxchars=100, maxstanzas=None, seconds=None, since=86400.0)
    assert HistoryRequest.parse(None) == HistoryRequest()


def test_stamps_round_trip() -> None:
    assert parse_stamp(stamp(T0)) == T0
    assert parse_stamp("not a date") is None


def test_resize_keeps_newest() -> None:
    history = filled()
    history.resize(2)
    assert bodies(history.select(HistoryRequest(), T0 + 100)) == ["m3", "m4"]
