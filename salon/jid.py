"""XMPP addresses (JIDs) as defined by RFC 7622.

An address has the form ``[localpart "@"] domainpart ["/" resourcepart]``.
Every part is prepared and enforced when a :class:`JID` is built through
:meth:`JID.parse` or :meth:`JID.make`:

* localpart: PRECIS ``UsernameCaseMapped`` profile (width mapping, case
  mapping to lower case, NFC, IdentifierClass), plus the characters that
  RFC 7622 §3.3.1 forbids on top of it: ``" & ' / : < > @``.
* domainpart: an IPv6 literal in brackets or a dotted IPv4 address is kept
  (IPv6 is written in its compressed lower-case form); anything else is
  mapped with UTS #46 (lower case, width mapping, ideographic full stops),
  has one trailing dot removed and must be a valid IDNA2008 name.  A-labels
  (``xn--``) are turned into U-labels, so the stored form is Unicode.
* resourcepart: PRECIS ``OpaqueString`` profile (case is preserved).

Each part must be 1 to 1023 octets long once encoded as UTF-8.

Because addresses are parsed for every stanza, :meth:`JID.parse` keeps a
bounded cache of results (including failures).  :class:`JID` instances are
immutable, so handing out the same instance to several callers is safe.
Equality and hashing use the prepared parts, so two spellings of the same
address compare equal once parsed.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Final

import idna
import precis_i18n

__all__ = [
    "JID",
    "MAX_PART_OCTETS",
    "JIDError",
    "parse_jid",
    "prepare_domain",
    "prepare_localpart",
    "prepare_resourcepart",
]

MAX_PART_OCTETS = 1023
"""Largest allowed size of any one part, in UTF-8 octets (RFC 7622 §3)."""

_MAX_LABEL_OCTETS = 63
# Inputs larger than this cannot possibly produce three parts within the
# limits above, however much PRECIS/UTS #46 mapping shrinks them; refuse them
# before doing any real work.
_MAX_INPUT_CHARS = 4 * (3 * MAX_PART_OCTETS + 2)
# Longer texts are still parsed, but not remembered by the cache, so that the
# cache's memory use stays small.
_MAX_CACHED_CHARS = 1024
_CACHE_SIZE = 10_000
_PART_CACHE_SIZE = 4096
_INTERNED = 65_536  # addresses kept as one shared instance each (see _interned)

# RFC 7622 §3.3.1: characters forbidden in a localpart in addition to what
# the UsernameCaseMapped profile forbids.
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")
# Printable ASCII that the UsernameCaseMapped profile accepts unchanged
# (apart from lower-casing) and RFC 7622 does not forbid.
_ASCII_LOCAL_RE = re.compile(r"[\x21\x23-\x25\x28-\x2e\x30-\x39\x3b\x3d\x3f\x41-\x7e]+")
# Printable ASCII, which the OpaqueString profile leaves unchanged.
_ASCII_RESOURCE_RE = re.compile(r"[\x20-\x7e]+")
# A host name made of LDH labels only (already lower-cased).
_LDH_NAME_RE = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
_DOTTED_DIGITS_RE = re.compile(r"[0-9.]+")

_USERNAME_PROFILE = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE_PROFILE = precis_i18n.get_profile("OpaqueString")


class JIDError(ValueError):
    """Raised when a text or a part is not a valid XMPP address."""


# --------------------------------------------------------------------------
# Part preparation
# --------------------------------------------------------------------------


def _utf8_len(s: str, what: str) -> int:
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise JIDError(f"{what} contains an invalid code point (a lone surrogate)") from exc


def _check_length(s: str, what: str) -> None:
    size = _utf8_len(s, what)
    if size == 0:
        raise JIDError(f"{what} is empty")
    if size > MAX_PART_OCTETS:
        raise JIDError(f"{what} is {size} bytes long; the limit is {MAX_PART_OCTETS} bytes")


def _precis_error(what: str, exc: UnicodeError) -> JIDError:
    if isinstance(exc, UnicodeEncodeError):
        reason = exc.reason
        if "empty" in reason:
            return JIDError(f"{what} is empty")
        if exc.start < len(exc.object):
            char = exc.object[exc.start]
            return JIDError(
                f"{what} contains the disallowed character {char!r} "
                f"(U+{ord(char):04X}; {reason.split()[0]})"
            )
        return JIDError(f"{what} is not allowed ({reason})")
    return JIDError(f"{what} is not allowed ({exc})")


@lru_cache(maxsize=_PART_CACHE_SIZE)
def _prepare_localpart(s: str) -> str:
    if not s:
        raise JIDError("localpart is empty")
    if len(s) > _MAX_INPUT_CHARS:
        raise JIDError(f"localpart is longer than {MAX_PART_OCTETS} bytes")
    if _ASCII_LOCAL_RE.fullmatch(s):
        # Fast path: for printable ASCII the profile only lower-cases.
        result = s.lower()
    else:
        _utf8_len(s, "localpart")
        try:
            result = _USERNAME_PROFILE.enforce(s)
        except UnicodeError as exc:
            raise _precis_error("localpart", exc) from None
        for char in result:
            if char in _LOCAL_FORBIDDEN:
                raise JIDError(f"localpart must not contain {char!r}")
    _check_length(result, "localpart")
    return result


def prepare_localpart(s: str) -> str:
    """Prepare and enforce a localpart (RFC 7622 §3.3); raise :class:`JIDError`."""
    return _prepare_localpart(s)


@lru_cache(maxsize=_PART_CACHE_SIZE)
def _prepare_resourcepart(s: str) -> str:
    if not s:
        raise JIDError("resourcepart is empty")
    if len(s) > _MAX_INPUT_CHARS:
        raise JIDError(f"resourcepart is longer than {MAX_PART_OCTETS} bytes")
    if _ASCII_RESOURCE_RE.fullmatch(s):
        # Fast path: printable ASCII is left unchanged by the profile.
        result = s
    else:
        _utf8_len(s, "resourcepart")
        try:
            result = _OPAQUE_PROFILE.enforce(s)
        except UnicodeError as exc:
            raise _precis_error("resourcepart", exc) from None
    _check_length(result, "resourcepart")
    return result


def prepare_resourcepart(s: str) -> str:
    """Prepare and enforce a resourcepart (RFC 7622 §3.4); raise :class:`JIDError`."""
    return _prepare_resourcepart(s)


def _prepare_ip_literal(s: str) -> str:
    inner = s[1:-1] if s.endswith("]") else None
    if not inner or "%" in inner:
        raise JIDError(f"domainpart {s!r} is not a valid IPv6 address literal")
    try:
        address = ipaddress.IPv6Address(inner)
    except ValueError:
        raise JIDError(f"domainpart {s!r} is not a valid IPv6 address literal") from None
    return f"[{address.compressed}]"


def _check_labels(name: str) -> str:
    """Validate every label of a mapped, non-IP domain name; return U-labels."""
    labels = name.split(".")
    result: list[str] = []
    for label in labels:
        if not label:
            raise JIDError(f"domainpart {name!r} contains an empty label")
        try:
            ulabel = idna.ulabel(label)
            alabel = idna.alabel(ulabel)
        except idna.IDNAError as exc:
            raise JIDError(f"domainpart label {label!r} is not valid: {exc}") from None
        if len(alabel) > _MAX_LABEL_OCTETS:
            raise JIDError(f"domainpart label {label!r} is longer than {_MAX_LABEL_OCTETS} bytes")
        result.append(ulabel)
    return ".".join(result)


@lru_cache(maxsize=_PART_CACHE_SIZE)
def _prepare_domain(s: str) -> str:
    if not s:
        raise JIDError("domainpart is empty")
    if len(s) > _MAX_INPUT_CHARS:
        raise JIDError(f"domainpart is longer than {MAX_PART_OCTETS} bytes")
    if s.startswith("["):
        return _prepare_ip_literal(s)
    _utf8_len(s, "domainpart")
    if s.isascii():
        mapped = s.lower()
    else:
        try:
            mapped = idna.uts46_remap(s, std3_rules=True, transitional=False)
        except idna.IDNAError as exc:
            if getattr(exc, "code", None) == "input_too_long":
                raise JIDError(f"domainpart is longer than {MAX_PART_OCTETS} bytes") from None
            raise JIDError(f"domainpart {s!r} is not a valid domain name: {exc}") from None
    # RFC 7622 §3.2: one trailing dot is removed.
    if mapped.endswith("."):
        mapped = mapped[:-1]
    if not mapped:
        raise JIDError("domainpart is empty")
    if _DOTTED_DIGITS_RE.fullmatch(mapped):
        try:
            ipaddress.IPv4Address(mapped)
        except ValueError:
            raise JIDError(f"domainpart {s!r} is not a valid IPv4 address") from None
        return mapped
    if _LDH_NAME_RE.fullmatch(mapped) and "--" not in mapped:
        result = mapped
    else:
        result = _check_labels(mapped)
    _check_length(result, "domainpart")
    return result


def prepare_domain(s: str) -> str:
    """Prepare and enforce a domainpart (RFC 7622 §3.2); raise :class:`JIDError`."""
    return _prepare_domain(s)


# --------------------------------------------------------------------------
# The address type
# --------------------------------------------------------------------------


class JID:
    """A prepared XMPP address.

    Build instances with :meth:`parse` or :meth:`make`; the constructor
    itself trusts its arguments to be prepared already.

    Immutable by contract (the parts are ``Final``, so the type checker refuses an
    assignment; :meth:`parse` hands the same instance to every caller). It is a plain slotted
    class rather than a frozen dataclass because addresses are built, compared and hashed for
    every routed stanza: a frozen dataclass pays ``object.__setattr__`` for each part, and its
    generated ``__eq__``/``__hash__`` build tuples on every call. Here the hash, the bare
    address and the text are computed once per instance.
    """

    __slots__ = ("_bare", "_hash", "_text", "domain", "local", "resource")

    local: Final[str | None]
    domain: Final[str]
    resource: Final[str | None]

    def __init__(self, local: str | None, domain: str, resource: str | None = None) -> None:
        self.local = local
        self.domain = domain
        self.resource = resource
        self._hash: int | None = None
        self._bare: JID | None = None
        self._text: str | None = None

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is not JID:
            return NotImplemented
        assert isinstance(other, JID)
        return (
            self.domain == other.domain
            and self.local == other.local
            and self.resource == other.resource
        )

    def __hash__(self) -> int:
        value = self._hash
        if value is None:
            value = self._hash = hash((self.local, self.domain, self.resource))
        return value

    def __repr__(self) -> str:
        return f"JID(local={self.local!r}, domain={self.domain!r}, resource={self.resource!r})"

    def __reduce__(self) -> tuple[type[JID], tuple[str | None, str, str | None]]:
        return (JID, (self.local, self.domain, self.resource))

    @classmethod
    def parse(cls, text: str) -> JID:
        """Split *text* per RFC 7622 §3.1 and prepare every part."""
        if len(text) > _MAX_CACHED_CHARS:
            return _parse_uncached(text)
        outcome = _parse_cached(text)
        if isinstance(outcome, str):
            raise JIDError(outcome)
        return outcome

    @classmethod
    def make(cls, local: str | None, domain: str, resource: str | None = None) -> JID:
        """Build an address from separate parts, preparing each of them."""
        return _interned(
            None if local is None else _prepare_localpart(local),
            _prepare_domain(domain),
            None if resource is None else _prepare_resourcepart(resource),
        )

    @property
    def bare(self) -> JID:
        """This address without its resourcepart."""
        if self.resource is None:
            return self
        bare = self._bare
        if bare is None:
            bare = self._bare = _interned(self.local, self.domain, None)
        return bare

    @property
    def is_bare(self) -> bool:
        """True when there is no resourcepart."""
        return self.resource is None

    @property
    def is_full(self) -> bool:
        """True when there is a resourcepart."""
        return self.resource is not None

    @property
    def is_domain(self) -> bool:
        """True when the address is a domainpart alone."""
        return self.local is None and self.resource is None

    def with_resource(self, resource: str | None) -> JID:
        """This address with *resource* (prepared) as resourcepart; None drops it."""
        if resource is None:
            return self.bare
        return _interned(self.local, self.domain, _prepare_resourcepart(resource))

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = self.domain
            if self.local is not None:
                text = f"{self.local}@{text}"
            if self.resource is not None:
                text = f"{text}/{self.resource}"
            self._text = text
        return text


def _parse_uncached(text: str) -> JID:
    if len(text) > _MAX_INPUT_CHARS:
        raise JIDError("address is too long")
    # RFC 7622 §3.1: the resourcepart is everything after the first "/";
    # the localpart is what precedes the first "@" of the remainder.
    rest, slash, resource = text.partition("/")
    local, at, domain = rest.partition("@")
    if not at:
        local, domain = "", rest
    if at and not local:
        raise JIDError("localpart is empty (the address starts with '@')")
    if slash and not resource:
        raise JIDError("resourcepart is empty (the address ends with '/')")
    if not domain:
        raise JIDError("domainpart is empty")
    return _interned(
        _prepare_localpart(local) if at else None,
        _prepare_domain(domain),
        _prepare_resourcepart(resource) if slash else None,
    )


@lru_cache(maxsize=_INTERNED)
def _interned(local: str | None, domain: str, resource: str | None) -> JID:
    """One instance per address while it is among the ``_INTERNED`` most recently used, so
    dictionaries keyed by addresses (sessions, rosters, blocklists, caches) find their keys
    by identity, without calling ``JID.__eq__``. Equal instances made otherwise still compare
    and hash equal: this saves time, it is not needed for correctness."""
    return JID(local, domain, resource)


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_cached(text: str) -> JID | str:
    """Parse *text*, returning the error message instead of raising.

    Failures are cached as plain strings (not exception objects, whose
    tracebacks would grow each time they were raised again).
    """
    try:
        return _parse_uncached(text)
    except JIDError as exc:
        return str(exc)


def parse_jid(text: str) -> JID | None:
    """Like :meth:`JID.parse`, but return None for an invalid address."""
    try:
        return JID.parse(text)
    except JIDError:
        return None
