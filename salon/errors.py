"""Stream and stanza errors, named exactly as RFC 6120 §4.9.3 and §8.3.3 name them."""

from __future__ import annotations

from enum import StrEnum


class StreamErrorCondition(StrEnum):
    BAD_FORMAT = "bad-format"
    BAD_NAMESPACE_PREFIX = "bad-namespace-prefix"
    CONFLICT = "conflict"
    CONNECTION_TIMEOUT = "connection-timeout"
    HOST_GONE = "host-gone"
    HOST_UNKNOWN = "host-unknown"
    IMPROPER_ADDRESSING = "improper-addressing"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    INVALID_FROM = "invalid-from"
    INVALID_NAMESPACE = "invalid-namespace"
    INVALID_XML = "invalid-xml"
    NOT_AUTHORIZED = "not-authorized"
    NOT_WELL_FORMED = "not-well-formed"
    POLICY_VIOLATION = "policy-violation"
    REMOTE_CONNECTION_FAILED = "remote-connection-failed"
    RESET = "reset"
    RESOURCE_CONSTRAINT = "resource-constraint"
    RESTRICTED_XML = "restricted-xml"
    SEE_OTHER_HOST = "see-other-host"
    SYSTEM_SHUTDOWN = "system-shutdown"
    UNDEFINED_CONDITION = "undefined-condition"
    UNSUPPORTED_ENCODING = "unsupported-encoding"
    UNSUPPORTED_FEATURE = "unsupported-feature"
    UNSUPPORTED_STANZA_TYPE = "unsupported-stanza-type"
    UNSUPPORTED_VERSION = "unsupported-version"


class StanzaErrorCondition(StrEnum):
    BAD_REQUEST = "bad-request"
    CONFLICT = "conflict"
    FEATURE_NOT_IMPLEMENTED = "feature-not-implemented"
    FORBIDDEN = "forbidden"
    GONE = "gone"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    ITEM_NOT_FOUND = "item-not-found"
    JID_MALFORMED = "jid-malformed"
    NOT_ACCEPTABLE = "not-acceptable"
    NOT_ALLOWED = "not-allowed"
    NOT_AUTHORIZED = "not-authorized"
    POLICY_VIOLATION = "policy-violation"
    RECIPIENT_UNAVAILABLE = "recipient-unavailable"
    REDIRECT = "redirect"
    REGISTRATION_REQUIRED = "registration-required"
    REMOTE_SERVER_NOT_FOUND = "remote-server-not-found"
    REMOTE_SERVER_TIMEOUT = "remote-server-timeout"
    RESOURCE_CONSTRAINT = "resource-constraint"
    SERVICE_UNAVAILABLE = "service-unavailable"
    SUBSCRIPTION_REQUIRED = "subscription-required"
    UNDEFINED_CONDITION = "undefined-condition"
    UNEXPECTED_REQUEST = "unexpected-request"


# RFC 6120 §8.3.2: the error type that goes with each condition by default.
DEFAULT_ERROR_TYPE: dict[StanzaErrorCondition, str] = {
    StanzaErrorCondition.BAD_REQUEST: "modify",
    StanzaErrorCondition.CONFLICT: "cancel",
    StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED: "cancel",
    StanzaErrorCondition.FORBIDDEN: "auth",
    StanzaErrorCondition.GONE: "cancel",
    StanzaErrorCondition.INTERNAL_SERVER_ERROR: "cancel",
    StanzaErrorCondition.ITEM_NOT_FOUND: "cancel",
    StanzaErrorCondition.JID_MALFORMED: "modify",
    StanzaErrorCondition.NOT_ACCEPTABLE: "modify",
    StanzaErrorCondition.NOT_ALLOWED: "cancel",
    StanzaErrorCondition.NOT_AUTHORIZED: "auth",
    StanzaErrorCondition.POLICY_VIOLATION: "modify",
    StanzaErrorCondition.RECIPIENT_UNAVAILABLE: "wait",
    StanzaErrorCondition.REDIRECT: "modify",
    StanzaErrorCondition.REGISTRATION_REQUIRED: "auth",
    StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND: "cancel",
    StanzaErrorCondition.REMOTE_SERVER_TIMEOUT: "wait",
    StanzaErrorCondition.RESOURCE_CONSTRAINT: "wait",
    StanzaErrorCondition.SERVICE_UNAVAILABLE: "cancel",
    StanzaErrorCondition.SUBSCRIPTION_REQUIRED: "auth",
    StanzaErrorCondition.UNDEFINED_CONDITION: "cancel",
    StanzaErrorCondition.UNEXPECTED_REQUEST: "wait",
}


class StreamError(Exception):
    """A condition that ends the stream (RFC 6120 §4.9)."""

    def __init__(self, condition: StreamErrorCondition, text: str | None = None) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text


class StanzaError(Exception):
    """A condition answered with an error stanza (RFC 6120 §8.3); the stream lives on."""

    def __init__(
        self,
        condition: StanzaErrorCondition,
        text: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text
        self.error_type = error_type or DEFAULT_ERROR_TYPE[condition]
