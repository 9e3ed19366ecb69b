"""The PEP part of OMEMO (XEP-0384, as Conversations speaks it): two slixmpp clients each
publish a device list and a bundle with publish-options access_model=open, fetch each other's
bundle, and hear each other's device list through +notify."""

from __future__ import annotations

from tests.integration.harness import RunningServer
from tests.integration.im_helpers import befriend, expect_all
from tests.integration.pubsub_helpers import event, event_item_ids, get_items, item_ids, publish
from tests.integration.test_xep0163_pep import pep_client

DEVICELIST = "eu.siacs.conversations.axolotl.devicelist"
NS_AXOLOTL = "eu.siacs.conversations.axolotl"


def devicelist(*ids: int) -> str:
    devices = "".join(f"<device id='{i}'/>" for i in ids)
    return f"<list xmlns='{NS_AXOLOTL}'>{devices}</list>"


def bundle(device: int) -> str:
    return (
        f"<bundle xmlns='{NS_AXOLOTL}'>"
        f"<signedPreKeyPublic signedPreKeyId='1'>spk{device}</signedPreKeyPublic>"
        "<signedPreKeySignature>sig</signedPreKeySignature>"
        f"<identityKey>ik{device}</identityKey>"
        "<prekeys><preKeyPublic preKeyId='1'>pk</preKeyPublic></prekeys></bundle>"
    )


async def test_omemo_device_lists_and_bundles(server: RunningServer) -> None:
    alice, bob = await server.add_user(), await server.add_user()
    await befriend(server, alice, bob)
    a = await pep_client(server, alice, (DEVICELIST,))
    b = await pep_client(server, bob, (DEVICELIST,))
    devices = {alice: 1111, bob: 2222}
    for client, jid in ((a, alice), (b, bob)):
        device = devices[jid]
        node = f"{NS_AXOLOTL}.bundles:{device}"
        result = await publish(client, node, "current", bundle(device), access_model="open")
        assert result["type"] == "result", result
        result = await publish(
            client, DEVICELIST, "current", devicelist(device), access_model="open"
        )
        assert result["type"] == "result", result

    # Each hears the other's device list, and its own (the owner's resources too).
    for client, own, other in ((a, alice, bob), (b, bob, alice)):
        theirs, mine = await expect_all(
            client, event(DEVICELIST, sender=other), event(DEVICELIST, sender=own)
        )
        assert event_item_ids(theirs) == ["current"]
        assert str(devices[other]) in str(theirs)
        assert str(devices[own]) in str(mine)

    # Each fetches the other's bundle (access_model=open).
    for client, other in ((a, bob), (b, alice)):
        node = f"{NS_AXOLOTL}.bundles:{devices[other]}"
        reply = await get_items(client, other, node)
        assert item_ids(reply) == ["current"]
        assert f"ik{devices[other]}" in str(reply)

    # A stranger may read the open bundle too, as OMEMO needs for new contacts.
    stranger = await pep_client(server, await server.add_user(), available=False)
    reply = await get_items(stranger, alice, f"{NS_AXOLOTL}.bundles:{devices[alice]}")
    assert item_ids(reply) == ["current"]

    # A second device of alice: bob's resource hears the updated list.
    result = await publish(a, DEVICELIST, "current", devicelist(1111, 3333), access_model="open")
    assert result["type"] == "result"
    got = await b.expect(lambda s: event(DEVICELIST, sender=alice)(s) and "3333" in str(s))
    assert event_item_ids(got) == ["current"]
    for client in (a, b, stranger):
        await client.disconnect()
