"""The pure conversions behind bookmarks (XEP-0402 §5.3), avatars (XEP-0398) and TURN
credentials (XEP-0215 with the TURN REST API scheme)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from salon.jid import JID
from salon.modules.avatars import image_size, metadata_for, vcard_photo, with_photo
from salon.modules.bookmarks import Bookmark, from_storage, to_storage
from salon.modules.extdisco import turn_credentials, xep0082
from salon.namespaces import NS_BOOKMARKS, NS_LEGACY_BOOKMARKS, NS_VCARD
from salon.xml.fragment import parse_element
from salon.xml.serializer import serialize_str


def test_legacy_conference_round_trips_through_native_form() -> None:
    storage = parse_element(
        f"<storage xmlns='{NS_LEGACY_BOOKMARKS}'>"
        "<conference jid='room@muc.example' name='Room' autojoin='1'><nick>me</nick>"
        "<password>pw</password><x xmlns='urn:example'>extra</x></conference>"
        "<conference jid='not a jid@@'/><conference jid='r@muc.example/res'/>"
        "<url name='Site' url='https://example.org/'/></storage>"
    )
    found = from_storage(storage)
    assert list(found) == ["room@muc.example"]  # invalid and full JIDs are skipped
    bookmark = found["room@muc.example"]
    native = bookmark.to_native()
    assert native.ns == NS_BOOKMARKS and native.get("autojoin") == "true"
    extensions = native.find("extensions")
    assert extensions is not None and [e.tag for e in extensions.elements()] == ["x"]
    again = Bookmark.from_native("room@muc.example", parse_element(serialize_str(native)))
    assert again is not None and again.key == bookmark.key
    rebuilt = to_storage([again], storage)
    assert [c.tag for c in rebuilt.elements()] == ["conference", "url"]
    conference = rebuilt.find("conference")
    assert conference is not None and conference.find_text("password") == "pw"
    assert conference.find("x", "urn:example") is not None


def test_native_payload_in_another_namespace_is_not_a_bookmark() -> None:
    wrong = parse_element(f"<conference xmlns='{NS_LEGACY_BOOKMARKS}' jid='a@b'/>")
    assert Bookmark.from_native("a@b", wrong) is None
    assert Bookmark.from_native("a@b", None) is None


def test_vcard_photo_and_metadata() -> None:
    image = b"GIF89a" + (3).to_bytes(2, "little") + (5).to_bytes(2, "little") + b"rest"
    vcard = with_photo(
        parse_element(f"<vCard xmlns='{NS_VCARD}'><FN>A</FN></vCard>"), (image, "image/gif")
    )
    assert vcard.find_text("FN") == "A"
    assert vcard_photo(vcard) == (image, "image/gif")
    assert image_size(image) == (3, 5)
    info = metadata_for(image, "image/gif").find("info")
    assert info is not None
    assert info.attrs == {
        "bytes": str(len(image)),
        "id": hashlib.sha1(image).hexdigest(),
        "type": "image/gif",
        "width": "3",
        "height": "5",
    }
    assert vcard_photo(with_photo(vcard, None)) is None
    broken = parse_element(f"<vCard xmlns='{NS_VCARD}'><PHOTO><BINVAL>%%%</BINVAL></PHOTO></vCard>")
    assert vcard_photo(broken) is None


def test_turn_rest_api_credentials() -> None:
    user = JID.make("alice", "example.org", "phone")
    username, password = turn_credentials("s3cret", user, 1_700_003_600)
    assert username == "1700003600:alice@example.org"
    digest = hmac.new(b"s3cret", username.encode(), "sha1").digest()
    assert password == base64.b64encode(digest).decode()
    assert xep0082(1_700_003_600) == "2023-11-14T23:13:20Z"
