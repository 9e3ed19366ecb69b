"""RFC 6121 §3: presence subscriptions between real slixmpp clients: the handshake both ways,
requests kept while the contact is offline, cancelling, unsubscribing, denying,
pre-approval, and the stanzas the server must silently ignore."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.integration.harness import RunningServer, SlixClient
from tests.integration.im_helpers import (
    any_presence,
    befriend,
    expect_all,
    item_of,
    login,
    presence,
    push,
    put_item,
    roster_get,
    settle,
)

Factory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def srv(server_factory: Factory) -> RunningServer:
    return await server_factory()  # the default modules, roster and presence among them


async def pair(srv: RunningServer) -> tuple[str, str, SlixClient, SlixClient]:
    """Romeo and Juliet, online, available and interested in their rosters; no items yet."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    romeo = await login(srv, romeo_jid, roster=True, available=True)
    juliet = await login(srv, juliet_jid, roster=True, available=True)
    return romeo_jid, juliet_jid, romeo, juliet


async def state_of(client: SlixClient, contact: str) -> tuple[str, str]:
    """(subscription, ask) of ``contact`` in the client's roster as the server returns it."""
    item = item_of(await roster_get(client), contact)
    return item["subscription"], item["ask"]


# ---------------------------------------------------------------------- the handshake
async def test_subscription_handshake_both_ways(srv: RunningServer) -> None:
    romeo_jid, juliet_jid, romeo, juliet = await pair(srv)
    # §3.1.1/3.1.2: Romeo asks; his roster shows the pending request, Juliet gets it.
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribe", pstatus="It is my lady")
    pushed = await romeo.expect(push(juliet_jid, "none"))
    assert item_of(pushed, juliet_jid)["ask"] == "subscribe"
    request = await juliet.expect(presence("subscribe", romeo_jid))
    assert str(request["from"]) == romeo_jid  # stamped with the bare JID (§3)
    assert request["status"] == "It is my lady"  # extended content kept (§3.1.3)
    await juliet.expect_nothing(push(), within=0.2)  # no item before approval (§3.1.3)
    # §3.1.5/3.1.6: Juliet approves.
    juliet.xmpp.send_presence(pto=romeo_jid, ptype="subscribed")
    await juliet.expect(push(romeo_jid, "from"))
    await expect_all(
        romeo,
        presence("subscribed", juliet_jid),
        push(juliet_jid, "to"),
        presence(sender=juliet.jid),  # her current presence follows the approval
    )
    assert await state_of(romeo, juliet_jid) == ("to", "")
    # And back: Juliet asks, Romeo approves; both end at "both".
    juliet.xmpp.send_presence(pto=romeo_jid, ptype="subscribe")
    await juliet.expect(push(romeo_jid, "from"))  # from + pending out
    await romeo.expect(presence("subscribe", juliet_jid))
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribed")
    await romeo.expect(push(juliet_jid, "both"))
    await expect_all(
        juliet,
        presence("subscribed", romeo_jid),
        push(romeo_jid, "both"),
        presence(sender=romeo.jid),
    )
    assert await state_of(romeo, juliet_jid) == ("both", "")
    assert await state_of(juliet, romeo_jid) == ("both", "")


async def test_subscribe_to_a_full_jid_goes_to_the_bare_jid(srv: RunningServer) -> None:
    """§3.1.2: the 'to' of a subscription request is the contact's bare JID."""
    romeo_jid, juliet_jid, romeo, juliet = await pair(srv)
    romeo.xmpp.send_presence(pto=f"{juliet_jid}/balcony", ptype="subscribe")
    request = await juliet.expect(presence("subscribe", romeo_jid))
    assert str(request["to"]) == juliet_jid
    await romeo.expect(push(juliet_jid))


# ---------------------------------------------------------------------- offline contact
async def test_request_waits_for_an_offline_contact_until_answered(srv: RunningServer) -> None:
    """§3.1.3: stored, delivered at every login until the contact approves or denies."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    romeo = await login(srv, romeo_jid, roster=True, available=True)
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribe", pstatus="Wherefore?")
    await romeo.expect(push(juliet_jid))
    balcony = await login(srv, juliet_jid, "balcony")
    await balcony.expect_nothing(presence("subscribe"), within=0.2)  # not available yet
    balcony.xmpp.send_presence()
    request = await balcony.expect(presence("subscribe", romeo_jid))
    assert request["status"] == "Wherefore?"
    garden = await login(srv, juliet_jid, "garden", available=True)  # still unanswered
    await garden.expect(presence("subscribe", romeo_jid))
    garden.xmpp.send_presence(pto=romeo_jid, ptype="subscribed")
    await romeo.expect(presence("subscribed", juliet_jid))
    chamber = await login(srv, juliet_jid, "chamber", available=True)
    await chamber.expect_nothing(presence("subscribe"), within=0.3)


async def test_a_withdrawn_request_is_not_delivered_later(srv: RunningServer) -> None:
    """A.3.3 "None + Pending In": the requester's unsubscribe drops the stored request."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    romeo = await login(srv, romeo_jid, roster=True, available=True)
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribe")
    await romeo.expect(push(juliet_jid))
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="unsubscribe")
    pushed = await romeo.expect(push(juliet_jid, "none"))
    assert item_of(pushed, juliet_jid)["ask"] == ""
    await settle(romeo)  # the push comes before the unsubscribe reaches Juliet's side
    juliet = await login(srv, juliet_jid, available=True)
    await juliet.expect_nothing(presence("subscribe"), within=0.3)


