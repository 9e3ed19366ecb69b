"""RFC 6121 §2: roster get, set, update, remove, pushes to interested resources, versioning
and every error case of §2.3.3 and §2.5.3, seen by real slixmpp clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.integration.harness import RawClient, RunningServer, q
from tests.integration.im_helpers import (
    befriend,
    error_condition,
    expect_all,
    item_of,
    login,
    presence,
    push,
    roster_get,
    roster_set,
    roster_xml,
)

Factory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def srv(server_factory: Factory) -> RunningServer:
    return await server_factory()  # the default modules, roster and presence among them


# ---------------------------------------------------------------------- get (§2.1.3)
async def test_a_new_account_has_an_empty_roster_with_a_version(srv: RunningServer) -> None:
    romeo = await login(srv, await srv.add_user())
    reply = await roster_get(romeo)
    assert reply["type"] == "result"
    assert reply["roster"]["items"] == {}
    assert reply["roster"]["ver"] == "0"


async def test_roster_get_returns_every_item_as_stored(srv: RunningServer) -> None:
    romeo_jid = await srv.add_user()
    romeo = await login(srv, romeo_jid)
    assert (await roster_set(romeo, "nurse@example.com", name="Nurse"))["type"] == "result"
    assert (await roster_set(romeo, "juliet@example.com", groups=["Lovers", "Capulets"]))[
        "type"
    ] == "result"
    reply = await roster_get(romeo)
    assert item_of(reply, "nurse@example.com")["name"] == "Nurse"
    juliet = item_of(reply, "juliet@example.com")
    assert sorted(juliet["groups"]) == ["Capulets", "Lovers"]
    assert juliet["subscription"] == "none" and juliet["ask"] == ""
    assert reply["roster"]["ver"] == "2"


# ---------------------------------------------------------------------- set and pushes
async def test_roster_set_is_pushed_to_every_interested_resource_only(
    srv: RunningServer,
) -> None:
    """§2.3.2: a push to every interested resource, the one that sent the set included; a
    resource that never fetched the roster gets none."""
    jid = await srv.add_user()
    one = await login(srv, jid, "one", roster=True)
    two = await login(srv, jid, "two", roster=True)
    three = await login(srv, jid, "three", available=True)  # available, not interested
    reply = await roster_set(one, "juliet@example.com", name="Juliet", groups=["Lovers"])
    assert reply["type"] == "result"
    for client in (one, two):
        pushed = await client.expect(push("juliet@example.com"))
        assert not pushed["from"]  # from the user's account itself (no 'from')
        assert pushed["roster"]["ver"] == "1"
        item = item_of(pushed, "juliet@example.com")
        assert (item["name"], item["groups"], item["subscription"]) == (
            "Juliet",
            ["Lovers"],
            "none",
        )
    await three.expect_nothing(push(), within=0.3)


async def test_roster_update_replaces_the_item_and_ignores_subscription_and_ask(
    srv: RunningServer,
) -> None:
    """§2.4: the item is updated exactly as given; §2.1.2.5 and §2.1.2.2: a client's
    'subscription' other than "remove", and its 'ask', are ignored."""
    romeo = await login(srv, await srv.add_user(), roster=True)
    await roster_set(romeo, "juliet@example.com", name="Juliet", groups=["Friends", "Lovers"])
    await romeo.expect(push("juliet@example.com"))
    reply = await roster_xml(
        romeo,
        "<query xmlns='jabber:iq:roster'><item jid='juliet@example.com' subscription='both'"
        " ask='subscribe' approved='true'><group>Lovers</group></item></query>",
    )
    assert reply["type"] == "result"
    pushed = await romeo.expect(push("juliet@example.com"))
    item = item_of(pushed, "juliet@example.com")
    assert item["groups"] == ["Lovers"] and not item["name"]
    assert item["subscription"] == "none" and item["ask"] == "" and not item["approved"]


async def test_roster_remove_pushes_remove_and_forgets_the_item(srv: RunningServer) -> None:
    """§2.5.2: the item is gone and every interested resource hears subscription='remove'."""
    jid = await srv.add_user()
    one = await login(srv, jid, "one", roster=True)
    two = await login(srv, jid, "two", roster=True)
    await roster_set(one, "juliet@example.com", name="Juliet")
    await two.expect(push("juliet@example.com"))
    reply = await roster_set(one, "juliet@example.com", subscription="remove")
    assert reply["type"] == "result"
    for client in (one, two):
        await client.expect(push("juliet@example.com", "remove"))
    assert (await roster_get(one))["roster"]["items"] == {}


async def test_removing_a_contact_ends_both_subscriptions(srv: RunningServer) -> None:
    """§2.5.2: unsubscribe and unsubscribed go to a mutual contact, who also hears the user
    go unavailable; both rosters end at 'none' on the contact's side."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, romeo_jid, juliet_jid)
    romeo = await login(srv, romeo_jid, roster=True, available=True)
    juliet = await login(srv, juliet_jid, roster=True, available=True)
    await romeo.expect(presence(sender=juliet.jid))
    reply = await roster_set(romeo, juliet_jid, subscription="remove")
    assert reply["type"] == "result"
    await romeo.expect(push(juliet_jid, "remove"))
    await expect_all(
        juliet,
        presence("unsubscribe", romeo_jid),
        presence("unavailable", romeo.jid),
        presence("unsubscribed", romeo_jid),
        push(romeo_jid, "to"),
        push(romeo_jid, "none"),
    )
    # Juliet's roster keeps Romeo, without subscriptions either way.
    item = item_of(await roster_get(juliet), romeo_jid)
    assert item["subscription"] == "none" and item["ask"] == ""


