"""Group chat across federation with Prosody (Debian's package): a Prosody user joins a room
of Salon's MUC service and chats there; a Salon user joins a room of Prosody's MUC component
(mod_muc) and chats there. Both see each other's presence, with the XEP-0045 status codes,
and each other's groupchat messages.

The setup is the one of ``test_prosody_federation`` (Salon serves capulet.example on
127.0.0.1, Prosody montague.example on 127.0.0.4), with server dialback between them (the
MUC domains authenticate as themselves: conference.capulet.example on Salon's side,
rooms.montague.example, a Prosody ``Component``, on Prosody's).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from salon.app import App
from salon.config import DEFAULT_MODULES, settings_from_dict
from tests.integration.harness import (
    NS_CLIENT,
    RawClient,
    RunningServer,
    issue_host_certs,
    q,
    server_settings,
)
from tests.interop.exchange import (
    CAPULET,
    MONTAGUE,
    SALON_ADDRESS,
    body,
    expect,
)
from tests.interop.test_prosody_federation import (
    PROSODY,
    PROSODY_ADDRESS,
    PROSODYCTL,
    Setup,
    free_port,
    prosody_login,
    salon_login,
    start_prosody,
    stop_prosody,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        PROSODY is None or PROSODYCTL is None,
        reason="Prosody is not installed (.ci/run installs Debian's 'prosody' package)",
    ),
]

SALON_MUC = f"conference.{CAPULET}"
PROSODY_MUC = f"rooms.{MONTAGUE}"
NS_MUC = "http://jabber.org/protocol/muc"
NS_USER = "http://jabber.org/protocol/muc#user"
NS_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DATA = "jabber:x:data"

MUC_COMPONENT = f"""
Component "{PROSODY_MUC}" "muc"
    restrict_room_creation = false
    muc_room_default_public = true
"""


@pytest.fixture
async def muc_interop(
    tmp_path: Path, ca: trustme.CA
) -> AsyncIterator[Callable[[], Awaitable[Setup]]]:
    running: list[Any] = []

    async def make() -> Setup:
        untrusted = tmp_path / "untrusted-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(untrusted))
        salon_port = free_port(SALON_ADDRESS)
        prosody = await start_prosody(
            tmp_path / "prosody",
            ca,
            trust=None,
            salon_port=salon_port,
            salon_domains=(CAPULET, SALON_MUC),
            extra_config=MUC_COMPONENT,
        )
        running.append(prosody)
        data_dir = tmp_path / "salon"
        data_dir.mkdir()
        data = server_settings(data_dir, issue_host_certs(ca, data_dir, (CAPULET,)))
        data["modules"] = {"enabled": list(dict.fromkeys([*DEFAULT_MODULES, "roster", "muc"]))}
        prosody_s2s = f"{PROSODY_ADDRESS}:{prosody.s2s_port}"
        data["s2s"] = {
            "enabled": True,
            "interfaces": [SALON_ADDRESS],
            "port": salon_port,
            "direct_tls_port": 0,
            "ca_file": str(untrusted),
            "overrides": {MONTAGUE: prosody_s2s, PROSODY_MUC: prosody_s2s},
            "connect_timeout": 8.0,
        }
        server = App(settings_from_dict(data))
        await server.start()
        ca_path = data_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        salon = RunningServer(server, ca, ca_path, data_dir, domain=CAPULET)
        running.append(salon)
        return Setup(salon, prosody, "dialback")

    yield make
    for item in reversed(running):
        if isinstance(item, RunningServer):
            await item.server.stop()
        else:
            stop_prosody(item)


# --------------------------------------------------------------------------- helpers
def codes(stanza: ET.Element) -> set[str]:
    return {s.get("code", "") for s in stanza.iter(q(NS_USER, "status"))}


def is_subject(stanza: ET.Element) -> bool:
    return stanza.find(q(NS_CLIENT, "subject")) is not None


def presence_from(jid: str, available: bool = True) -> Callable[[ET.Element], bool]:
    def match(e: ET.Element) -> bool:
        if e.get("from") != jid:
            return False
        return e.get("type") is None if available else e.get("type") == "unavailable"

    return match


async def join(setup: Setup, client: RawClient, occupant: str) -> ET.Element:
    """Enter a room; return the occupant's own presence (after which the subject comes)."""
    await client.send(f"<presence to='{occupant}'><x xmlns='{NS_MUC}'/></presence>")
    own = await expect(setup, client, "presence", presence_from(occupant))
    assert own.get("type") != "error", ET.tostring(own)
    await expect(setup, client, "message", is_subject)
    return own