# ---------------------------------------------------------------------- ending subscriptions
async def test_cancelling_a_subscription(srv: RunningServer) -> None:
    """§3.2: Juliet cancels Romeo's subscription: he hears her go unavailable, then
    "unsubscribed"; both rosters are pushed; her presence no longer reaches him."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, romeo_jid, juliet_jid)
    romeo = await login(srv, romeo_jid, roster=True, available=True)
    juliet = await login(srv, juliet_jid, roster=True, available=True)
    await romeo.expect(presence(sender=juliet.jid))
    juliet.xmpp.send_presence(pto=romeo_jid, ptype="unsubscribed")
    await juliet.expect(push(romeo_jid, "to"))
    unavailable, _, _ = await expect_all(
        romeo,
        presence("unavailable", juliet.jid),
        presence("unsubscribed", juliet_jid),
        push(juliet_jid, "from"),
    )
    juliet.xmpp.send_presence(pshow="away")
    await settle(juliet)
    await romeo.expect_nothing(presence(sender=juliet_jid), within=0.3)
    assert await state_of(romeo, juliet_jid) == ("from", "")
    assert unavailable["to"].bare == romeo_jid


async def test_unsubscribing(srv: RunningServer) -> None:
    """§3.3: Romeo unsubscribes from Juliet: she gets "unsubscribe", he gets her unavailable
    presence from her server (§3.3.3), and her later presence does not reach him."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, romeo_jid, juliet_jid)
    romeo = await login(srv, romeo_jid, roster=True, available=True)
    juliet = await login(srv, juliet_jid, roster=True, available=True)
    await romeo.expect(presence(sender=juliet.jid))
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="unsubscribe")
    await expect_all(romeo, push(juliet_jid, "from"), presence("unavailable", juliet.jid))
    await expect_all(juliet, presence("unsubscribe", romeo_jid), push(romeo_jid, "to"))
    juliet.xmpp.send_presence(pshow="away")
    await settle(juliet)
    await romeo.expect_nothing(presence(sender=juliet_jid), within=0.3)
    # Romeo's presence still reaches Juliet: her subscription to him is intact.
    romeo.xmpp.send_presence(pshow="dnd")
    await juliet.expect(presence(sender=romeo.jid))


async def test_denying_a_request(srv: RunningServer) -> None:
    """§3.2 on "None + Pending In": the requester hears "unsubscribed"; the request is gone."""
    romeo_jid, juliet_jid, romeo, juliet = await pair(srv)
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribe")
    await juliet.expect(presence("subscribe", romeo_jid))
    juliet.xmpp.send_presence(pto=romeo_jid, ptype="unsubscribed")
    await expect_all(romeo, presence("unsubscribed", juliet_jid), push(juliet_jid, "none"))
    assert await state_of(romeo, juliet_jid) == ("none", "")
    await juliet.expect_nothing(push(), within=0.2)  # she never had an item for him
    again = await login(srv, juliet_jid, "again", available=True)
    await again.expect_nothing(presence("subscribe"), within=0.3)


# ---------------------------------------------------------------------- pre-approval (§3.4)
async def test_pre_approval(srv: RunningServer) -> None:
    romeo_jid, juliet_jid, romeo, juliet = await pair(srv)
    juliet.xmpp.send_presence(pto=romeo_jid, ptype="subscribed")
    pushed = await juliet.expect(push(romeo_jid, "none"))
    assert item_of(pushed, romeo_jid)["approved"] in (True, "true")
    await settle(juliet)
    await romeo.expect_nothing(any_presence, within=0.2)  # never routed
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribe")
    await expect_all(
        romeo,
        presence("subscribed", juliet_jid),
        push(juliet_jid, "to"),
        presence(sender=juliet.jid),
    )
    await juliet.expect(push(romeo_jid, "from"))
    await juliet.expect_nothing(presence("subscribe"), within=0.3)  # answered for her


async def test_withdrawing_a_pre_approval(srv: RunningServer) -> None:
    romeo_jid, juliet_jid, romeo, juliet = await pair(srv)
    juliet.xmpp.send_presence(pto=romeo_jid, ptype="subscribed")
    await juliet.expect(push(romeo_jid))
    juliet.xmpp.send_presence(pto=romeo_jid, ptype="unsubscribed")
    pushed = await juliet.expect(push(romeo_jid, "none"))
    assert item_of(pushed, romeo_jid)["approved"] in (False, "", "false")
    await settle(juliet)
    await romeo.expect_nothing(any_presence, within=0.2)
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribe")
    await juliet.expect(presence("subscribe", romeo_jid))  # she decides again


