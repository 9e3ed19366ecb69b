"""Fuzz the SASL state machine (RFC 6120 §6, RFC 4616 PLAIN, RFC 5802 SCRAM with and without
channel binding): whatever the client sends, each step is one of the machine's step types,
every failure names an RFC 6120 §6.5 condition, nothing raises, an ended exchange answers
``malformed-request`` to anything more, and only the right password ever succeeds."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime

from hypothesis import given, note
from scramp import ScramClient

from salon.auth.credentials import make_credentials
from salon.auth.sasl import (
    Challenge,
    CheckPassword,
    Failure,
    NeedAccount,
    SaslServer,
    SaslStep,
    Success,
)
from salon.storage.interfaces import Account
from tests.fuzz.oracle import FED, FUZZ, REACHED, SASL_CONDITIONS, input_seeds
from tests.fuzz.strategies import PASSWORD, SEEDS, mutate

ACCOUNT = Account(
    "localhost", "user", {c.hash_name: c for c in make_credentials(PASSWORD)}, datetime.now(UTC)
)
MECHANISMS = [
    "PLAIN",
    "SCRAM-SHA-1",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-512-PLUS",
    "EXTERNAL",
    "DIGEST-MD5",
    "",
    "scram-sha-1",
]
BINDING = b"\x01" * 32
PLAIN_SAMPLES = [
    b"\0user\0" + PASSWORD.encode(),
    b"\0user\0wrong",
    b"user@localhost\0user\0" + PASSWORD.encode(),
    b"other@localhost\0user\0" + PASSWORD.encode(),
    b"\0user@localhost\0" + PASSWORD.encode(),
    b"\0\0",
    b"\0user\0",
    b"\0\xff\xfe\0pw",
    "\0us\u200ber\0pw".encode(),
    b"\0" + b"u" * 2000 + b"\0pw",
    b"\0user\0" + b"p" * 2000,
]
SCRAM_SAMPLES = [
    b"n,,n=user,r=abcdefghijkl",
    b"y,,n=user,r=abcdefghijkl",
    b"p=tls-exporter,,n=user,r=abcdefghijkl",
    b"p=tls-unique,,n=user,r=abcdefghijkl",
    b"n,a=admin,n=user,r=abcdefghijkl",
    b"n,,n=us=2Cer,r=x",
    b"n,,n=us=3Der,r=x",
    b"n,,n=us=ZZer,r=x",
    b"n,,m=ext,n=user,r=x",
    b"n,,n=,r=",
    b"n,,r=x,n=user",
    b"c=biws,r=abcdefghijklXYZ,p=AAAA",
    b"c=eSws,r=abcdefghijklXYZ,p=" + base64.b64encode(b"\0" * 20),
    b"c=biws,r=abcdefghijkl,p=====",
]


def _random_response(rng: random.Random) -> bytes:
    roll = rng.randrange(4)
    if roll == 0:
        return rng.randbytes(rng.randint(0, 64))
    if roll == 1:
        return rng.choice(PLAIN_SAMPLES + SCRAM_SAMPLES)
    return mutate(rng, rng.choice(PLAIN_SAMPLES + SCRAM_SAMPLES))


def _check(step: SaslStep) -> None:
    assert isinstance(step, Challenge | Success | Failure | NeedAccount | CheckPassword), step
    if isinstance(step, Failure):
        assert step.condition.value in SASL_CONDITIONS


def _real_client(mechanism: str, password: str, plus: bool) -> ScramClient:
    binding = ("tls-server-end-point", BINDING) if plus else None
    return ScramClient([mechanism], "user", password, channel_binding=binding)


@FUZZ
@given(SEEDS)
def test_sasl_exchange(seed: int) -> None:
    for one in input_seeds(seed):
        note(f"input seed {one}")
        sasl_input(random.Random(one))


def sasl_input(rng: random.Random) -> None:
    FED["sasl"] += 1
    mechanism = rng.choice(MECHANISMS)
    is_secure, has_binding, has_account = (rng.random() < 0.5 for _ in range(3))
    server = SaslServer(
        mechanism,
        domain="localhost",
        is_secure=is_secure,
        channel_bindings={"tls-server-end-point": BINDING} if has_binding else {},
        allow_plain=rng.random() < 0.8,
    )
    right_password = rng.random() < 0.5
    client = None
    if mechanism.startswith("SCRAM-") and rng.random() < 0.05:
        # A real SCRAM client (each derivation costs a PBKDF2, so only now and then).
        plus = mechanism.endswith("-PLUS")
        client = _real_client(mechanism, PASSWORD if right_password else "wrong", plus)
        initial: bytes | None = client.get_client_first().encode()
    else:
        initial = rng.choice([None, b"", _random_response(rng)])
    used_right_password = mechanism == "PLAIN" and initial == PLAIN_SAMPLES[0]
    step = server.start(initial)
    for _ in range(6):
        _check(step)
        REACHED[f"sasl {type(step).__name__}"] += 1
        if isinstance(step, Success):
            assert has_account and (used_right_password or (client and right_password)), step
            break
        if isinstance(step, Failure):
            break
        if isinstance(step, NeedAccount):
            step = server.account(ACCOUNT if has_account and step.username == "user" else None)
        elif isinstance(step, CheckPassword):
            matches = step.password == PASSWORD and rng.random() < 0.9
            used_right_password = used_right_password or matches
            step = server.password_checked(matches)
        elif rng.random() < 0.05:
            abort = server.abort()
            assert abort.condition.value == "aborted"
            step = abort
        elif client is not None and isinstance(step, Challenge):
            try:
                client.set_server_first(step.data.decode())
                final = client.get_client_final().encode()
            except Exception:  # scramp refused what the server said: a server bug
                raise AssertionError(f"scramp refused the server-first {step.data!r}") from None
            step = server.respond(final if rng.random() < 0.8 else mutate(rng, final))
            client = None  # a mutated final must not succeed with the right password only
            used_right_password = right_password
        else:
            step = server.respond(_random_response(rng))
    if server.done:
        after = server.respond(b"n,,n=user,r=x")
        assert isinstance(after, Failure) and after.condition.value == "malformed-request"
