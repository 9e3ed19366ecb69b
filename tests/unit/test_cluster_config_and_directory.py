"""Cluster mode without Redis: its settings (SQLite refused, Redis URL, heartbeat TTL) and the
directory's pure rules (resources of every node, the newest session wins, a node's stale
events never remove another node's session)."""

from __future__ import annotations

from typing import Any

import pytest

from salon.cluster.directory import ClusterDirectory, RemoteSession, session_record
from salon.config import ConfigError, settings_from_dict
from salon.core.session import C2SSession, SessionSlot
from salon.errors import StanzaError, StreamErrorCondition
from salon.jid import JID
from salon.xml.element import Element

PG = "postgresql://salon@127.0.0.1/salon"
FLAG = SessionSlot[bool]("test.cluster_flag", shared=True)


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data)
    return info.value.problems


def test_cluster_mode_is_refused_on_sqlite() -> None:
    found = problems({"cluster": {"redis": "redis://127.0.0.1:6379/0"}})
    assert any("needs server.storage on PostgreSQL" in p for p in found), found


def test_cluster_settings_are_checked() -> None:
    base = {"server": {"storage": PG}}
    assert any("not a Redis URL" in p for p in problems({**base, "cluster": {"redis": "x"}}))
    bad_ttl = {"redis": "redis://h/0", "heartbeat_interval": 2, "heartbeat_ttl": 1}
    assert any("heartbeat_ttl" in p for p in problems({**base, "cluster": bad_ttl}))
    ok = settings_from_dict({**base, "cluster": {"redis": "redis://h:6379/0", "node": "a"}})
    assert ok.cluster.enabled and ok.cluster.node == "a"
    assert not settings_from_dict({}).cluster.enabled  # off unless configured


class Conn:
    def __init__(self) -> None:
        self.sent: list[Element] = []
        self.closed: list[StreamErrorCondition | None] = []

    def send_stanza(self, stanza: Element) -> None:
        self.sent.append(stanza)

    def close_stream(self, condition: Any = None, text: Any = None, extra: Any = None) -> None:
        self.closed.append(condition)

    def idle_seconds(self) -> float:
        return 0.0

    peer = "test"


ALICE = JID.make("alice", "example.org")


def make() -> tuple[ClusterDirectory, list[tuple[str, Any]]]:
    calls: list[tuple[str, Any]] = []

    class T:
        def forward(self, node: str, to: JID, stanza: Element, hops: int = 0) -> None:
            calls.append(("forward", (node, str(to), stanza.tag)))

        def close_remote(self, node: str, to: JID, condition: Any = None) -> None:
            calls.append(("close", (node, str(to), condition)))

        def published(self, session: C2SSession) -> None:
            calls.append(("up", str(session.jid)))

        def withdrawn(self, session: C2SSession) -> None:
            calls.append(("down", str(session.jid)))

    d = ClusterDirectory("n1", max_resources=3)
    d.transport = T()
    return d, calls


def test_remote_sessions_join_local_ones_and_forward() -> None:
    d, calls = make()
    phone = C2SSession(ALICE.with_resource("phone"), Conn())
    d.add(phone)
    assert calls == [("up", "alice@example.org/phone")]
    record = {"p": 5, "a": True, "x": "<presence xmlns='jabber:client'/>", "s": {FLAG.name: True}}
    d.remote_up("n2", ALICE.with_resource("desk"), record)
    desk = d.get(ALICE.with_resource("desk"))
    assert isinstance(desk, RemoteSession) and desk.is_remote
    assert (desk.priority, desk.is_available, desk.get(FLAG)) == (5, True, True)
    assert desk.presence is not None and desk.presence.tag == "presence"
    assert {s.jid.resource for s in d.resources(ALICE)} == {"phone", "desk"}
    assert [s.jid.resource for s in d.available(ALICE)] == ["desk"]
    desk.send(Element("message", "jabber:client"))
    assert calls[-1] == ("forward", ("n2", "alice@example.org/desk", "message"))
    # a shared slot set on a local session is published; an unshared one is not
    phone.set(FLAG, True)
    assert calls[-1] == ("up", "alice@example.org/phone")
    assert '"test.cluster_flag":true' in session_record(phone)


def test_newest_wins_across_nodes_and_stale_events_keep_the_new_session() -> None:
    d, calls = make()
    d.remote_up("n2", ALICE.with_resource("r"), {"p": 0, "a": True})
    resource, replaced = d.pick_resource(ALICE, "r")
    assert resource == "r" and replaced is not None and replaced.is_remote
    replaced.close(StreamErrorCondition.CONFLICT)
    assert calls[-1] == ("close", ("n2", "alice@example.org/r", StreamErrorCondition.CONFLICT))
    # the session moves to n3; n2's late "down" must not remove n3's
    d.remote_up("n3", ALICE.with_resource("r"), {"p": 0, "a": True})
    assert not d.remote_down("n2", ALICE.with_resource("r"))
    moved = d.get(ALICE.with_resource("r"))
    assert isinstance(moved, RemoteSession) and moved.node == "n3"
    assert [s.jid for s in d.drop_node("n3")] == [ALICE.with_resource("r")]
    assert not d.is_online(ALICE)


def test_resource_limit_counts_every_node() -> None:
    d, _ = make()
    for i in range(3):
        d.remote_up(f"n{i + 2}", ALICE.with_resource(f"r{i}"), {"p": 0, "a": False})
    with pytest.raises(StanzaError):
        d.pick_resource(ALICE, "another")