# ---------------------------------------------------------------------- errors (§2.3.3)
async def test_removing_an_item_that_is_not_there_is_item_not_found(srv: RunningServer) -> None:
    romeo = await login(srv, await srv.add_user(), roster=True)
    reply = await roster_set(romeo, "nobody@example.com", subscription="remove")
    assert error_condition(reply) == "item-not-found"
    await romeo.expect_nothing(push(), within=0.2)


@pytest.mark.parametrize(
    ("query", "condition"),
    [
        pytest.param(
            "<query xmlns='jabber:iq:roster'><item jid='a@example.com'/>"
            "<item jid='b@example.com'/></query>",
            "bad-request",
            id="two-items",
        ),
        pytest.param("<query xmlns='jabber:iq:roster'/>", "bad-request", id="no-item"),
        pytest.param(
            "<query xmlns='jabber:iq:roster'><item jid='a@example.com'>"
            "<group>Friends</group><group>Friends</group></item></query>",
            "bad-request",
            id="duplicate-group",
        ),
        pytest.param(
            "<query xmlns='jabber:iq:roster'><item jid='a@example.com'><group/></item></query>",
            "not-acceptable",
            id="empty-group",
        ),
        pytest.param(
            f"<query xmlns='jabber:iq:roster'><item jid='a@example.com' name='{'n' * 1024}'/>"
            "</query>",
            "not-acceptable",
            id="name-too-long",
        ),
        pytest.param(
            f"<query xmlns='jabber:iq:roster'><item jid='a@example.com'><group>{'g' * 1024}"
            "</group></item></query>",
            "not-acceptable",
            id="group-too-long",
        ),
        pytest.param(
            "<query xmlns='jabber:iq:roster'><item jid='a@@example.com'/></query>",
            "jid-malformed",
            id="malformed-jid",
        ),
        pytest.param(
            "<query xmlns='jabber:iq:roster'><item jid='a@example.com/phone'/></query>",
            "bad-request",
            id="full-jid",
        ),
        pytest.param("<query xmlns='jabber:iq:roster'><item/></query>", "bad-request", id="no-jid"),
    ],
)
async def test_bad_roster_sets_get_the_error_the_rfc_names(
    srv: RunningServer, query: str, condition: str
) -> None:
    romeo = await login(srv, await srv.add_user(), roster=True)
    reply = await roster_xml(romeo, query)
    assert error_condition(reply) == condition
    await romeo.expect_nothing(push(), within=0.2)  # nothing was stored
    assert (await roster_get(romeo))["roster"]["items"] == {}


@pytest.mark.parametrize("iq_type", ["get", "set"])
async def test_another_users_roster_is_forbidden(srv: RunningServer, iq_type: str) -> None:
    """§2.3.3: only the account's own resources may touch its roster."""
    romeo = await login(srv, await srv.add_user())
    juliet_jid = await srv.add_user()
    query = "<query xmlns='jabber:iq:roster'><item jid='tybalt@example.com'/></query>"
    if iq_type == "get":
        query = "<query xmlns='jabber:iq:roster'/>"
    reply = await roster_xml(romeo, query, iq_type, to=juliet_jid)
    assert error_condition(reply) == "forbidden"


