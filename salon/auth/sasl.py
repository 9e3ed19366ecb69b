"""Server side of SASL authentication (RFC 6120 §6): SCRAM (RFC 5802) and PLAIN (RFC 4616).

This module is sans-IO: it never touches sockets, the event loop or storage.
The stream layer (the "shell") drives a :class:`SaslServer` and acts on the
:data:`SaslStep` values it returns:

* :class:`Challenge` -- send ``<challenge/>`` with the data, wait for ``<response/>``
  and pass its decoded data to :meth:`SaslServer.respond`;
* :class:`NeedAccount` -- look the account up (``None`` if it does not exist) and
  pass it to :meth:`SaslServer.account`;
* :class:`CheckPassword` -- (PLAIN) run :func:`~salon.auth.credentials.verify_password`
  on the password and credential it carries, off the event loop (PBKDF2 is CPU-bound),
  and pass the result to :meth:`SaslServer.password_checked`;
* :class:`Success` -- send ``<success/>`` (with ``data`` if not ``None``);
* :class:`Failure` -- send ``<failure/>`` with the condition; the exchange is over.

A typical SCRAM exchange::

    server = SaslServer("SCRAM-SHA-256", domain="example.org", is_secure=True,
                        channel_bindings={"tls-exporter": cb_data})
    step = server.start(initial_response)    # -> NeedAccount("juliet")
    step = server.account(account)           # -> Challenge(server-first)
    step = server.respond(client_final)      # -> Success("juliet", server-final)

SCRAM channel binding (RFC 5056, RFC 5929 ``tls-server-end-point``, RFC 9266
``tls-exporter``) works with any binding type the shell supplies data for; the
server side of SCRAM is implemented here directly from RFC 5802 because
scramp 1.5 can neither bind to ``tls-exporter`` nor accept a gs2 authzid
(scramp is still used to make the stored credentials and, in the tests, as an
independent client).

Unknown users are not revealed early: when :meth:`SaslServer.account` gets
``None`` (or an account without a credential for the mechanism's hash), the
SCRAM exchange carries on with a deterministic fake salt and fails with
``not-authorized`` only after the client's proof, exactly like a wrong password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum, auto
from typing import TypeAlias

from salon.auth.credentials import prepare_username
from salon.storage.interfaces import Account, ScramCredential

__all__ = [
    "SCRAM_MECHANISMS",
    "Challenge",
    "CheckPassword",
    "Failure",
    "NeedAccount",
    "SaslCondition",
    "SaslServer",
    "SaslStep",
    "Success",
    "offered_mechanisms",
]

_log = logging.getLogger(__name__)


class SaslCondition(StrEnum):
    """SASL failure conditions, named exactly as in RFC 6120 §6.5 (a ``str`` enum)."""

    ABORTED = "aborted"
    ACCOUNT_DISABLED = "account-disabled"
    CREDENTIALS_EXPIRED = "credentials-expired"
    ENCRYPTION_REQUIRED = "encryption-required"
    INCORRECT_ENCODING = "incorrect-encoding"
    INVALID_AUTHZID = "invalid-authzid"
    INVALID_MECHANISM = "invalid-mechanism"
    MALFORMED_REQUEST = "malformed-request"
    MECHANISM_TOO_WEAK = "mechanism-too-weak"
    NOT_AUTHORIZED = "not-authorized"
    TEMPORARY_AUTH_FAILURE = "temporary-auth-failure"


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``<challenge/>`` carrying ``data`` (may be empty) and await a response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    """Authentication succeeded as ``username`` (a prepared localpart).

    ``data`` is the "additional data with success" to put in ``<success/>``
    (the SCRAM server-final message), or ``None`` for an empty element.
    """

    username: str
    data: bytes | None


@dataclass(frozen=True, slots=True)
class Failure:
    """Authentication failed; send ``<failure/>`` with ``condition`` (and ``text``)."""

    condition: SaslCondition
    text: str | None = None


@dataclass(frozen=True, slots=True)
class NeedAccount:
    """The shell must look up ``username`` and call :meth:`SaslServer.account`."""

    username: str


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """The shell must run ``verify_password(password, credential)`` away from the event
    loop (one PBKDF2 derivation) and pass its result to :meth:`SaslServer.password_checked`.

    For an unknown account ``credential`` is a fake one, so the work (and the time it
    takes) is the same; the exchange fails whatever the result.
    """

    password: str = field(repr=False)
    credential: ScramCredential = field(repr=False)


SaslStep: TypeAlias = Challenge | Success | Failure | NeedAccount | CheckPassword

#: SCRAM mechanisms this server implements, strongest first.
SCRAM_MECHANISMS: tuple[str, ...] = (
    "SCRAM-SHA-512-PLUS",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
)

_PLAIN = "PLAIN"

#: SCRAM hash name (as in ``ScramCredential.hash_name``) -> hashlib name.
_HASHLIB_NAMES: dict[str, str] = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}

#: Credential preference for PLAIN, which can verify against any of them.
_PLAIN_HASH_PREFERENCE: tuple[str, ...] = ("SHA-256", "SHA-512", "SHA-1")

#: RFC 5056 channel binding type names: 1*(ALPHA / DIGIT / "." / "-").
_CB_NAME_RE = re.compile(r"[A-Za-z0-9.\-]+")

#: RFC 5802 §7 nonce: printable ASCII except ",".
_NONCE_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")

#: RFC 5802 §7 attr-val / extension: ALPHA "=" 1*value-char.
_ATTR_RE = re.compile(r"[A-Za-z]=.+", re.DOTALL)

#: Limits on PLAIN fields, in octets (RFC 4616 requires at least 255; a bare
#: JID is at most 3071, RFC 7622 §3.1).
_PLAIN_MAX_AUTHZID = 3071
_PLAIN_MAX_AUTHCID = 1023
_PLAIN_MAX_PASSWD = 1023

#: Iteration count advertised for accounts that do not exist.
_MOCK_ITERATIONS = 4096

#: Per-process secret making fake salts stable per username but unguessable.
_MOCK_SECRET = secrets.token_bytes(32)


def offered_mechanisms(
    *, is_secure: bool, channel_bindings: Sequence[str], allow_plain: bool = True
) -> list[str]:
    """Mechanisms to advertise in ``<mechanisms/>``, strongest first.

    ``-PLUS`` variants only when the stream is secure (TLS) and at least one
    channel binding type is available; ``PLAIN`` only over TLS and when
    ``allow_plain``.
    """
    mechanisms = [
        name
        for name in SCRAM_MECHANISMS
        if not name.endswith("-PLUS") or (is_secure and len(channel_bindings) > 0)
    ]
    if is_secure and allow_plain:
        mechanisms.append(_PLAIN)
    return mechanisms


class _State(Enum):
    INITIAL = auto()
    PLAIN_WAIT_MESSAGE = auto()
    SCRAM_WAIT_CLIENT_FIRST = auto()
    WAIT_ACCOUNT = auto()
    PLAIN_WAIT_CHECK = auto()
    SCRAM_WAIT_CLIENT_FINAL = auto()
    DONE = auto()


class _Reject(Exception):
    """Raised internally to end the exchange with a :class:`Failure`."""

    def __init__(self, condition: SaslCondition, text: str | None = None) -> None:
        super().__init__(condition, text)
        self.failure = Failure(condition, text)


def _malformed(text: str) -> _Reject:
    return _Reject(SaslCondition.MALFORMED_REQUEST, text)


def _decode_utf8(data: bytes, what: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(f"{what} is not valid UTF-8") from None
    if "\x00" in text:
        raise _malformed(f"{what} contains NUL")
    return text


def _decode_saslname(value: str, what: str) -> str:
    """Undo RFC 5802 saslname escaping (``=2C`` -> ``,``, ``=3D`` -> ``=``)."""
    pieces = value.split("=")
    out = [pieces[0]]
    for piece in pieces[1:]:
        if piece.startswith("2C"):
            out.append("," + piece[2:])
        elif piece.startswith("3D"):
            out.append("=" + piece[2:])
        else:
            raise _malformed(f"bad '=' escape in {what}")
    return "".join(out)


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise _malformed(f"{what} is not valid base64") from None


def _hmac(algorithm: str, key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, algorithm).digest()


class SaslServer:
    """One SASL exchange for one mechanism on one stream (sans-IO).

    ``channel_bindings`` maps channel binding type names (e.g. ``"tls-exporter"``,
    ``"tls-server-end-point"``) to this TLS connection's binding data; it is
    empty when the stream is not TLS.  ``allow_plain=False`` refuses PLAIN with
    ``invalid-mechanism``.

    No public method raises: every problem, including calls out of order,
    yields a :class:`Failure`, after which the exchange is over and any further
    call (other than :meth:`abort`) yields ``malformed-request``.

    Nothing here is CPU-heavy: PLAIN hands its one PBKDF2 derivation to the shell with
    :class:`CheckPassword`; SCRAM steps are cheap.
    """

    def __init__(
        self,
        mechanism: str,
        *,
        domain: str,
        is_secure: bool,
        channel_bindings: Mapping[str, bytes],
        allow_plain: bool = True,
    ) -> None:
        """Prepare an exchange; problems with the mechanism surface from :meth:`start`."""
        self._mechanism = mechanism
        self._domain = domain
        self._is_secure = is_secure
        self._channel_bindings = {name: data for name, data in channel_bindings.items() if data}
        self._allow_plain = allow_plain
        self._state = _State.INITIAL
        self._plus = mechanism.endswith("-PLUS")
        self._hash_name = mechanism.removeprefix("SCRAM-").removesuffix("-PLUS")
        self._username: str | None = None
        # PLAIN
        self._password: str | None = None
        self._account_known = False
        # SCRAM
        self._gs2_header = ""
        self._cb_data = b""
        self._client_first_bare = ""
        self._client_nonce = ""
        self._nonce = ""
        self._server_first = ""
        self._credential: ScramCredential | None = None

    # -- public API ---------------------------------------------------------

    @property
    def mechanism(self) -> str:
        """The mechanism name this exchange was created for."""
        return self._mechanism

    @property
    def done(self) -> bool:
        """Whether the exchange has ended (success, failure or abort)."""
        return self._state is _State.DONE

    def start(self, initial_response: bytes | None) -> SaslStep:
        """Begin the exchange (``<auth/>``).

        ``initial_response`` is ``None`` when the ``<auth/>`` element carried no
        data (the server then sends an empty challenge), ``b""`` for ``=``.
        """
        return self._run(self._start, initial_response)

    def respond(self, data: bytes) -> SaslStep:
        """Handle the decoded content of a client ``<response/>``."""
        return self._run(self._respond, data)

    def account(self, account: Account | None) -> SaslStep:
        """Answer a :class:`NeedAccount` step: the account, or ``None`` if unknown."""
        return self._run(self._account, account)

    def password_checked(self, matches: bool) -> SaslStep:
        """Answer a :class:`CheckPassword` step: whether the password matched."""
        return self._run(self._password_checked, matches)

    def abort(self) -> Failure:
        """The client sent ``<abort/>``: end the exchange with ``aborted``."""
        self._end()
        return Failure(SaslCondition.ABORTED)

    # -- plumbing -----------------------------------------------------------

    def _run(self, handler: Callable[[object], SaslStep], arg: object) -> SaslStep:
        try:
            step = handler(arg)
        except _Reject as reject:
            step = reject.failure
        except Exception:  # the contract is to never raise out of the state machine
            _log.exception("internal error in SASL %s exchange", self._mechanism)
            step = Failure(SaslCondition.TEMPORARY_AUTH_FAILURE)
        if isinstance(step, Failure | Success):
            self._end()
        return step

    def _end(self) -> None:
        self._state = _State.DONE
        self._password = None
        self._credential = None

    def _start(self, initial_response: object) -> SaslStep:
        if self._state is not _State.INITIAL:
            raise _malformed("exchange already started")
        if initial_response is not None and not isinstance(initial_response, bytes):
            raise _malformed("initial response must be bytes")
        self._check_mechanism()
        if self._mechanism == _PLAIN:
            self._state = _State.PLAIN_WAIT_MESSAGE
        else:
            self._state = _State.SCRAM_WAIT_CLIENT_FIRST
        if initial_response is None:
            return Challenge(b"")
        return self._respond(initial_response)

    def _check_mechanism(self) -> None:
        if self._mechanism == _PLAIN:
            if not self._allow_plain:
                raise _Reject(SaslCondition.INVALID_MECHANISM, "PLAIN is disabled")
            if not self._is_secure:
                raise _Reject(SaslCondition.ENCRYPTION_REQUIRED, "PLAIN requires TLS")
            return
        if self._mechanism not in SCRAM_MECHANISMS:
            raise _Reject(SaslCondition.INVALID_MECHANISM)
        if self._plus and not self._cb_available:
            raise _Reject(SaslCondition.INVALID_MECHANISM, "no channel binding available")

    @property
    def _cb_available(self) -> bool:
        return self._is_secure and bool(self._channel_bindings)

    def _respond(self, data: object) -> SaslStep:
        if not isinstance(data, bytes):
            raise _malformed("response must be bytes")
        match self._state:
            case _State.PLAIN_WAIT_MESSAGE:
                return self._plain_message(data)
            case _State.SCRAM_WAIT_CLIENT_FIRST:
                return self._scram_client_first(data)
            case _State.SCRAM_WAIT_CLIENT_FINAL:
                return self._scram_client_final(data)
            case _:
                raise _malformed("unexpected response")

    def _account(self, account: object) -> SaslStep:
        if self._state is not _State.WAIT_ACCOUNT or self._username is None:
            raise _malformed("no account was requested")
        if account is not None and not isinstance(account, Account):
            raise TypeError(f"expected Account or None, got {type(account).__name__}")
        if account is not None and not self._is_account_of(account, self._username):
            _log.error("SASL: account lookup for %r returned another account", self._username)
            raise _Reject(SaslCondition.TEMPORARY_AUTH_FAILURE)
        if self._mechanism == _PLAIN:
            return self._plain_account(account)
        return self._scram_account(account)

    def _is_account_of(self, account: Account, username: str) -> bool:
        return account.username == username and _same_domain(account.host, self._domain)

    def _check_authzid(self, authzid: str, username: str) -> None:
        """An authzid is only accepted if it names the authenticating user's bare JID."""
        if not authzid:
            return
        local, at, domain = authzid.partition("@")
        if not at or "/" in domain or prepare_username(local) != username:
            raise _Reject(SaslCondition.INVALID_AUTHZID)
        if not _same_domain(domain, self._domain):
            raise _Reject(SaslCondition.INVALID_AUTHZID)

    # -- PLAIN (RFC 4616) ---------------------------------------------------

    def _plain_message(self, data: bytes) -> SaslStep:
        fields = data.split(b"\x00")
        if len(fields) != 3:
            raise _malformed("PLAIN message must be authzid NUL authcid NUL passwd")
        authzid_b, authcid_b, passwd_b = fields
        if not authcid_b or not passwd_b:
            raise _malformed("empty authcid or password")
        if (
            len(authzid_b) > _PLAIN_MAX_AUTHZID
            or len(authcid_b) > _PLAIN_MAX_AUTHCID
            or len(passwd_b) > _PLAIN_MAX_PASSWD
        ):
            raise _malformed("PLAIN field too long")
        authzid = _decode_utf8(authzid_b, "authzid")
        authcid = _decode_utf8(authcid_b, "authcid")
        password = _decode_utf8(passwd_b, "password")
        username = prepare_username(authcid)
        if username is None:
            raise _Reject(SaslCondition.NOT_AUTHORIZED)
        self._check_authzid(authzid, username)
        self._username = username
        self._password = password
        self._state = _State.WAIT_ACCOUNT
        return NeedAccount(username)

    def _plain_account(self, account: Account | None) -> SaslStep:
        password, username = self._password, self._username
        assert password is not None and username is not None
        credential = None
        if account is not None:
            credential = next(
                (
                    account.credentials[name]
                    for name in _PLAIN_HASH_PREFERENCE
                    if name in account.credentials
                ),
                None,
            )
        self._account_known = credential is not None
        if credential is None:
            # Spend the same effort as a real check so timing does not reveal
            # whether the account exists.
            credential = _mock_credential("SHA-256", username)
        self._state = _State.PLAIN_WAIT_CHECK
        self._password = None  # the shell holds it until the check is done
        return CheckPassword(password, credential)

    def _password_checked(self, matches: object) -> SaslStep:
        if self._state is not _State.PLAIN_WAIT_CHECK or self._username is None:
            raise _malformed("no password check was requested")
        if matches is not True or not self._account_known:
            raise _Reject(SaslCondition.NOT_AUTHORIZED)
        return Success(self._username, None)

    # -- SCRAM (RFC 5802) ---------------------------------------------------

    def _scram_client_first(self, data: bytes) -> SaslStep:
        text = _decode_utf8(data, "client-first-message")
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise _malformed("missing gs2 header")
        flag, authzid_field, bare = parts

        # gs2-cbind-flag
        cb_name: str | None = None
        if flag.startswith("p="):
            cb_name = flag[2:]
            if not _CB_NAME_RE.fullmatch(cb_name):
                raise _malformed("bad channel binding type name")
        elif flag not in ("n", "y"):
            raise _malformed("bad gs2-cbind-flag")

        # [ authzid ]
        authzid = ""
        if authzid_field:
            if not authzid_field.startswith("a=") or len(authzid_field) == 2:
                raise _malformed("bad gs2 authzid")
            authzid = _decode_saslname(authzid_field[2:], "authzid")

        # client-first-message-bare: [reserved-mext ","] username "," nonce ["," extensions]
        attributes = bare.split(",")
        if attributes[0].startswith("m="):
            raise _malformed("mandatory SCRAM extensions are not supported")
        if len(attributes) < 2 or not all(_ATTR_RE.fullmatch(a) for a in attributes):
            raise _malformed("bad client-first-message-bare")
        if not attributes[0].startswith("n=") or not attributes[1].startswith("r="):
            raise _malformed("client-first-message-bare must start with n= and r=")
        raw_username = _decode_saslname(attributes[0][2:], "username")
        nonce = attributes[1][2:]
        if not _NONCE_RE.fullmatch(nonce):
            raise _malformed("bad client nonce")

        # Channel binding negotiation (RFC 5802 §6).
        if self._plus:
            if cb_name is None:
                raise _malformed(f"{self._mechanism} requires channel binding (p=)")
            cb_data = self._channel_bindings.get(cb_name)
            if cb_data is None:
                raise _Reject(
                    SaslCondition.NOT_AUTHORIZED, f"unsupported channel binding type {cb_name}"
                )
            self._cb_data = cb_data
        elif cb_name is not None:
            raise _malformed("channel binding requires a -PLUS mechanism")
        elif flag == "y" and self._cb_available:
            # The client thinks we do not support channel binding, but we do:
            # the mechanism list was tampered with (downgrade attack).
            raise _Reject(SaslCondition.NOT_AUTHORIZED, "channel binding downgrade detected")

        username = prepare_username(raw_username)
        if username is None:
            raise _Reject(SaslCondition.NOT_AUTHORIZED)
        self._check_authzid(authzid, username)

        self._gs2_header = f"{flag},{authzid_field},"
        self._client_first_bare = bare
        self._client_nonce = nonce
        self._username = username
        self._state = _State.WAIT_ACCOUNT
        return NeedAccount(username)

    def _scram_account(self, account: Account | None) -> SaslStep:
        username = self._username
        assert username is not None
        credential = None if account is None else account.credentials.get(self._hash_name)
        if credential is not None and (
            credential.hash_name != self._hash_name or credential.iterations < 1
        ):
            _log.error("SASL: unusable %s credential for %r", self._hash_name, username)
            credential = None
        # Without a credential, carry on with a fake one so that the failure only
        # comes after the client's proof, like a wrong password.
        self._credential = credential
        salt, iterations = (
            (credential.salt, credential.iterations)
            if credential is not None
            else (_mock_salt(self._hash_name, username), _MOCK_ITERATIONS)
        )
        self._nonce = self._client_nonce + secrets.token_urlsafe(24)
        self._server_first = (
            f"r={self._nonce},s={base64.b64encode(salt).decode('ascii')},i={iterations}"
        )
        self._state = _State.SCRAM_WAIT_CLIENT_FINAL
        return Challenge(self._server_first.encode("ascii"))

    def _scram_client_final(self, data: bytes) -> SaslStep:
        text = _decode_utf8(data, "client-final-message")
        attributes = text.split(",")
        if len(attributes) < 3 or not all(_ATTR_RE.fullmatch(a) for a in attributes):
            raise _malformed("bad client-final-message")
        channel_attr, nonce_attr, proof_attr = attributes[0], attributes[1], attributes[-1]
        if not (
            channel_attr.startswith("c=")
            and nonce_attr.startswith("r=")
            and proof_attr.startswith("p=")
        ):
            raise _malformed("client-final-message must be c=, r=, [extensions,] p=")
        cbind_input = _b64decode(channel_attr[2:], "channel binding")
        proof = _b64decode(proof_attr[2:], "proof")

        expected_cbind = self._gs2_header.encode("utf-8") + self._cb_data
        if not hmac.compare_digest(cbind_input, expected_cbind):
            raise _Reject(SaslCondition.NOT_AUTHORIZED, "channel binding mismatch")
        if not hmac.compare_digest(nonce_attr[2:].encode("utf-8"), self._nonce.encode("ascii")):
            raise _Reject(SaslCondition.NOT_AUTHORIZED, "nonce mismatch")

        algorithm = _HASHLIB_NAMES[self._hash_name]
        if len(proof) != hashlib.new(algorithm).digest_size:
            raise _malformed("proof has the wrong length")

        credential, username = self._credential, self._username
        assert username is not None
        if credential is None:
            raise _Reject(SaslCondition.NOT_AUTHORIZED)

        without_proof = text[: len(text) - len(proof_attr) - 1]
        auth_message = ",".join(
            (self._client_first_bare, self._server_first, without_proof)
        ).encode("utf-8")
        client_signature = _hmac(algorithm, credential.stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
        if not hmac.compare_digest(
            hashlib.new(algorithm, client_key).digest(), credential.stored_key
        ):
            raise _Reject(SaslCondition.NOT_AUTHORIZED)
        server_signature = _hmac(algorithm, credential.server_key, auth_message)
        return Success(username, b"v=" + base64.b64encode(server_signature))


def _same_domain(a: str, b: str) -> bool:
    return a.rstrip(".").casefold() == b.rstrip(".").casefold()


def _mock_salt(hash_name: str, username: str) -> bytes:
    """A salt for a nonexistent user: stable for this process, unpredictable to clients."""
    return _hmac("sha256", _MOCK_SECRET, f"{hash_name}\x00{username}".encode())


def _mock_credential(hash_name: str, username: str) -> ScramCredential:
    return ScramCredential(
        hash_name=hash_name,
        salt=_mock_salt(hash_name, username),
        iterations=_MOCK_ITERATIONS,
        stored_key=b"",
        server_key=b"",
    )
