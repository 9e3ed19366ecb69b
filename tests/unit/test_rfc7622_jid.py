"""Tests for salon.jid: XMPP address parsing and preparation per RFC 7622."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salon.jid import (
    JID,
    JIDError,
    parse_jid,
    prepare_domain,
    prepare_localpart,
    prepare_resourcepart,
)

# ---------------------------------------------------------------------------
# RFC 7622 §3.5, Table 1: valid addresses (input, local, domain, resource)
# ---------------------------------------------------------------------------

RFC7622_VALID: list[tuple[str, str | None, str, str | None]] = [
    ("juliet@example.com", "juliet", "example.com", None),
    ("juliet@example.com/foo", "juliet", "example.com", "foo"),
    ("juliet@example.com/foo bar", "juliet", "example.com", "foo bar"),
    ("juliet@example.com/foo@bar", "juliet", "example.com", "foo@bar"),
    ("foo\\20bar@example.com", "foo\\20bar", "example.com", None),
    ("fussball@example.com", "fussball", "example.com", None),
    ("fu\u00dfball@example.com", "fu\u00dfball", "example.com", None),
    ("\u03c0@example.com", "\u03c0", "example.com", None),
    # Capital sigma is lower-cased to small sigma.
    ("\u03a3@example.com/foo", "\u03c3", "example.com", "foo"),
    ("\u03c3@example.com/foo", "\u03c3", "example.com", "foo"),
    # Final sigma is already lower case; RFC 8265 (toLowerCase) keeps it.
    ("\u03c2@example.com/foo", "\u03c2", "example.com", "foo"),
    ("king@example.com/\u265a", "king", "example.com", "\u265a"),
    ("example.com", None, "example.com", None),
    ("example.com/foobar", None, "example.com", "foobar"),
    ("a.example.com/b@example.net", None, "a.example.com", "b@example.net"),
    # Table 2 lists this as invalid, but RFC 7622 erratum 4560 points out that
    # the OpaqueString profile allows a leading space.
    ("juliet@example.com/ foo", "juliet", "example.com", " foo"),
]

# RFC 7622 §3.5, Table 2: invalid addresses
RFC7622_INVALID: list[str] = [
    '"juliet"@example.com',  # quotation marks in localpart
    "foo bar@example.com",  # space in localpart
    "@example.com/",  # zero-length localpart and resourcepart
    "henry\u2163@example.com",  # ROMAN NUMERAL FOUR in localpart
    "\u265a@example.com",  # BLACK CHESS KING in localpart
    "juliet@",  # no domainpart
    "/foobar",  # resourcepart without domainpart
]


@pytest.mark.parametrize(("text", "local", "domain", "resource"), RFC7622_VALID)
def test_rfc7622_valid_examples(
    text: str, local: str | None, domain: str, resource: str | None
) -> None:
    jid = JID.parse(text)
    assert (jid.local, jid.domain, jid.resource) == (local, domain, resource)
    assert parse_jid(text) == jid


@pytest.mark.parametrize("text", RFC7622_INVALID)
def test_rfc7622_invalid_examples(text: str) -> None:
    with pytest.raises(JIDError):
        JID.parse(text)
    assert parse_jid(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "@",
        "/",
        "@/",
        "@example.com",
        "@example.com/res",
        "example.com/",
        "a@example.com/",
        "a@/res",
        "a@@example.com",
        "a@@example.com/res",
        "a@b@example.com",
    ],
)
def test_empty_and_malformed_parts(text: str) -> None:
    with pytest.raises(JIDError):
        JID.parse(text)


# ---------------------------------------------------------------------------
# Splitting (RFC 7622 §3.1)
# ---------------------------------------------------------------------------


def test_resource_is_everything_after_first_slash() -> None:
    jid = JID.parse("user@example.com/a/b@c/d")
    assert jid.local == "user"
    assert jid.domain == "example.com"
    assert jid.resource == "a/b@c/d"


def test_at_sign_after_slash_belongs_to_resource() -> None:
    jid = JID.parse("example.com/user@host")
    assert jid.local is None
    assert jid.resource == "user@host"


# ---------------------------------------------------------------------------
# Localpart
# ---------------------------------------------------------------------------


def test_localpart_is_case_insensitive() -> None:
    assert JID.parse("Juliet@Example.com") == JID.parse("juliet@example.com")
    assert hash(JID.parse("JULIET@EXAMPLE.COM")) == hash(JID.parse("juliet@example.com"))
    assert str(JID.parse("Juliet@Example.COM")) == "juliet@example.com"


def test_resourcepart_preserves_case() -> None:
    jid = JID.parse("juliet@example.com/Balcony")
    assert jid.resource == "Balcony"
    assert jid != JID.parse("juliet@example.com/balcony")


def test_fullwidth_localpart_is_width_mapped() -> None:
    jid = JID.parse("\uff2a\uff55\uff4c\uff49\uff45\uff54@example.com")  # fullwidth "Juliet"
    assert jid.local == "juliet"
    assert jid == JID.parse("juliet@example.com")


def test_fullwidth_domain_is_mapped() -> None:
    assert JID.parse("juliet@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com").domain == (
        "example.com"
    )


def test_fullwidth_resource_is_not_width_mapped() -> None:
    # OpaqueString does no width mapping.
    assert JID.parse("juliet@example.com/\uff26\uff4f\uff4f").resource == "\uff26\uff4f\uff4f"


@pytest.mark.parametrize("char", list("\"&'/:<>@"))
def test_localpart_forbidden_characters(char: str) -> None:
    with pytest.raises(JIDError):
        prepare_localpart(f"a{char}b")
    with pytest.raises(JIDError):
        JID.make(f"a{char}b", "example.com")


def test_fullwidth_forbidden_character_is_rejected_after_mapping() -> None:
    # FULLWIDTH COMMERCIAL AT maps to "@", which is forbidden.
    with pytest.raises(JIDError):
        prepare_localpart("a\uff20b")


@pytest.mark.parametrize("text", ["a b", "a\tb", "a\x00b", "a\u200bb", "\u00a0"])
def test_localpart_rejects_spaces_and_controls(text: str) -> None:
    with pytest.raises(JIDError):
        prepare_localpart(text)


def test_ascii_fast_path_matches_profile() -> None:
    import precis_i18n

    username = precis_i18n.get_profile("UsernameCaseMapped")
    opaque = precis_i18n.get_profile("OpaqueString")
    for code in range(0x20, 0x7F):
        text = f"x{chr(code)}Y"
        try:
            expected: str | None = username.enforce(text)
        except UnicodeError:
            expected = None
        if expected is not None and set(expected) & set("\"&'/:<>@"):
            expected = None
        try:
            got: str | None = prepare_localpart(text)
        except JIDError:
            got = None
        assert got == expected, text
        assert prepare_resourcepart(text) == opaque.enforce(text)


# ---------------------------------------------------------------------------
# Resourcepart
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["a\x00b", "a\x07", "\ufeffx", "x\u200b"])
def test_resourcepart_rejects_controls_and_ignorables(text: str) -> None:
    with pytest.raises(JIDError):
        prepare_resourcepart(text)


def test_resourcepart_maps_non_ascii_space() -> None:
    assert prepare_resourcepart("a\u00a0b") == "a b"


# ---------------------------------------------------------------------------
# Domainpart
# ---------------------------------------------------------------------------


def test_domain_is_lowercased() -> None:
    assert prepare_domain("Example.COM") == "example.com"


def test_idn_domain() -> None:
    assert prepare_domain("B\u00fccher.Example") == "b\u00fccher.example"
    # A-labels become U-labels, so both spellings are the same address.
    assert prepare_domain("xn--bcher-kva.example") == "b\u00fccher.example"
    assert JID.parse("a@xn--bcher-kva.example") == JID.parse("a@B\u00fccher.example")
    # Ideographic full stops separate labels too.
    assert (
        prepare_domain("\u4f8b\u3048\u3002\u30c6\u30b9\u30c8") == "\u4f8b\u3048.\u30c6\u30b9\u30c8"
    )
    # IDNA2008 keeps sharp s (no transitional mapping to "ss").
    assert prepare_domain("stra\u00dfe.de") == "stra\u00dfe.de"


def test_ipv4_domain() -> None:
    jid = JID.parse("user@127.0.0.1/res")
    assert jid.domain == "127.0.0.1"
    assert str(jid) == "user@127.0.0.1/res"


@pytest.mark.parametrize("text", ["1.2.3.999", "1.2.3", "01.2.3.4", "1.2.3.4.5"])
def test_bad_ipv4_domain(text: str) -> None:
    with pytest.raises(JIDError):
        prepare_domain(text)


def test_ipv6_domain() -> None:
    jid = JID.parse("user@[::1]/res")
    assert jid.domain == "[::1]"
    assert jid.resource == "res"
    assert str(jid) == "user@[::1]/res"
    assert prepare_domain("[2001:DB8:0:0::1]") == "[2001:db8::1]"


@pytest.mark.parametrize("text", ["[::1", "[]", "[example.com]", "[fe80::1%eth0]", "[1.2.3.4]"])
def test_bad_ipv6_domain(text: str) -> None:
    with pytest.raises(JIDError):
        prepare_domain(text)


def test_trailing_dot_is_stripped() -> None:
    assert JID.parse("juliet@example.com.") == JID.parse("juliet@example.com")
    assert JID.parse("example.com./res").domain == "example.com"
    assert prepare_domain("127.0.0.1.") == "127.0.0.1"
    with pytest.raises(JIDError):
        prepare_domain("example.com..")
    with pytest.raises(JIDError):
        prepare_domain(".")


@pytest.mark.parametrize(
    "text",
    [
        "ex ample.com",
        "example..com",
        ".example.com",
        "-example.com",
        "example-.com",
        "exa_mple.com",
        "example.com:5222",
        "exa<mple.com",
        'exa"mple.com',
        "a" * 64 + ".com",
        "ab--cd.example",
        "xn--zz.example",
        "\u265a.example",
        "\u00a0.example",
    ],
)
def test_bad_domains(text: str) -> None:
    with pytest.raises(JIDError):
        prepare_domain(text)


def test_label_of_63_octets_is_fine() -> None:
    assert prepare_domain("a" * 63 + ".com") == "a" * 63 + ".com"


# ---------------------------------------------------------------------------
# Length limits: 1..1023 octets per part
# ---------------------------------------------------------------------------


def test_localpart_length_limits() -> None:
    assert prepare_localpart("a" * 1023) == "a" * 1023
    with pytest.raises(JIDError):
        prepare_localpart("a" * 1024)
    # Octets, not characters: 341 * 3 = 1023, 342 * 3 = 1026.
    assert JID.make("\u4e2d" * 341, "example.com").local == "\u4e2d" * 341
    with pytest.raises(JIDError):
        prepare_localpart("\u4e2d" * 342)
    with pytest.raises(JIDError):
        prepare_localpart("")


def test_resourcepart_length_limits() -> None:
    assert prepare_resourcepart("r" * 1023) == "r" * 1023
    with pytest.raises(JIDError):
        prepare_resourcepart("r" * 1024)
    with pytest.raises(JIDError):
        prepare_resourcepart("")


def _long_domain(size: int) -> str:
    labels = ["a" * 63] * (size // 64)
    rest = size - 64 * len(labels)
    if rest:
        labels.append("b" * rest)
    name = ".".join(labels)
    assert len(name) == size
    return name


def test_domainpart_length_limits() -> None:
    ok = _long_domain(1023)
    assert prepare_domain(ok) == ok
    too_long = ".".join(["a" * 63] * 15 + ["c" * 62, "b"])
    assert len(too_long) == 1024
    with pytest.raises(JIDError):
        prepare_domain(too_long)
    with pytest.raises(JIDError):
        prepare_domain("")


def test_full_jid_at_the_limits() -> None:
    text = f"{'l' * 1023}@{_long_domain(1023)}/{'r' * 1023}"
    jid = JID.parse(text)
    assert str(jid) == text
    with pytest.raises(JIDError):
        JID.parse(f"{'l' * 1024}@example.com")
    with pytest.raises(JIDError):
        JID.parse(f"l@example.com/{'r' * 1024}")


def test_huge_input_is_rejected() -> None:
    with pytest.raises(JIDError):
        JID.parse("a" * 100_000 + "@example.com")
    assert parse_jid("x@" + "a" * 100_000) is None


# ---------------------------------------------------------------------------
# The JID type
# ---------------------------------------------------------------------------


def test_bare_full_domain_properties() -> None:
    full = JID.parse("juliet@example.com/balcony")
    assert full.is_full
    assert not full.is_bare
    assert not full.is_domain
    bare = full.bare
    assert bare == JID.parse("juliet@example.com")
    assert bare.is_bare
    assert not bare.is_full
    assert not bare.is_domain
    assert bare.bare is bare
    domain = JID.parse("example.com")
    assert domain.is_domain
    assert domain.is_bare
    assert not JID.parse("example.com/res").is_domain


def test_with_resource() -> None:
    bare = JID.parse("Juliet@example.com")
    full = bare.with_resource("Balcony\u00a0Left")
    assert full == JID.parse("juliet@example.com/Balcony Left")
    assert full.with_resource(None) == bare
    assert full.with_resource("other").resource == "other"
    with pytest.raises(JIDError):
        bare.with_resource("")
    with pytest.raises(JIDError):
        bare.with_resource("bad\x00")


@pytest.mark.parametrize(
    "text",
    [
        "juliet@example.com",
        "juliet@example.com/balcony",
        "example.com",
        "example.com/res",
        "user@[::1]/x/y",
        "\u03c0@b\u00fccher.example/\u265a",
    ],
)
def test_str_round_trip(text: str) -> None:
    jid = JID.parse(text)
    assert str(jid) == text
    assert JID.parse(str(jid)) == jid


def test_make() -> None:
    assert JID.make("Juliet", "Example.com", "Res") == JID.parse("juliet@example.com/Res")
    assert JID.make(None, "example.com") == JID.parse("example.com")
    with pytest.raises(JIDError):
        JID.make("", "example.com")
    with pytest.raises(JIDError):
        JID.make("a", "")
    with pytest.raises(JIDError):
        JID.make("a", "example.com", "")


def test_jid_is_hashable_and_compares_by_its_parts() -> None:
    jid = JID.parse("juliet@example.com/r")
    assert {jid, JID.parse("JULIET@example.com/r")} == {jid}
    same = JID("juliet", "example.com", "r")  # another instance, equal parts
    assert same == jid and hash(same) == hash(jid) and same is not jid
    assert jid != JID("juliet", "example.com", None) and jid != "juliet@example.com/r"
    assert jid.bare == JID("juliet", "example.com") and jid.bare is jid.bare
    assert str(jid) == "juliet@example.com/r" and pickle.loads(pickle.dumps(jid)) == jid


def test_parse_cache_shares_instances_and_caches_errors() -> None:
    assert JID.parse("cache@example.com/r") is JID.parse("cache@example.com/r")
    for _ in range(2):
        with pytest.raises(JIDError, match="localpart"):
            JID.parse("bad user@example.com")


def test_error_messages_are_plain() -> None:
    with pytest.raises(JIDError, match="domainpart is empty"):
        JID.parse("juliet@")
    with pytest.raises(JIDError, match="must not contain"):
        JID.parse("a:b@example.com")
    with pytest.raises(JIDError, match="1023"):
        JID.parse("a" * 1024 + "@example.com")
    assert issubclass(JIDError, ValueError)


def test_parse_jid_returns_none() -> None:
    assert parse_jid("") is None
    assert parse_jid("@example.com") is None
    assert parse_jid("a\ud800@example.com") is None
    assert parse_jid("juliet@example.com") == JID("juliet", "example.com", None)


# ---------------------------------------------------------------------------
# Property-based tests
# ---------------------------------------------------------------------------

_ALPHABET = st.characters(codec="utf-8")
_SPECIALS = st.sampled_from(list("@/.[]:\"&'<> \u3002\uff20\uff0f"))
_JID_LIKE_TEXT = st.lists(st.one_of(_ALPHABET, _SPECIALS), max_size=40).map("".join)

_LABEL = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZ0189-\u00fc\u00df\u03c0\u4e2d"),
    min_size=1,
    max_size=12,
)
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_PART = st.text(
    alphabet=st.one_of(
        st.sampled_from("abcXYZ019-_.!~\u00e9\u00c9\u03a3\u03c2\uff21\u265a \u00a0@/"),
        st.characters(codec="utf-8", categories=("L", "N", "M", "P", "S", "Zs")),
    ),
    min_size=1,
    max_size=12,
)


@st.composite
def _plausible_jids(draw: st.DrawFn) -> str:
    text = draw(_DOMAIN)
    local = draw(st.none() | _PART)
    resource = draw(st.none() | _PART)
    if local is not None:
        text = f"{local}@{text}"
    if resource is not None:
        text = f"{text}/{resource}"
    return text


def _check_parse(text: str) -> None:
    try:
        jid = JID.parse(text)
    except JIDError:
        assert parse_jid(text) is None
        return
    again = JID.parse(str(jid))
    assert again == jid
    assert str(again) == str(jid)
    assert JID.make(jid.local, jid.domain, jid.resource) == jid


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), _JID_LIKE_TEXT))
def test_parse_arbitrary_text_only_raises_jiderror(text: str) -> None:
    _check_parse(text)


@settings(max_examples=400, deadline=None)
@given(_plausible_jids())
def test_parse_round_trips(text: str) -> None:
    _check_parse(text)
