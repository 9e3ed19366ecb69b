"""Password credentials: SCRAM key derivation, PLAIN verification, username preparation.

SCRAM (RFC 5802) never stores the password itself, only, per hash function::

    SaltedPassword = Hi(SASLprep(password), salt, iterations)   # PBKDF2-HMAC
    ClientKey      = HMAC(SaltedPassword, "Client Key")
    StoredKey      = H(ClientKey)
    ServerKey      = HMAC(SaltedPassword, "Server Key")

:func:`make_credentials` derives these through scramp, :func:`verify_password`
re-derives ``StoredKey`` from a cleartext password (SASL PLAIN, RFC 4616) and
compares in constant time.  Both sides prepare the password with the SASLprep
profile (RFC 4013) that SCRAM mandates, using scramp's implementation, so a
password accepted here is derived exactly as a SCRAM client derives it.

The functions here are CPU-bound (PBKDF2): callers on an event loop should run
them in an executor.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from precis_i18n import get_profile
from scramp import ScramException, ScramMechanism
from scramp.utils import saslprep

from salon.storage.interfaces import ScramCredential

__all__ = [
    "HASH_NAMES",
    "make_credentials",
    "prepare_password",
    "prepare_username",
    "verify_password",
]

#: The SCRAM hash names credentials are made for, strongest first.
HASH_NAMES: tuple[str, ...] = ("SHA-512", "SHA-256", "SHA-1")

#: SCRAM/IANA hash name -> hashlib algorithm name.
_HASHLIB_NAMES: dict[str, str] = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}

#: Characters RFC 7622 §3.3.1 forbids in a localpart on top of the PRECIS profile.
_LOCALPART_FORBIDDEN = frozenset("\"&'/:<>@")

#: RFC 7622 §3.3: a localpart is 1 to 1023 octets once prepared.
_LOCALPART_MAX_OCTETS = 1023

_USERNAME_PROFILE = get_profile("UsernameCaseMapped")


def prepare_password(password: str) -> str:
    """Prepare a password with SASLprep (RFC 4013), as SCRAM (RFC 5802 §2.2) requires.

    Raises :class:`ValueError` if the password contains prohibited characters
    or prepares to the empty string.
    """
    try:
        prepared: str = saslprep(password)
    except ScramException as exc:
        raise ValueError(f"password is not valid: {exc}") from exc
    if not prepared:
        raise ValueError("password is empty")
    return prepared


def make_credentials(password: str, iterations: int = 4096) -> list[ScramCredential]:
    """Derive one SCRAM credential per supported hash (SHA-1, SHA-256, SHA-512).

    Each credential gets its own random salt.  ``iterations`` must be at least
    4096 (the minimum RFC 7677 recommends, enforced by scramp).  Raises
    :class:`ValueError` for an unusable password or iteration count.

    CPU-heavy: run it in an executor.
    """
    prepare_password(password)  # validate once, with a clear error
    credentials: list[ScramCredential] = []
    for hash_name in HASH_NAMES:
        mechanism = ScramMechanism(f"SCRAM-{hash_name}")
        try:
            salt, stored_key, server_key, count = mechanism.make_auth_info(
                password, iteration_count=iterations
            )
        except ScramException as exc:
            raise ValueError(str(exc)) from exc
        credentials.append(
            ScramCredential(
                hash_name=hash_name,
                salt=salt,
                iterations=count,
                stored_key=stored_key,
                server_key=server_key,
            )
        )
    return credentials


def verify_password(password: str, credential: ScramCredential) -> bool:
    """Check a cleartext password (SASL PLAIN) against a stored SCRAM credential.

    Re-derives ``StoredKey`` from the password, salt and iteration count and
    compares it with the stored one in constant time.  Returns ``False`` for an
    unpreparable password or an unknown hash name; never raises.

    CPU-heavy (one PBKDF2 run).
    """
    algorithm = _HASHLIB_NAMES.get(credential.hash_name)
    if algorithm is None or credential.iterations < 1:
        return False
    try:
        prepared = prepare_password(password)
    except ValueError:
        return False
    salted = hashlib.pbkdf2_hmac(
        algorithm, prepared.encode("utf-8"), credential.salt, credential.iterations
    )
    client_key = hmac.new(salted, b"Client Key", algorithm).digest()
    stored_key = hashlib.new(algorithm, client_key).digest()
    return hmac.compare_digest(stored_key, credential.stored_key)


def prepare_username(text: str) -> str | None:
    """Prepare an XMPP localpart (RFC 7622 §3.3), or return ``None`` if it is invalid.

    Applies the PRECIS UsernameCaseMapped profile (RFC 8265 §3.3), then rejects
    the characters RFC 7622 additionally forbids (``"&'/:<>@``) and results
    longer than 1023 octets.

    Short names are memoised (a bounded LRU): the PRECIS profile costs about 20 µs, and
    it runs on every login.
    """
    if len(text) <= _MEMO_MAX_CHARS:
        return _prepare_username_memo(text)
    return _prepare_username(text)


_MEMO_MAX_CHARS = 64


@functools.lru_cache(maxsize=8192)
def _prepare_username_memo(text: str) -> str | None:
    return _prepare_username(text)


def _prepare_username(text: str) -> str | None:
    try:
        prepared: str = _USERNAME_PROFILE.enforce(text)
    except (UnicodeError, TypeError, ValueError):
        return None
    if not prepared or any(ch in _LOCALPART_FORBIDDEN for ch in prepared):
        return None
    if len(prepared.encode("utf-8")) > _LOCALPART_MAX_OCTETS:
        return None
    return prepared