async def instant(setup: Setup, client: RawClient, room: str) -> None:
    """Accept the default configuration of a new room (XEP-0045 §10.1.2)."""
    await client.send(
        f"<iq type='set' id='instant' to='{room}'><query xmlns='{NS_OWNER}'>"
        f"<x xmlns='{NS_DATA}' type='submit'/></query></iq>"
    )
    answer = await expect(setup, client, "iq", lambda e: e.get("id") == "instant")
    assert answer.get("type") == "result", ET.tostring(answer)


async def say(client: RawClient, room: str, text: str) -> None:
    await client.send(f"<message to='{room}' type='groupchat'><body>{text}</body></message>")


def groupchat(sender: str, text: str) -> Callable[[ET.Element], bool]:
    return lambda e: e.get("type") == "groupchat" and e.get("from") == sender and body(e) == text


# --------------------------------------------------------------------------- tests
async def test_prosody_user_joins_a_salon_room_and_chats(
    muc_interop: Callable[[], Awaitable[Setup]],
) -> None:
    setup = await muc_interop()
    room = f"balcony@{SALON_MUC}"
    juliet = await salon_login(setup, "juliet")
    own = await join(setup, juliet, f"{room}/juliet")
    assert {"110", "201"} <= codes(own)
    await instant(setup, juliet, room)

    romeo = await prosody_login(setup, "romeo")
    await romeo.send(f"<presence to='{room}/romeo'><x xmlns='{NS_MUC}'/></presence>")
    # Existing occupants first, then the new occupant's own presence with 110, then the subject.
    first = await expect(setup, romeo, "presence", lambda e: e.get("from", "").startswith(room))
    assert first.get("from") == f"{room}/juliet", ET.tostring(first)
    assert "110" not in codes(first)
    mine = await expect(setup, romeo, "presence", presence_from(f"{room}/romeo"))
    assert "110" in codes(mine)
    item = mine.find(f"{q(NS_USER, 'x')}/{q(NS_USER, 'item')}")
    assert item is not None and item.get("role") == "participant"
    await expect(setup, romeo, "message", is_subject)
    seen = await expect(setup, juliet, "presence", presence_from(f"{room}/romeo"))
    assert "110" not in codes(seen)

    await say(romeo, room, "Wherefore art thou")
    await expect(setup, juliet, "message", groupchat(f"{room}/romeo", "Wherefore art thou"))
    await expect(setup, romeo, "message", groupchat(f"{room}/romeo", "Wherefore art thou"))
    await say(juliet, room, "Here, on the balcony")
    await expect(setup, romeo, "message", groupchat(f"{room}/juliet", "Here, on the balcony"))

    await romeo.send(f"<presence to='{room}/romeo' type='unavailable'/>")
    gone = await expect(setup, romeo, "presence", presence_from(f"{room}/romeo", available=False))
    assert "110" in codes(gone)
    await expect(setup, juliet, "presence", presence_from(f"{room}/romeo", available=False))


async def test_salon_user_joins_a_prosody_room_and_chats(
    muc_interop: Callable[[], Awaitable[Setup]],
) -> None:
    setup = await muc_interop()
    room = f"verona@{PROSODY_MUC}"
    romeo = await prosody_login(setup, "romeo")
    own = await join(setup, romeo, f"{room}/romeo")
    assert {"110", "201"} <= codes(own)
    await instant(setup, romeo, room)

    juliet = await salon_login(setup, "juliet")
    await juliet.send(f"<presence to='{room}/juliet'><x xmlns='{NS_MUC}'/></presence>")
    first = await expect(setup, juliet, "presence", lambda e: e.get("from", "").startswith(room))
    assert first.get("from") == f"{room}/romeo", ET.tostring(first)
    mine = await expect(setup, juliet, "presence", presence_from(f"{room}/juliet"))
    assert "110" in codes(mine)
    await expect(setup, juliet, "message", is_subject)
    await expect(setup, romeo, "presence", presence_from(f"{room}/juliet"))

    await say(juliet, room, "Parting is such sweet sorrow")
    await expect(
        setup, romeo, "message", groupchat(f"{room}/juliet", "Parting is such sweet sorrow")
    )
    await expect(
        setup, juliet, "message", groupchat(f"{room}/juliet", "Parting is such sweet sorrow")
    )
    await say(romeo, room, "Sleep dwell upon thine eyes")
    await expect(
        setup, juliet, "message", groupchat(f"{room}/romeo", "Sleep dwell upon thine eyes")
    )

    await juliet.send(f"<presence to='{room}/juliet' type='unavailable'/>")
    gone = await expect(setup, juliet, "presence", presence_from(f"{room}/juliet", available=False))
    assert "110" in codes(gone)
    await expect(setup, romeo, "presence", presence_from(f"{room}/juliet", available=False))
