"""Avatars: XEP-0084 over PEP with slixmpp's plugin, XEP-0398 conversion between the PEP
avatar and the vCard photo (both ways), and XEP-0153 hashes the server puts in presence."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from typing import Any

import slixmpp

from tests.integration.harness import RunningServer, SlixClient, connect_slixmpp, q
from tests.integration.im_helpers import befriend, presence
from tests.integration.pubsub_helpers import NS_EVENT, NS_PUBSUB, event, get_items, iq_xml
from tests.integration.test_xep0163_pep import _until_interested

NS_DATA = "urn:xmpp:avatar:data"
NS_METADATA = "urn:xmpp:avatar:metadata"
NS_VCARD = "vcard-temp"
NS_UPDATE = "vcard-temp:x:update"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


def png(width: int, height: int, filler: bytes) -> bytes:
    """A PNG signature and IHDR header: enough for the server to read the size."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x06\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + ihdr + filler


async def avatar_client(
    srv: RunningServer, jid: str, *, notify: bool = False, available: bool = True
) -> SlixClient:
    def configure(xmpp: slixmpp.ClientXMPP) -> None:
        for plugin in ("xep_0030", "xep_0115", "xep_0060", "xep_0163", "xep_0084", "xep_0054"):
            xmpp.register_plugin(plugin)

    client = await connect_slixmpp(srv, jid, configure=configure)
    client.xmpp.auto_authorize = None
    client.xmpp.auto_subscribe = False
    if notify:
        client.xmpp.plugin["xep_0163"].add_interest(NS_METADATA)
        await client.xmpp.plugin["xep_0115"].update_caps()
    if available:
        client.xmpp.send_presence()
        await client.expect(presence(sender=client.jid))
    return client


def infos(message: Any) -> list[ET.Element]:
    item = message.xml.find(f"{q(NS_EVENT, 'event')}/{q(NS_EVENT, 'items')}/{q(NS_EVENT, 'item')}")
    assert item is not None
    metadata = item.find(q(NS_METADATA, "metadata"))
    assert metadata is not None
    return metadata.findall(q(NS_METADATA, "info"))


async def vcard_of(client: SlixClient, jid: str) -> ET.Element:
    reply = await iq_xml(client, f"<vCard xmlns='{NS_VCARD}'/>", "get", jid)
    assert reply["type"] == "result", reply
    vcard = reply.xml.find(q(NS_VCARD, "vCard"))
    assert vcard is not None
    return vcard


def photo_hash_of(stanza: Any) -> str | None:
    photo = stanza.xml.find(f"{q(NS_UPDATE, 'x')}/{q(NS_UPDATE, 'photo')}")
    return None if photo is None else (photo.text or "")


def live(node: str, sender: str) -> Any:
    """A notification of a publish as it happens. XEP-0163 lets the server send the last
    item again, stamped with <delay>, whenever it learns a contact's interest anew (a caps
    answer late on a busy machine): those are not what these tests wait for."""
    match = event(node, sender=sender)

    def live_match(stanza: Any) -> bool:
        return match(stanza) and stanza.xml.find("{urn:xmpp:delay}delay") is None

    return live_match


async def pair(server: RunningServer) -> tuple[str, str, SlixClient, SlixClient]:
    juliet, romeo = await server.add_user(), await server.add_user()
    await befriend(server, juliet, romeo)
    r = await avatar_client(server, romeo, notify=True)
    j = await avatar_client(server, juliet)
    await _until_interested(server, juliet, r.jid, NS_METADATA)
    return juliet, romeo, j, r


