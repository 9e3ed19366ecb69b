"""Reloading modules on a running server: a session stays connected while a reload enables a
module (its disco feature appears on the same connection), disables one (its feature goes and
its iqs get service-unavailable) and changes a module's options (the next reply follows them).
A reload with a wrong module list or wrong options is refused and changes nothing."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from salon.config import Settings, settings_from_dict
from salon.core.hosts import ModuleError
from tests.integration.harness import RawClient, RunningServer, q, raw_session
from tests.integration.test_xep0045_muc import (
    MUC,
    NS_DATA,
    NS_OWNER,
    enter,
    expect,
    instant_room,
    statuses,
)
from tests.integration.test_xep0045_muc import iq as muc_iq

ServerFactory = Callable[..., Awaitable[RunningServer]]
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_VERSION = "jabber:iq:version"
NS_TIME = "urn:xmpp:time"
NS_PING = "urn:xmpp:ping"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def with_modules(srv: RunningServer, modules: dict[str, Any]) -> Settings:
    """The running server's settings with another ``[modules]`` table."""
    data = srv.server.settings.model_dump(mode="json")
    data.pop("config_path", None)
    data["modules"] = modules
    return settings_from_dict(data)


async def iq(client: RawClient, iq_id: str, payload: str) -> ET.Element:
    await client.send(f"<iq type='get' id='{iq_id}' to='localhost'>{payload}</iq>")
    while True:
        reply = await client.next()
        if reply.get("id") == iq_id:
            return reply


async def features(client: RawClient, iq_id: str) -> set[str]:
    reply = await iq(client, iq_id, f"<query xmlns='{NS_DISCO_INFO}'/>")
    assert reply.get("type") == "result", ET.tostring(reply)
    query = reply.find(q(NS_DISCO_INFO, "query"))
    assert query is not None
    return {f.get("var") or "" for f in query.findall(q(NS_DISCO_INFO, "feature"))}


async def version_os(client: RawClient, iq_id: str) -> str | None:
    reply = await iq(client, iq_id, f"<query xmlns='{NS_VERSION}'/>")
    assert reply.get("type") == "result", ET.tostring(reply)
    return reply.findtext(f"{q(NS_VERSION, 'query')}/{q(NS_VERSION, 'os')}")


def condition(reply: ET.Element) -> list[str]:
    error = reply.find(q("jabber:client", "error"))
    assert error is not None, ET.tostring(reply)
    return [child.tag for child in error if child.tag != q(NS_STANZAS, "text")]


async def test_reload_starts_stops_and_reconfigures_modules_keeping_the_session(
    server_factory: ServerFactory,
) -> None:
    srv = await server_factory(modules=["disco", "ping", "version"])
    client, _ = await raw_session(srv)
    before = await features(client, "d1")
    assert NS_PING in before and NS_VERSION in before and NS_TIME not in before
    assert await version_os(client, "v1")  # hide_os defaults to false
    host = srv.server.core.hosts["localhost"]
    disco = host.modules["disco"]

    changes = await srv.server.reload(
        with_modules(srv, {"enabled": ["disco", "version", "time"], "version": {"hide_os": True}})
    )

    assert changes["localhost"].started == ["time"]
    assert changes["localhost"].stopped == ["ping"]
    assert changes["localhost"].restarted == ["version"]
    assert host.modules["disco"] is disco  # untouched modules keep running as they were
    # the same connection, after the reload:
    after = await features(client, "d2")
    assert NS_TIME in after, after  # (a) enabled: its feature is announced
    assert NS_PING not in after, after  # (b) disabled: gone from disco...
    reply = await iq(client, "p2", f"<ping xmlns='{NS_PING}'/>")
    assert reply.get("type") == "error"  # ...and its iqs are unhandled (RFC 6120 §8.4)
    assert condition(reply) == [q(NS_STANZAS, "service-unavailable")]
    reply = await iq(client, "t2", f"<time xmlns='{NS_TIME}'/>")
    assert reply.get("type") == "result", ET.tostring(reply)
    assert await version_os(client, "v2") is None  # (c) new options: the os is hidden
    assert srv.server.settings.modules.enabled == ["disco", "version", "time"]

    # Back again: ping returns, time goes, and the session is still the same one.
    await srv.server.reload(with_modules(srv, {"enabled": ["disco", "ping", "version"]}))
    assert NS_PING in await features(client, "d3")
    await client.ping(iq_id="p3")
    assert await version_os(client, "v3")
    assert len(srv.server.connections) == 1


@pytest.mark.parametrize(
    "modules",
    [
        {"enabled": ["disco", "version", "no_such_module"]},
        {"enabled": ["disco", "version", "time"], "version": {"hide_os": "perhaps"}},
        {"enabled": ["disco", "version"], "version": {"no_such_option": 1}},
    ],
    ids=["unknown-module", "bad-option-value", "unknown-option"],
)
async def test_a_reload_with_wrong_modules_is_refused_and_changes_nothing(
    server_factory: ServerFactory, modules: dict[str, Any]
) -> None:
    srv = await server_factory(modules=["disco", "ping", "version"])
    client, _ = await raw_session(srv)
    before = await features(client, "d1")
    running = dict(srv.server.core.hosts["localhost"].modules)
    with pytest.raises(ModuleError):
        await srv.server.reload(with_modules(srv, modules))
    assert srv.server.core.hosts["localhost"].modules == running
    assert await features(client, "d2") == before
    await client.ping(iq_id="p1")
    assert await version_os(client, "v1")
    assert srv.server.settings.modules.enabled == ["disco", "ping", "version"]


async def test_restarting_muc_tells_occupants_and_lets_them_back_in(
    server_factory: ServerFactory,
) -> None:
    """A reload that restarts ``muc`` (its options changed): each occupant gets its own
    unavailable presence with status 332 (removed by a service shutdown, XEP-0045), stays
    connected, and joins again; the persistent room came back from storage."""
    srv = await server_factory()  # the default module set, muc included
    alice, _ = await raw_session(srv, resource="a")
    bob, _ = await raw_session(srv, resource="b")
    room = f"lounge@{MUC}"
    await instant_room(alice, "lounge", "alice")
    config = f"<x xmlns='{NS_DATA}' type='submit'>" + (
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
        "<field var='muc#roomconfig_persistentroom'><value>1</value></field></x>"
    )
    reply = await muc_iq(alice, "set", room, f"<query xmlns='{NS_OWNER}'>{config}</query>")
    assert reply.get("type") == "result", ET.tostring(reply)
    await enter(bob, "lounge", "bob")

    data = srv.server.settings.model_dump(mode="json")
    modules = {"enabled": data["modules"]["enabled"], "muc": {"max_history": 10}}
    changes = await srv.server.reload(with_modules(srv, modules))
    assert "muc" in changes["localhost"].restarted

    for client, nick in ((alice, "alice"), (bob, "bob")):
        own = await expect(
            client,
            lambda s, nick=nick: (
                s.get("from") == f"{room}/{nick}" and s.get("type") == "unavailable"
            ),
        )
        assert {"110", "332"} <= statuses(own), ET.tostring(own)
    # still connected, and the room is there again with its configuration
    pong = await muc_iq(alice, "get", "localhost", f"<ping xmlns='{NS_PING}'/>")
    assert pong.get("type") == "result", ET.tostring(pong)
    got = await enter(bob, "lounge", "bob")
    assert any(s.get("from") == f"{room}/bob" for s in got)