# ---------------------------------------------------------------------- ignored (Appendix A)
async def test_a_repeated_request_is_delivered_once(srv: RunningServer) -> None:
    """A.3.1: "None + Pending In" receiving subscribe: not delivered again."""
    romeo_jid, juliet_jid, romeo, juliet = await pair(srv)
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribe")
    await juliet.expect(presence("subscribe", romeo_jid))
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribe")
    await settle(romeo)
    await juliet.expect_nothing(presence("subscribe"), within=0.3)


async def test_subscribe_from_a_subscribed_contact_is_approved_by_the_server(
    srv: RunningServer,
) -> None:
    """§3.1.3: the contact already has "from": her server answers "subscribed" itself."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await put_item(srv, juliet_jid, romeo_jid, "from")  # Romeo's own record was lost
    romeo = await login(srv, romeo_jid, roster=True, available=True)
    juliet = await login(srv, juliet_jid, roster=True, available=True)
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribe")
    await expect_all(romeo, presence("subscribed", juliet_jid), push(juliet_jid, "to"))
    await juliet.expect_nothing(lambda s: presence("subscribe")(s) or push()(s), within=0.3)


async def test_subscribed_without_a_request_is_ignored_by_the_receiver(
    srv: RunningServer,
) -> None:
    """A.3.2 "None": an approval nobody asked for changes nothing and is not delivered."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    local, domain = juliet_jid.split("@")
    # Juliet's server believes Romeo asked; Romeo's never did.
    await srv.server.core.storage.roster.add_pending(
        domain, local, romeo_jid, f"<presence type='subscribe' from='{romeo_jid}'/>"
    )
    romeo = await login(srv, romeo_jid, roster=True, available=True)
    juliet = await login(srv, juliet_jid, roster=True, available=True)
    await juliet.expect(presence("subscribe", romeo_jid))
    juliet.xmpp.send_presence(pto=romeo_jid, ptype="subscribed")
    await juliet.expect(push(romeo_jid, "from"))
    await settle(juliet)
    await romeo.expect_nothing(lambda s: presence("subscribed")(s) or push()(s))
    assert (await roster_get(romeo))["roster"]["items"] == {}


async def test_subscription_stanzas_with_nothing_to_do_are_not_routed(srv: RunningServer) -> None:
    """A.2.2/A.2.4: "subscribed" to a subscribed contact, "unsubscribed" with no subscription
    or request: silently ignored, never reach the contact."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, romeo_jid, juliet_jid)
    romeo = await login(srv, romeo_jid, roster=True, available=True)
    juliet = await login(srv, juliet_jid, roster=True, available=True)
    tybalt = await login(srv, await srv.add_user(), roster=True, available=True)
    juliet.xmpp.send_presence(pto=romeo_jid, ptype="subscribed")
    romeo.xmpp.send_presence(pto=tybalt.jid.split("/")[0], ptype="unsubscribed")
    await settle(juliet)
    await settle(romeo)
    await romeo.expect_nothing(lambda s: presence("subscribed")(s) or push()(s), within=0.3)
    await tybalt.expect_nothing(lambda s: presence("unsubscribed")(s), within=0.1)
    await juliet.expect_nothing(push(), within=0.1)


async def test_subscribing_to_an_account_that_does_not_exist(srv: RunningServer) -> None:
    """§8.5.1: the server answers "unsubscribed" for the missing account."""
    romeo_jid = await srv.add_user()
    romeo = await login(srv, romeo_jid, roster=True, available=True)
    ghost = "nobody-here@localhost"
    romeo.xmpp.send_presence(pto=ghost, ptype="subscribe")
    await expect_all(romeo, presence("unsubscribed", ghost), push(ghost, "none"))
    assert await state_of(romeo, ghost) == ("none", "")


async def test_too_many_waiting_requests_are_refused(server_factory: Factory) -> None:
    """The requests kept for one user are bounded; one more is answered with an error, and
    the kept ones are still delivered."""
    srv = await server_factory(module_options={"presence": {"max_pending": 1}})
    juliet_jid = await srv.add_user()
    romeo = await login(srv, await srv.add_user(), roster=True, available=True)
    tybalt = await login(srv, await srv.add_user(), roster=True, available=True)
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribe")
    await settle(romeo)
    tybalt.xmpp.send_presence(pto=juliet_jid, ptype="subscribe")
    error = await tybalt.expect(presence("error"))
    assert error["error"]["condition"] == "resource-constraint"
    juliet = await login(srv, juliet_jid, available=True)
    await juliet.expect(presence("subscribe", romeo.jid.split("/")[0]))
    await juliet.expect_nothing(presence("subscribe"), within=0.3)