async def test_a_roster_push_from_another_client_is_refused(srv: RunningServer) -> None:
    """§2.1.6: pushes come from the user's server only; a forged one never arrives."""
    mallory = await login(srv, await srv.add_user())
    romeo = await login(srv, await srv.add_user(), roster=True, available=True)
    query = "<query xmlns='jabber:iq:roster'><item jid='evil@example.com'/></query>"
    reply = await roster_xml(mallory, query, to=romeo.jid)
    assert error_condition(reply) == "forbidden"
    await romeo.expect_nothing(push(), within=0.3)


async def test_a_full_roster_refuses_one_more_item(server_factory: Factory) -> None:
    srv = await server_factory(module_options={"roster": {"max_items": 2}})
    romeo = await login(srv, await srv.add_user(), roster=True)
    for contact in ("a@example.com", "b@example.com"):
        assert (await roster_set(romeo, contact))["type"] == "result"
    assert error_condition(await roster_set(romeo, "c@example.com")) == "not-allowed"
    # Updating an item already there still works.
    assert (await roster_set(romeo, "a@example.com", name="A"))["type"] == "result"
    # Subscribing to a new contact is refused too: the item would not fit.
    romeo.xmpp.send_presence(pto="d@example.com", ptype="subscribe")
    error = await romeo.expect(lambda s: s.name == "presence" and s["type"] == "error")
    assert error["error"]["condition"] == "not-allowed"


# ---------------------------------------------------------------------- versioning (§2.6)
async def test_roster_versioning_is_advertised_as_a_stream_feature(srv: RunningServer) -> None:
    jid = await srv.add_user()
    raw = await RawClient.connect(srv)
    await raw.open()
    await raw.starttls(srv)
    await raw.open()
    await raw.auth_plain(jid)
    features = await raw.open()
    assert features.find(q("urn:xmpp:features:rosterver", "ver")) is not None
    assert features.find(q("urn:xmpp:features:pre-approval", "sub")) is not None
    await raw.close()
    # A real client sees it too.
    romeo = await login(srv, jid)
    assert {"rosterver", "preapproval"} <= romeo.xmpp.features


async def test_current_version_gets_an_empty_result_and_no_pushes(srv: RunningServer) -> None:
    romeo = await login(srv, await srv.add_user())
    await roster_set(romeo, "juliet@example.com")
    reply = await roster_get(romeo, ver="1")
    assert reply["type"] == "result"
    assert reply.xml.find("{jabber:iq:roster}query") is None
    await romeo.expect_nothing(push(), within=0.3)


async def test_older_version_gets_the_changes_since_as_pushes(srv: RunningServer) -> None:
    jid = await srv.add_user()
    other = await login(srv, jid, "desk")
    await roster_set(other, "juliet@example.com", name="Juliet")  # version 1
    await roster_set(other, "nurse@example.com")  # version 2
    await roster_set(other, "juliet@example.com", subscription="remove")  # version 3
    phone = await login(srv, jid, "phone")
    reply = await roster_get(phone, ver="1")
    assert reply["type"] == "result"
    assert reply.xml.find("{jabber:iq:roster}query") is None
    nurse = await phone.expect(push("nurse@example.com"))
    assert nurse["roster"]["ver"] == "2"
    removed = await phone.expect(push("juliet@example.com", "remove"))
    assert removed["roster"]["ver"] == "3"
    await phone.expect_nothing(push(), within=0.2)


@pytest.mark.parametrize("ver", ["", "999", "not-a-version"])
async def test_unknown_version_gets_the_whole_roster(srv: RunningServer, ver: str) -> None:
    romeo = await login(srv, await srv.add_user())
    await roster_set(romeo, "juliet@example.com")
    reply = await roster_get(romeo, ver=ver)
    assert list(reply["roster"]["items"]) == ["juliet@example.com"]
    assert reply["roster"]["ver"] == "1"


async def test_pushes_carry_increasing_versions(srv: RunningServer) -> None:
    romeo = await login(srv, await srv.add_user(), roster=True)
    versions: list[str] = []
    for contact in ("a@example.com", "b@example.com", "c@example.com"):
        await roster_set(romeo, contact)
        pushed: Any = await romeo.expect(push(contact))
        versions.append(pushed["roster"]["ver"])
    assert versions == ["1", "2", "3"]