async def test_account_advertises_conversion(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await avatar_client(server, jid, available=False)
    reply = await iq_xml(client, f"<query xmlns='{NS_DISCO_INFO}'/>", "get", jid)
    features = {f.get("var") for f in reply.xml.iter(q(NS_DISCO_INFO, "feature"))}
    assert "urn:xmpp:pep-vcard-conversion:0" in features
    await client.disconnect()


async def test_pep_avatar_reaches_contact_and_becomes_vcard_photo(server: RunningServer) -> None:
    juliet, _romeo, j, r = await pair(server)
    image = png(32, 16, b"juliet's face")
    digest = hashlib.sha1(image).hexdigest()
    avatars = j.xmpp.plugin["xep_0084"]
    await avatars.publish_avatar(image)
    await avatars.publish_avatar_metadata(
        [{"id": digest, "type": "image/png", "bytes": len(image)}]
    )
    note = await r.expect(live(NS_METADATA, juliet))
    assert [i.get("id") for i in infos(note)] == [digest]
    # the contact fetches the data through XEP-0084
    got = await r.xmpp.plugin["xep_0084"].retrieve_avatar(juliet, digest)
    data = got.xml.find(f".//{q(NS_DATA, 'data')}")
    assert data is not None and base64.b64decode(data.text or "") == image
    # XEP-0398 §3.1: the vCard has the photo, for XEP-0153 clients (and MUC)
    vcard = await vcard_of(r, juliet)
    assert vcard.findtext(f"{q(NS_VCARD, 'PHOTO')}/{q(NS_VCARD, 'TYPE')}") == "image/png"
    binval = vcard.findtext(f"{q(NS_VCARD, 'PHOTO')}/{q(NS_VCARD, 'BINVAL')}") or ""
    assert base64.b64decode("".join(binval.split())) == image
    # §4: the next presence carries the hash, though the client did not put it there
    j.xmpp.send_presence(pstatus="new face")
    seen = await r.expect(lambda s: presence(sender=j.jid)(s) and s["status"] == "new face")
    assert photo_hash_of(seen) == digest
    # switching the avatar off removes the vCard photo
    await avatars.stop()
    off = await r.expect(live(NS_METADATA, juliet))
    assert infos(off) == []
    assert (await vcard_of(j, juliet)).find(q(NS_VCARD, "PHOTO")) is None
    await j.disconnect()
    await r.disconnect()


async def test_vcard_photo_becomes_pep_avatar(server: RunningServer) -> None:
    juliet, _romeo, j, r = await pair(server)
    image = png(64, 48, b"a portrait")
    digest = hashlib.sha1(image).hexdigest()
    b64 = base64.b64encode(image).decode()
    vcard = (
        f"<vCard xmlns='{NS_VCARD}'><FN>Juliet</FN>"
        f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO></vCard>"
    )
    assert (await iq_xml(j, vcard))["type"] == "result"
    note = await r.expect(live(NS_METADATA, juliet))
    [info] = infos(note)
    assert info.attrib == {
        "id": digest,
        "bytes": str(len(image)),
        "type": "image/png",
        "width": "64",
        "height": "48",
    }
    reply = await get_items(r, juliet, NS_DATA, inner=f"<item xmlns='{NS_PUBSUB}' id='{digest}'/>")
    data = reply.xml.find(f".//{q(NS_DATA, 'data')}")
    assert data is not None and base64.b64decode(data.text or "") == image
    # the vCard is kept as the client set it
    stored = await vcard_of(j, juliet)
    assert stored.findtext(q(NS_VCARD, "FN")) == "Juliet"
    # the same photo again publishes nothing new
    assert (await iq_xml(j, vcard))["type"] == "result"
    await r.expect_nothing(live(NS_METADATA, juliet))
    # a vCard without photo switches the PEP avatar off
    assert (await iq_xml(j, f"<vCard xmlns='{NS_VCARD}'><FN>Juliet</FN></vCard>"))["type"] == (
        "result"
    )
    off = await r.expect(live(NS_METADATA, juliet))
    assert infos(off) == []
    await j.disconnect()
    await r.disconnect()


async def test_presence_hash_rules(server: RunningServer) -> None:
    _juliet, romeo, j, r = await pair(server)
    image = png(8, 8, b"tiny")
    digest = hashlib.sha1(image).hexdigest()
    b64 = base64.b64encode(image).decode()
    photo = f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO>"
    vcard = f"<vCard xmlns='{NS_VCARD}'>{photo}</vCard>"
    assert (await iq_xml(j, vcard))["type"] == "result"

    async def send(extra: str, status: str, to: str | None = None) -> Any:
        pres = j.xmpp.make_presence(pstatus=status, pto=to)
        if extra:
            pres.append(ET.fromstring(extra))
        pres.send()
        return await r.expect(lambda s: presence(sender=j.jid)(s) and s["status"] == status)

    # no <x/>: the hash is added (also in the copy the user's own resource gets)
    plain = await send("", "plain")
    assert photo_hash_of(plain) == digest
    # an empty <photo/> ("not ready to advertise") is left alone
    assert photo_hash_of(await send(f"<x xmlns='{NS_UPDATE}'><photo/></x>", "not ready")) == ""
    # an <x/> without <photo/> is filled in
    assert photo_hash_of(await send(f"<x xmlns='{NS_UPDATE}'/>", "empty x")) == digest
    # a client's own hash is kept
    other = "0" * 40
    own = await send(f"<x xmlns='{NS_UPDATE}'><photo>{other}</photo></x>", "own")
    assert photo_hash_of(own) == other
    # directed presence (a MUC join, say) gets the hash too
    directed = await send("", "directed", to=r.jid)
    assert photo_hash_of(directed) == digest
    assert romeo  # the contact that received all of the above
    await j.disconnect()
    await r.disconnect()


async def test_no_avatar_no_hash(server: RunningServer) -> None:
    juliet, _romeo, j, r = await pair(server)
    j.xmpp.send_presence(pstatus="bare")
    seen = await r.expect(lambda s: presence(sender=j.jid)(s) and s["status"] == "bare")
    assert seen.xml.find(q(NS_UPDATE, "x")) is None
    assert juliet
    await j.disconnect()
    await r.disconnect()
