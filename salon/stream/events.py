"""Actions a stream state machine asks its IO shell to carry out (imperative names)."""

from __future__ import annotations

from dataclasses import dataclass, field

from salon.errors import StreamErrorCondition
from salon.storage.interfaces import ScramCredential
from salon.xml.element import Element


@dataclass(slots=True)
class Send:
    """Write these bytes to the peer."""

    data: bytes


@dataclass(slots=True)
class StartTls:
    """Upgrade the transport to TLS now, then call ``tls_established``."""


@dataclass(slots=True)
class LookupAccount:
    """Load the account ``username`` of the stream's host, then call ``account_loaded``."""

    username: str


@dataclass(slots=True)
class VerifyPassword:
    """Run ``verify_password(password, credential)`` off the event loop (PBKDF2 is
    CPU-bound), then call ``password_checked`` with the result."""

    password: str = field(repr=False)
    credential: ScramCredential = field(repr=False)


@dataclass(slots=True)
class DelayedSend:
    """Write ``data`` after a pause (slows password guessing); ``attempt`` counts failures."""

    data: bytes
    attempt: int


@dataclass(slots=True)
class Authenticated:
    """SASL succeeded for ``username`` on the stream's host."""

    username: str
    mechanism: str


@dataclass(slots=True)
class BindRequested:
    """The client asks to bind ``resource`` (None: let the server pick); answer with
    ``bind_result``."""

    iq_id: str
    resource: str | None


@dataclass(slots=True)
class StanzaReceived:
    """A message, presence or iq from the authenticated, bound client."""

    stanza: Element


@dataclass(slots=True)
class StanzaAnswered:
    """The stream answered a stanza of the bound client itself (the legacy session iq, a
    second bind): handled all the same, as XEP-0198 counts stanzas."""


@dataclass(slots=True)
class NonzaReceived:
    """A stream-level element of a namespace the policy accepts (e.g. stream management).
    Before bind, answer it with ``prebind_nonza_done``."""

    element: Element


@dataclass(slots=True)
class PreAuthIq:
    """An iq get/set before authentication, in a namespace the policy opens for it (XEP-0077
    registration); answer with ``preauth_result``."""

    stanza: Element


@dataclass(slots=True)
class CloseConnection:
    """Close the transport once pending data is written. ``error`` is the stream error sent
    (None for an orderly close)."""

    error: StreamErrorCondition | None = None


StreamAction = (
    Send
    | StartTls
    | LookupAccount
    | VerifyPassword
    | DelayedSend
    | Authenticated
    | BindRequested
    | StanzaReceived
    | StanzaAnswered
    | NonzaReceived
    | PreAuthIq
    | CloseConnection
)
