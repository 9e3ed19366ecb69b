"""Tests for salon.auth.sasl (SASL server state machine) and salon.auth.credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scramp import ScramClient, ScramMechanism

from salon.auth import sasl
from salon.auth.credentials import make_credentials, prepare_username, verify_password
from salon.auth.sasl import (
    SCRAM_MECHANISMS,
    Challenge,
    CheckPassword,
    Failure,
    NeedAccount,
    SaslCondition,
    SaslServer,
    Success,
    offered_mechanisms,
)
from salon.storage.interfaces import Account, ScramCredential

DOMAIN = "example.org"
PASSWORD = "pencil"
HASHES = ("SHA-1", "SHA-256", "SHA-512")
EXPORTER = b"\x11" * 32
END_POINT = b"\x22" * 32
BINDINGS = {"tls-exporter": EXPORTER, "tls-server-end-point": END_POINT}
C = SaslCondition

_CREDENTIALS = make_credentials(PASSWORD)


def make_account(
    username: str = "user", credentials: list[ScramCredential] | None = None
) -> Account:
    creds = _CREDENTIALS if credentials is None else credentials
    return Account(
        host=DOMAIN,
        username=username,
        credentials={c.hash_name: c for c in creds},
        created_at=datetime.now(UTC),
    )


ACCOUNT = make_account()


def make_server(
    mechanism: str,
    *,
    is_secure: bool = True,
    channel_bindings: dict[str, bytes] | None = None,
    allow_plain: bool = True,
) -> SaslServer:
    return SaslServer(
        mechanism,
        domain=DOMAIN,
        is_secure=is_secure,
        channel_bindings=BINDINGS if channel_bindings is None else channel_bindings,
        allow_plain=allow_plain,
    )


# -- a minimal SCRAM client written from RFC 5802, for what scramp cannot do ----------
# (tls-exporter channel binding, gs2 authzid, hand-crafted messages).  It is checked
# against scramp's own server below.


def _escape(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class HandClient:
    def __init__(
        self,
        hash_name: str,
        username: str = "user",
        password: str = PASSWORD,
        *,
        gs2_header: str = "n,,",
        cb_data: bytes = b"",
        nonce: str = "fyko+d2lbbFgONRv9qkxdawL",
    ) -> None:
        self.algorithm = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}[hash_name]
        self.username = username
        self.password = password
        self.gs2_header = gs2_header
        self.cb_data = cb_data
        self.nonce = nonce
        self.bare = f"n={_escape(username)},r={nonce}"
        self.server_signature = b""

    def first(self) -> bytes:
        return (self.gs2_header + self.bare).encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = dict(a.split("=", 1) for a in text.split(","))
        salt = base64.b64decode(attrs["s"])
        salted = hashlib.pbkdf2_hmac(self.algorithm, self.password.encode(), salt, int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", self.algorithm).digest()
        stored_key = hashlib.new(self.algorithm, client_key).digest()
        server_key = hmac.new(salted, b"Server Key", self.algorithm).digest()
        cbind = base64.b64encode(self.gs2_header.encode() + self.cb_data).decode()
        without_proof = f"c={cbind},r={attrs['r']}"
        auth_message = f"{self.bare},{text},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, self.algorithm).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.server_signature = hmac.new(server_key, auth_message, self.algorithm).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def check_server_final(self, data: bytes | None) -> None:
        assert data == b"v=" + base64.b64encode(self.server_signature)


def run_hand(
    server: SaslServer, client: HandClient, account: Account | None = ACCOUNT
) -> sasl.SaslStep:
    step = server.start(client.first())
    if not isinstance(step, NeedAccount):
        return step
    step = server.account(account)
    if not isinstance(step, Challenge):
        return step
    return server.respond(client.final(step.data))


def run_scramp(
    server: SaslServer, client: ScramClient, account: Account | None = ACCOUNT
) -> sasl.SaslStep:
    step = server.start(client.get_client_first().encode())
    if not isinstance(step, NeedAccount):
        return step
    step = server.account(account)
    if not isinstance(step, Challenge):
        return step
    client.set_server_first(step.data.decode())
    step = server.respond(client.get_client_final().encode())
    if isinstance(step, Success):
        assert step.data is not None
        client.set_server_final(step.data.decode())  # raises if the server signature is wrong
    return step


@pytest.mark.parametrize(
    ("gs2_header", "channel_binding"),
    [("n,,", None), ("p=tls-server-end-point,,", ("tls-server-end-point", END_POINT))],
)
def test_hand_client_agrees_with_scramp_server(
    gs2_header: str, channel_binding: tuple[str, bytes] | None
) -> None:
    mech = ScramMechanism("SCRAM-SHA-256-PLUS" if channel_binding else "SCRAM-SHA-256")
    db = {"user": mech.make_auth_info(PASSWORD)}
    scramp_server = mech.make_server(db.get, channel_binding=channel_binding)
    client = HandClient(
        "SHA-256", gs2_header=gs2_header, cb_data=channel_binding[1] if channel_binding else b""
    )
    scramp_server.set_client_first(client.first().decode())
    client_final = client.final(scramp_server.get_server_first().encode())
    scramp_server.set_client_final(client_final.decode())
    client.check_server_final(scramp_server.get_server_final().encode())


# -- offered_mechanisms ---------------------------------------------------------------


def test_offered_mechanisms_insecure() -> None:
    assert offered_mechanisms(is_secure=False, channel_bindings=["tls-exporter"]) == [
        "SCRAM-SHA-512",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
    ]


def test_offered_mechanisms_secure_without_channel_binding() -> None:
    assert offered_mechanisms(is_secure=True, channel_bindings=[]) == [
        "SCRAM-SHA-512",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "PLAIN",
    ]


def test_offered_mechanisms_secure_with_channel_binding() -> None:
    assert offered_mechanisms(
        is_secure=True, channel_bindings=["tls-exporter", "tls-server-end-point"]
    ) == [*SCRAM_MECHANISMS, "PLAIN"]


def test_offered_mechanisms_without_plain() -> None:
    offered = offered_mechanisms(
        is_secure=True, channel_bindings=["tls-exporter"], allow_plain=False
    )
    assert offered == list(SCRAM_MECHANISMS)


# -- SCRAM happy paths ----------------------------------------------------------------


@pytest.mark.parametrize("hash_name", HASHES)
def test_scram_exchange_with_scramp(hash_name: str) -> None:
    mech = f"SCRAM-{hash_name}"
    server = make_server(mech, is_secure=False, channel_bindings={})
    step = run_scramp(server, ScramClient([mech], "user", PASSWORD))
    assert isinstance(step, Success)
    assert step.username == "user"
    assert server.done


@pytest.mark.parametrize("hash_name", HASHES)
def test_scram_plus_tls_server_end_point_with_scramp(hash_name: str) -> None:
    mech = f"SCRAM-{hash_name}-PLUS"
    client = ScramClient(
        [mech], "user", PASSWORD, channel_binding=("tls-server-end-point", END_POINT)
    )
    step = run_scramp(make_server(mech), client)
    assert isinstance(step, Success)
    assert step.username == "user"


@pytest.mark.parametrize("hash_name", HASHES)
@pytest.mark.parametrize(("cb_type", "cb_data"), sorted(BINDINGS.items()))
def test_scram_plus_both_binding_types(hash_name: str, cb_type: str, cb_data: bytes) -> None:
    client = HandClient(hash_name, gs2_header=f"p={cb_type},,", cb_data=cb_data)
    step = run_hand(make_server(f"SCRAM-{hash_name}-PLUS"), client)
    assert isinstance(step, Success)
    client.check_server_final(step.data)


def test_scram_plus_only_exporter_available() -> None:
    client = HandClient("SHA-256", gs2_header="p=tls-exporter,,", cb_data=EXPORTER)
    server = make_server("SCRAM-SHA-256-PLUS", channel_bindings={"tls-exporter": EXPORTER})
    assert isinstance(run_hand(server, client), Success)


def test_scram_username_escapes_are_decoded() -> None:
    username = "a=b,c"
    assert prepare_username(username) == username
    server = make_server("SCRAM-SHA-256", channel_bindings={})
    client = ScramClient(["SCRAM-SHA-256"], username, PASSWORD)
    step = server.start(client.get_client_first().encode())
    assert step == NeedAccount(username)
    step = server.account(make_account(username))
    assert isinstance(step, Challenge)
    client.set_server_first(step.data.decode())
    step = server.respond(client.get_client_final().encode())
    assert isinstance(step, Success)
    assert step.username == username


def test_scram_username_is_case_mapped() -> None:
    server = make_server("SCRAM-SHA-256", channel_bindings={})
    client = ScramClient(["SCRAM-SHA-256"], "User", PASSWORD)
    assert server.start(client.get_client_first().encode()) == NeedAccount("user")


def test_scram_without_initial_response() -> None:
    server = make_server("SCRAM-SHA-256", channel_bindings={})
    client = ScramClient(["SCRAM-SHA-256"], "user", PASSWORD)
    assert server.start(None) == Challenge(b"")
    assert server.respond(client.get_client_first().encode()) == NeedAccount("user")
    step = server.account(ACCOUNT)
    assert isinstance(step, Challenge)
    client.set_server_first(step.data.decode())
    assert isinstance(server.respond(client.get_client_final().encode()), Success)


def test_scram_y_flag_accepted_when_no_binding_offered() -> None:
    # The client could do channel binding but the server did not offer -PLUS.
    client = ScramClient(
        ["SCRAM-SHA-256"], "user", PASSWORD, channel_binding=("tls-server-end-point", END_POINT)
    )
    step = run_scramp(make_server("SCRAM-SHA-256", channel_bindings={}), client)
    assert isinstance(step, Success)


# -- RFC known-answer tests -----------------------------------------------------------


@pytest.mark.parametrize(
    ("hash_name", "c_nonce", "s_nonce", "salt", "proof", "verifier"),
    [
        (  # RFC 5802 §5
            "SHA-1",
            "fyko+d2lbbFgONRv9qkxdawL",
            "3rfcNHYJY1ZVvWVs7j",
            "QSXCR+Q6sek8bf92",
            "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ),
        (  # RFC 7677 §3
            "SHA-256",
            "rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ),
    ],
)
def test_scram_rfc_test_vectors(
    monkeypatch: pytest.MonkeyPatch,
    hash_name: str,
    c_nonce: str,
    s_nonce: str,
    salt: str,
    proof: str,
    verifier: str,
) -> None:
    monkeypatch.setattr("salon.auth.sasl.secrets.token_urlsafe", lambda _n: s_nonce)
    salt_b, stored_key, server_key, _ = ScramMechanism(f"SCRAM-{hash_name}").make_auth_info(
        PASSWORD, iteration_count=4096, salt=base64.b64decode(salt)
    )
    cred = ScramCredential(hash_name, salt_b, 4096, stored_key, server_key)
    server = make_server(f"SCRAM-{hash_name}", is_secure=False, channel_bindings={})
    assert server.start(f"n,,n=user,r={c_nonce}".encode()) == NeedAccount("user")
    step = server.account(make_account(credentials=[cred]))
    assert step == Challenge(f"r={c_nonce}{s_nonce},s={salt},i=4096".encode())
    step = server.respond(f"c=biws,r={c_nonce}{s_nonce},p={proof}".encode())
    assert step == Success("user", f"v={verifier}".encode())


# -- SCRAM failures -------------------------------------------------------------------


@pytest.mark.parametrize("hash_name", HASHES)
def test_scram_wrong_password(hash_name: str) -> None:
    mech = f"SCRAM-{hash_name}"
    server = make_server(mech, channel_bindings={})
    step = run_scramp(server, ScramClient([mech], "user", "wrong"))
    assert step == Failure(C.NOT_AUTHORIZED)
    assert server.done


def test_scram_unknown_user_fails_only_after_proof() -> None:
    server = make_server("SCRAM-SHA-256", channel_bindings={})
    client = ScramClient(["SCRAM-SHA-256"], "nobody", PASSWORD)
    assert server.start(client.get_client_first().encode()) == NeedAccount("nobody")
    step = server.account(None)
    assert isinstance(step, Challenge)  # indistinguishable from a real account
    client.set_server_first(step.data.decode())
    assert server.respond(client.get_client_final().encode()) == Failure(C.NOT_AUTHORIZED)


def _salt_for(username: str, account: Account | None) -> bytes:
    server = make_server("SCRAM-SHA-256", channel_bindings={})
    client = HandClient("SHA-256", username=username)
    assert isinstance(server.start(client.first()), NeedAccount)
    step = server.account(account)
    assert isinstance(step, Challenge)
    attrs = dict(a.split("=", 1) for a in step.data.decode().split(","))
    return base64.b64decode(attrs["s"])


def test_scram_unknown_user_salt_is_stable() -> None:
    assert _salt_for("nobody", None) == _salt_for("nobody", None)
    assert _salt_for("nobody", None) != _salt_for("someone", None)


def test_scram_missing_credential_for_hash() -> None:
    only_256 = [c for c in _CREDENTIALS if c.hash_name == "SHA-256"]
    step = run_hand(
        make_server("SCRAM-SHA-1", channel_bindings={}),
        HandClient("SHA-1"),
        make_account(credentials=only_256),
    )
    assert step == Failure(C.NOT_AUTHORIZED)


@pytest.mark.parametrize(("cb_type", "cb_data"), sorted(BINDINGS.items()))
def test_scram_plus_mismatched_binding_data(cb_type: str, cb_data: bytes) -> None:
    client = HandClient("SHA-256", gs2_header=f"p={cb_type},,", cb_data=b"\x99" * 32)
    step = run_hand(make_server("SCRAM-SHA-256-PLUS"), client)
    assert isinstance(step, Failure)
    assert step.condition is C.NOT_AUTHORIZED


def test_scram_plus_mismatched_binding_data_with_scramp() -> None:
    client = ScramClient(
        ["SCRAM-SHA-256-PLUS"],
        "user",
        PASSWORD,
        channel_binding=("tls-server-end-point", b"\x99" * 32),
    )
    step = run_scramp(make_server("SCRAM-SHA-256-PLUS"), client)
    assert isinstance(step, Failure)
    assert step.condition is C.NOT_AUTHORIZED


def test_scram_plus_unsupported_binding_type() -> None:
    client = HandClient("SHA-256", gs2_header="p=tls-unique,,", cb_data=b"x" * 12)
    step = make_server("SCRAM-SHA-256-PLUS").start(client.first())
    assert isinstance(step, Failure)
    assert step.condition is C.NOT_AUTHORIZED


def test_scram_plus_binding_type_not_available_on_this_connection() -> None:
    client = HandClient("SHA-256", gs2_header="p=tls-exporter,,", cb_data=EXPORTER)
    server = make_server("SCRAM-SHA-256-PLUS", channel_bindings={"tls-server-end-point": END_POINT})
    step = server.start(client.first())
    assert isinstance(step, Failure)
    assert step.condition is C.NOT_AUTHORIZED


@pytest.mark.parametrize(
    ("is_secure", "bindings"), [(False, BINDINGS), (True, {}), (True, {"tls-exporter": b""})]
)
def test_scram_plus_without_channel_binding_is_invalid_mechanism(
    is_secure: bool, bindings: dict[str, bytes]
) -> None:
    server = make_server("SCRAM-SHA-256-PLUS", is_secure=is_secure, channel_bindings=bindings)
    step = server.start(HandClient("SHA-256", gs2_header="p=tls-exporter,,").first())
    assert isinstance(step, Failure)
    assert step.condition is C.INVALID_MECHANISM


@pytest.mark.parametrize("flag", ["n,,", "y,,"])
def test_scram_plus_requires_p_flag(flag: str) -> None:
    step = make_server("SCRAM-SHA-256-PLUS").start(HandClient("SHA-256", gs2_header=flag).first())
    assert isinstance(step, Failure)
    assert step.condition is C.MALFORMED_REQUEST


def test_scram_p_flag_with_non_plus_mechanism() -> None:
    client = HandClient("SHA-256", gs2_header="p=tls-exporter,,", cb_data=EXPORTER)
    step = make_server("SCRAM-SHA-256").start(client.first())
    assert isinstance(step, Failure)
    assert step.condition is C.MALFORMED_REQUEST


def test_scram_downgrade_y_flag_rejected_with_scramp() -> None:
    # scramp sends "y" when it has channel binding data but uses a non-PLUS mechanism.
    client = ScramClient(
        ["SCRAM-SHA-256"], "user", PASSWORD, channel_binding=("tls-server-end-point", END_POINT)
    )
    step = make_server("SCRAM-SHA-256").start(client.get_client_first().encode())
    assert isinstance(step, Failure)
    assert step.condition is C.NOT_AUTHORIZED


@pytest.mark.parametrize("hash_name", HASHES)
def test_scram_downgrade_y_flag_rejected(hash_name: str) -> None:
    step = make_server(f"SCRAM-{hash_name}").start(HandClient(hash_name, gs2_header="y,,").first())
    assert isinstance(step, Failure)
    assert step.condition is C.NOT_AUTHORIZED


@pytest.mark.parametrize("authzid", ["user@example.org", "User@Example.ORG", "user@example.org."])
def test_scram_authzid_matching(authzid: str) -> None:
    client = HandClient("SHA-256", gs2_header=f"n,a={_escape(authzid)},")
    step = run_hand(make_server("SCRAM-SHA-256", channel_bindings={}), client)
    assert isinstance(step, Success)
    client.check_server_final(step.data)


def test_scram_plus_with_authzid() -> None:
    client = HandClient(
        "SHA-512", gs2_header="p=tls-exporter,a=user@example.org,", cb_data=EXPORTER
    )
    step = run_hand(make_server("SCRAM-SHA-512-PLUS"), client)
    assert isinstance(step, Success)


@pytest.mark.parametrize(
    "authzid",
    [
        "other@example.org",
        "user@example.com",
        "user",
        "example.org",
        "user@example.org/resource",
        "@example.org",
        "us er@example.org",
    ],
)
def test_scram_authzid_mismatch(authzid: str) -> None:
    client = HandClient("SHA-256", gs2_header=f"n,a={_escape(authzid)},")
    step = make_server("SCRAM-SHA-256", channel_bindings={}).start(client.first())
    assert isinstance(step, Failure)
    assert step.condition is C.INVALID_AUTHZID


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"n",
        b"n,",
        b"n,,",
        b"x,,n=user,r=abc",
        b"p=,,n=user,r=abc",
        b"p=tls exporter,,n=user,r=abc",
        b"n,a=,n=user,r=abc",
        b"n,b=user@example.org,n=user,r=abc",
        b"n,a=us=2Xer@example.org,n=user,r=abc",
        b"n,,r=abc,n=user",
        b"n,,n=user",
        b"n,,n=,r=abc",
        b"n,,n=user,r=",
        b"n,,n=us=zzer,r=abc",
        b"n,,n=user,r=a\x7fb",
        b"n,,n=user,r=a b",
        b"n,,m=ext,n=user,r=abc",
        b"n,,n=user,r=abc,",
        b"n,,n=user,r=abc,1=x",
        b"n,,n=user\x00,r=abc",
        b"n,,n=\xff\xfe,r=abc",
        b"n,,n=user,,r=abc",
    ],
)
def test_scram_malformed_client_first(message: bytes) -> None:
    step = make_server("SCRAM-SHA-256", channel_bindings={}).start(message)
    assert isinstance(step, Failure)
    assert step.condition is C.MALFORMED_REQUEST, step


def test_scram_client_first_extensions_are_ignored() -> None:
    step = make_server("SCRAM-SHA-256", channel_bindings={}).start(b"n,,n=user,r=abc,x=ext")
    assert step == NeedAccount("user")


@pytest.mark.parametrize("username", ["us er", "a@b", "a/b", "a:b", "a<b", "a'b", '"ab"', "a&b"])
def test_scram_invalid_username(username: str) -> None:
    step = make_server("SCRAM-SHA-256", channel_bindings={}).start(
        f"n,,n={_escape(username)},r=abc".encode()
    )
    assert isinstance(step, Failure)
    assert step.condition is C.NOT_AUTHORIZED


def _server_awaiting_final() -> tuple[SaslServer, HandClient, bytes]:
    server = make_server("SCRAM-SHA-256", channel_bindings={})
    client = HandClient("SHA-256")
    assert isinstance(server.start(client.first()), NeedAccount)
    step = server.account(ACCOUNT)
    assert isinstance(step, Challenge)
    return server, client, client.final(step.data)


@pytest.mark.parametrize(
    ("mutate", "condition"),
    [
        (lambda f: f.replace(b"r=fyko", b"r=XXXX"), C.NOT_AUTHORIZED),  # nonce mismatch
        (lambda f: f.replace(b"c=biws", b"c=eSws"), C.NOT_AUTHORIZED),  # cbind "y,," != "n,,"
        (lambda f: f.replace(b"c=biws", b"c=b!ws"), C.MALFORMED_REQUEST),
        (lambda f: f[: f.index(b",p=")] + b",p=AAAA", C.MALFORMED_REQUEST),  # short proof
        (lambda f: f[: f.index(b",p=")] + b",p=%%%%", C.MALFORMED_REQUEST),
        (lambda f: f[: f.index(b",p=")], C.MALFORMED_REQUEST),  # no proof
        (lambda f: f.split(b",", 1)[1], C.MALFORMED_REQUEST),  # no c=
        (lambda f: b"", C.MALFORMED_REQUEST),
        (lambda f: f + b",", C.MALFORMED_REQUEST),
        (lambda f: b"\xff" + f, C.MALFORMED_REQUEST),
    ],
)
def test_scram_bad_client_final(mutate: Callable[[bytes], bytes], condition: SaslCondition) -> None:
    server, _, final = _server_awaiting_final()
    step = server.respond(mutate(final))
    assert isinstance(step, Failure)
    assert step.condition is condition, step


def test_scram_client_final_extension_is_covered_by_proof() -> None:
    server = make_server("SCRAM-SHA-256", channel_bindings={})
    client = HandClient("SHA-256")
    server.start(client.first())
    step = server.account(ACCOUNT)
    assert isinstance(step, Challenge)
    final = client.final(step.data)
    # Inserting an extension after the proof was computed must break the proof.
    head, proof = final.rsplit(b",p=", 1)
    assert server.respond(head + b",x=ext,p=" + proof) == Failure(C.NOT_AUTHORIZED)


# -- PLAIN ----------------------------------------------------------------------------


def check(server: SaslServer, step: object) -> object:
    """What the shell does with a CheckPassword step (off the loop, in Salon)."""
    assert isinstance(step, CheckPassword), step
    return server.password_checked(verify_password(step.password, step.credential))


def plain_account(server: SaslServer, account: Account | None) -> object:
    return check(server, server.account(account))


def test_plain_hands_the_password_check_to_the_shell() -> None:
    """PLAIN derives no key itself: the account step asks for a check against the
    preferred credential, and only its answer ends the exchange."""
    server = make_server("PLAIN")
    server.start(b"\x00user\x00pencil")
    step = server.account(ACCOUNT)
    assert isinstance(step, CheckPassword)
    assert step.password == "pencil" and step.credential == ACCOUNT.credentials["SHA-256"]
    assert "pencil" not in repr(step)
    assert not server.done
    assert server.password_checked(True) == Success("user", None)
    assert server.done


def test_plain_unknown_user_gets_a_fake_check_and_fails_even_if_it_matches() -> None:
    server = make_server("PLAIN")
    server.start(b"\x00nobody\x00pencil")
    step = server.account(None)
    assert isinstance(step, CheckPassword) and step.credential.hash_name == "SHA-256"
    assert server.password_checked(True) == Failure(C.NOT_AUTHORIZED)


def test_password_checked_without_a_request_fails() -> None:
    server = make_server("PLAIN")
    server.start(b"\x00user\x00pencil")
    step = server.password_checked(True)
    assert isinstance(step, Failure) and step.condition is C.MALFORMED_REQUEST


def test_plain_success() -> None:
    server = make_server("PLAIN")
    assert server.start(b"\x00user\x00pencil") == NeedAccount("user")
    assert plain_account(server, ACCOUNT) == Success("user", None)
    assert server.done


def test_plain_success_with_matching_authzid() -> None:
    server = make_server("PLAIN")
    assert server.start(b"user@example.org\x00User\x00pencil") == NeedAccount("user")
    assert plain_account(server, ACCOUNT) == Success("user", None)


def test_plain_without_initial_response() -> None:
    server = make_server("PLAIN")
    assert server.start(None) == Challenge(b"")
    assert server.respond(b"\x00user\x00pencil") == NeedAccount("user")
    assert plain_account(server, ACCOUNT) == Success("user", None)


@pytest.mark.parametrize("hash_name", HASHES)
def test_plain_uses_any_credential(hash_name: str) -> None:
    only = [c for c in _CREDENTIALS if c.hash_name == hash_name]
    server = make_server("PLAIN")
    server.start(b"\x00user\x00pencil")
    assert plain_account(server, make_account(credentials=only)) == Success("user", None)


def test_plain_wrong_password() -> None:
    server = make_server("PLAIN")
    assert server.start(b"\x00user\x00wrong") == NeedAccount("user")
    assert plain_account(server, ACCOUNT) == Failure(C.NOT_AUTHORIZED)


def test_plain_unknown_user() -> None:
    server = make_server("PLAIN")
    assert server.start(b"\x00nobody\x00pencil") == NeedAccount("nobody")
    assert plain_account(server, None) == Failure(C.NOT_AUTHORIZED)


def test_plain_account_without_credentials() -> None:
    server = make_server("PLAIN")
    server.start(b"\x00user\x00pencil")
    assert plain_account(server, make_account(credentials=[])) == Failure(C.NOT_AUTHORIZED)


def test_plain_authzid_mismatch() -> None:
    step = make_server("PLAIN").start(b"admin@example.org\x00user\x00pencil")
    assert isinstance(step, Failure)
    assert step.condition is C.INVALID_AUTHZID


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"userpencil",
        b"user\x00pencil",
        b"\x00\x00pencil",
        b"\x00user\x00",
        b"\x00user\x00pen\x00cil",
        b"\x00\xffuser\x00pencil",
        b"\x00user\x00\xc3",
        b"\x00" + b"u" * 2000 + b"\x00pencil",
    ],
)
def test_plain_malformed(message: bytes) -> None:
    step = make_server("PLAIN").start(message)
    assert isinstance(step, Failure)
    assert step.condition is C.MALFORMED_REQUEST, step


def test_plain_invalid_username() -> None:
    step = make_server("PLAIN").start(b"\x00user@example.org\x00pencil")
    assert isinstance(step, Failure)
    assert step.condition is C.NOT_AUTHORIZED


def test_plain_not_secure() -> None:
    step = make_server("PLAIN", is_secure=False, channel_bindings={}).start(b"\x00user\x00pencil")
    assert isinstance(step, Failure)
    assert step.condition is C.ENCRYPTION_REQUIRED


def test_plain_disabled() -> None:
    step = make_server("PLAIN", allow_plain=False).start(b"\x00user\x00pencil")
    assert isinstance(step, Failure)
    assert step.condition is C.INVALID_MECHANISM


# -- mechanism selection and call order -----------------------------------------------


@pytest.mark.parametrize("mechanism", ["DIGEST-MD5", "SCRAM-SHA3-512", "scram-sha-256", "", "X"])
def test_unknown_mechanism(mechanism: str) -> None:
    step = make_server(mechanism).start(b"n,,n=user,r=abc")
    assert isinstance(step, Failure)
    assert step.condition is C.INVALID_MECHANISM


def test_respond_before_start() -> None:
    server = make_server("SCRAM-SHA-256")
    assert server.respond(b"n,,n=user,r=abc") == Failure(C.MALFORMED_REQUEST, "unexpected response")


def test_account_before_need_account() -> None:
    server = make_server("SCRAM-SHA-256")
    step = server.account(ACCOUNT)
    assert isinstance(step, Failure)
    assert step.condition is C.MALFORMED_REQUEST


def test_respond_while_waiting_for_account() -> None:
    server = make_server("PLAIN")
    server.start(b"\x00user\x00pencil")
    step = server.respond(b"\x00user\x00pencil")
    assert isinstance(step, Failure)
    assert step.condition is C.MALFORMED_REQUEST
    # and the exchange is over
    assert isinstance(server.account(ACCOUNT), Failure)


def test_start_twice() -> None:
    server = make_server("SCRAM-SHA-256")
    server.start(None)
    step = server.start(None)
    assert isinstance(step, Failure)
    assert step.condition is C.MALFORMED_REQUEST


def test_calls_after_success_fail() -> None:
    server = make_server("PLAIN")
    server.start(b"\x00user\x00pencil")
    assert isinstance(plain_account(server, ACCOUNT), Success)
    for step in (server.respond(b""), server.account(ACCOUNT), server.start(None)):
        assert isinstance(step, Failure)
        assert step.condition is C.MALFORMED_REQUEST


def test_calls_after_failure_fail() -> None:
    server = make_server("PLAIN")
    assert isinstance(server.start(b"garbage"), Failure)
    assert isinstance(server.respond(b"\x00user\x00pencil"), Failure)


def test_abort() -> None:
    server = make_server("SCRAM-SHA-256")
    server.start(None)
    assert server.abort() == Failure(C.ABORTED)
    assert server.done
    step = server.respond(b"n,,n=user,r=abc")
    assert isinstance(step, Failure)
    assert step.condition is C.MALFORMED_REQUEST


def test_wrong_account_from_shell_is_temporary_failure() -> None:
    server = make_server("SCRAM-SHA-256")
    server.start(b"n,,n=user,r=abc")
    step = server.account(make_account("someone-else"))
    assert isinstance(step, Failure)
    assert step.condition is C.TEMPORARY_AUTH_FAILURE


def test_condition_names_match_rfc6120() -> None:
    assert {c.value for c in SaslCondition} == {
        "aborted",
        "account-disabled",
        "credentials-expired",
        "encryption-required",
        "incorrect-encoding",
        "invalid-authzid",
        "invalid-mechanism",
        "malformed-request",
        "mechanism-too-weak",
        "not-authorized",
        "temporary-auth-failure",
    }


# -- fuzzing --------------------------------------------------------------------------

_ALL_MECHANISMS = [*SCRAM_MECHANISMS, "PLAIN", "BOGUS"]
_STEP_TYPES = (Challenge, Success, Failure, NeedAccount)


def _check(step: object) -> None:
    assert isinstance(step, _STEP_TYPES)
    if isinstance(step, Failure):
        # TEMPORARY_AUTH_FAILURE would mean an internal exception was swallowed.
        assert step.condition is not C.TEMPORARY_AUTH_FAILURE


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mechanism=st.sampled_from(_ALL_MECHANISMS),
    is_secure=st.booleans(),
    first=st.one_of(st.none(), st.binary(max_size=200)),
    second=st.binary(max_size=200),
    known=st.booleans(),
)
def test_arbitrary_bytes_never_raise(
    mechanism: str, is_secure: bool, first: bytes | None, second: bytes, known: bool
) -> None:
    server = make_server(mechanism, is_secure=is_secure)
    step = server.start(first)
    _check(step)
    if isinstance(step, NeedAccount):
        step = server.account(ACCOUNT if known else None)
        _check(step)
    step = server.respond(second)
    _check(step)
    _check(server.account(None))


_scram_text = st.text(alphabet=st.sampled_from("npyrca=,23CD-xu sP+/\x00é"), max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    mechanism=st.sampled_from(["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]),
    first=_scram_text,
    final=_scram_text,
)
def test_scram_shaped_input_never_raises(mechanism: str, first: str, final: str) -> None:
    server = make_server(mechanism)
    step = server.start(("n,," + first).encode())
    _check(step)
    if isinstance(step, NeedAccount):
        _check(server.account(ACCOUNT))
        _check(server.respond(("c=biws,r=" + final).encode()))


@settings(max_examples=200, deadline=None)
@given(final=st.binary(max_size=300))
def test_arbitrary_client_final_never_raises(final: bytes) -> None:
    server, _, _ = _server_awaiting_final()
    step = server.respond(final)
    _check(step)
    assert isinstance(step, Failure)


# -- credentials ----------------------------------------------------------------------


def test_make_credentials_shape() -> None:
    creds = make_credentials("secret", iterations=5000)
    assert sorted(c.hash_name for c in creds) == sorted(HASHES)
    sizes = {"SHA-1": 20, "SHA-256": 32, "SHA-512": 64}
    for cred in creds:
        assert cred.iterations == 5000
        assert len(cred.salt) >= 16
        assert len(cred.stored_key) == len(cred.server_key) == sizes[cred.hash_name]
    assert len({c.salt for c in creds}) == 3


def test_make_credentials_verify_password_round_trip() -> None:
    for cred in _CREDENTIALS:
        assert verify_password(PASSWORD, cred)
        assert not verify_password("pencil2", cred)
        assert not verify_password("", cred)


def test_verify_password_applies_saslprep() -> None:
    # SASLprep maps non-ASCII spaces to U+0020 and drops soft hyphens.
    creds = make_credentials("pass\u00a0wo\u00adrd")
    assert all(verify_password("pass word", c) for c in creds)
    assert all(verify_password("pass\u2003word", c) for c in creds)
    assert not any(verify_password("password", c) for c in creds)


def test_verify_password_rejects_unknown_hash() -> None:
    cred = _CREDENTIALS[0]
    bogus = ScramCredential("MD5", cred.salt, cred.iterations, cred.stored_key, cred.server_key)
    assert not verify_password(PASSWORD, bogus)


def test_verify_password_rejects_unpreparable_password() -> None:
    assert not verify_password("bad\u0007bell", _CREDENTIALS[0])


@pytest.mark.parametrize("password", ["", "\u00ad", "bell\u0007"])
def test_make_credentials_rejects_bad_password(password: str) -> None:
    with pytest.raises(ValueError):
        make_credentials(password)


def test_make_credentials_rejects_low_iterations() -> None:
    with pytest.raises(ValueError):
        make_credentials("secret", iterations=100)


def test_credentials_work_with_scramp_client_non_ascii_password() -> None:
    password = "p\u00e4ss\u00a0w\u00f6rd"
    account = make_account(credentials=make_credentials(password))
    client = ScramClient(["SCRAM-SHA-256"], "user", password)
    step = run_scramp(make_server("SCRAM-SHA-256", channel_bindings={}), client, account)
    assert isinstance(step, Success)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("juliet", "juliet"),
        ("Juliet", "juliet"),
        ("\u03a3igma", "\u03c3igma"),
        ("a=b,c", "a=b,c"),
        ("", None),
        ("ju liet", None),
        ("\u2163", None),  # compatibility character
        ("x" * 1023, "x" * 1023),
        ("x" * 1024, None),
        *((f"a{ch}b", None) for ch in "\"&'/:<>@"),
    ],
)
def test_prepare_username(text: str, expected: str | None) -> None:
    assert prepare_username(text) == expected
