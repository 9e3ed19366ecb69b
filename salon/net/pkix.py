"""TLS for federation: contexts that present our certificates both ways, and PKIX validation
of the certificate a peer server presents (RFC 6120 §13.7.2, RFC 6125).

Validation happens after the handshake, never inside it: a peer whose certificate does not
validate may still authenticate with Server Dialback, so the handshake must succeed whatever
the peer presents. A TLS client does that with ``CERT_NONE``. A TLS server must *request* a
client certificate to see one at all, and OpenSSL then aborts the handshake when it does not
validate; the standard library exposes no verify callback to say "continue" (LuaSec's
``lsec_continue``, which Prosody uses). :func:`_accept_any_client_certificate` installs such a
callback through ``ctypes`` when the running OpenSSL allows it; without it Salon does not ask
peers for client certificates and inbound peers authenticate with dialback only.
"""

from __future__ import annotations

import _ssl
import ctypes
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from salon.certs import certificate_covers

log = logging.getLogger(__name__)

ALPN_S2S = "xmpp-server"
_SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # BSDs, macOS
)

PeerCertificate = Callable[[str], bool]

# ---------------------------------------------------------------- OpenSSL verify callback
_VERIFY_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _continue(_preverify_ok: int, _store_ctx: int | None) -> int:
    return 1  # keep the handshake going; Salon validates the chain itself afterwards


_continue_anyway = _VERIFY_CALLBACK_TYPE(_continue)  # kept referenced for the process's life


def _accept_any_client_certificate(ctx: ssl.SSLContext) -> bool:
    """Make a server context request a client certificate and finish the handshake whatever
    it is. False (and ``ctx`` unchanged) when the OpenSSL in use cannot be reached."""
    try:
        lib = ctypes.CDLL(_ssl.__file__)
        set_verify = lib.SSL_CTX_set_verify
        get_verify_mode = lib.SSL_CTX_get_verify_mode
    except (OSError, AttributeError):
        return False
    set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK_TYPE]
    set_verify.restype = None
    get_verify_mode.argtypes = [ctypes.c_void_p]
    get_verify_mode.restype = ctypes.c_int
    # The SSL_CTX pointer is the first field after the object header of CPython's
    # PySSLContext; check it by reading back a verify mode set through the public API.
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    ctx.verify_mode = ssl.CERT_OPTIONAL
    if not pointer or get_verify_mode(pointer) != 1:
        ctx.verify_mode = ssl.CERT_NONE
        return False
    ctx.verify_mode = ssl.CERT_NONE
    if get_verify_mode(pointer) != 0:
        return False
    set_verify(pointer, 1, _continue_anyway)  # SSL_VERIFY_PEER, without FAIL_IF_NO_PEER_CERT
    return ctx.verify_mode == ssl.CERT_OPTIONAL


# ---------------------------------------------------------------- validation
def _load_bundle(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("cannot read the CA bundle %s: %s", path, exc)
        return []


def _system_bundle() -> list[x509.Certificate]:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, *_SYSTEM_BUNDLES):
        if candidate and Path(candidate).is_file():
            certs = _load_bundle(Path(candidate))
            if certs:
                return certs
    log.warning("no system CA bundle found: peers' certificates will not validate")
    return []


def _peer_chain(sslobj: ssl.SSLObject) -> tuple[bytes | None, list[bytes]]:
    """The peer's leaf certificate and the other certificates it sent, DER encoded."""
    leaf = sslobj.getpeercert(binary_form=True)
    getter = getattr(sslobj, "get_unverified_chain", None)  # public from Python 3.13
    if getter is None:
        getter = getattr(getattr(sslobj, "_sslobj", None), "get_unverified_chain", None)
    chain: list[bytes] = []
    if getter is not None:
        for cert in getter() or ():
            if cert is None:
                continue  # no certificate at all (a server that asked, a client that sent none)
            der = cert if isinstance(cert, bytes) else cert.public_bytes(_ssl.ENCODING_DER)
            if der != leaf:
                chain.append(der)
    return leaf, chain


class PeerValidator:
    """PKIX validation against a CA bundle (configured, or the system's)."""

    def __init__(self, ca_file: Path | None) -> None:
        self.ca_file = ca_file
        self._store: Store | None = None

    def _get_store(self) -> Store | None:
        if self._store is None:
            certs = _load_bundle(self.ca_file) if self.ca_file else _system_bundle()
            if not certs:
                return None
            self._store = Store(certs)
        return self._store

    def validate(
        self, leaf_der: bytes | None, intermediates_der: list[bytes]
    ) -> PeerCertificate | None:
        """A name checker for a chain that validates, or None."""
        store = self._get_store()
        if leaf_der is None or store is None:
            return None
        try:
            leaf = x509.load_der_x509_certificate(leaf_der)
            intermediates = [x509.load_der_x509_certificate(der) for der in intermediates_der]
            # The chain must be sound (signatures, validity, CA constraints); the end entity
            # may carry any usage, as server certificates serve both TLS roles in XMPP.
            verifier = (
                PolicyBuilder()
                .store(store)
                .time(datetime.now(UTC).replace(tzinfo=None))
                .extension_policies(
                    ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                    ee_policy=ExtensionPolicy.permit_all(),
                )
                .build_client_verifier()
            )
            verifier.verify(leaf, intermediates)
        except (VerificationError, ValueError) as exc:
            log.debug("peer certificate does not validate: %s", exc)
            return None
        return lambda domain: certificate_covers(leaf, domain)

    def check(self, sslobj: ssl.SSLObject | None) -> PeerCertificate | None:
        if sslobj is None:
            return None
        try:
            leaf, chain = _peer_chain(sslobj)
        except (ssl.SSLError, ValueError, AttributeError) as exc:
            log.info("cannot read the peer's certificates: %s", exc)
            return None
        return self.validate(leaf, chain)


# ---------------------------------------------------------------- contexts
class S2STls:
    """Server and client contexts per hosted domain, for STARTTLS and direct TLS."""

    def __init__(self, ca_file: Path | None) -> None:
        self.validator = PeerValidator(ca_file)
        self._server: dict[str, ssl.SSLContext] = {}
        self._client: dict[str, ssl.SSLContext] = {}
        self._client_direct: dict[str, ssl.SSLContext] = {}
        self.requests_client_certificates = True

    def add_host(self, domain: str, cert_path: Path, key_path: Path) -> bool:
        try:
            server = self._new_server_context(cert_path, key_path)
            client = self._new_client_context(cert_path, key_path)
            client_direct = self._new_client_context(cert_path, key_path)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("no TLS for federation of %s: %s", domain, exc)
            return False
        client_direct.set_alpn_protocols([ALPN_S2S])
        self._server[domain] = server
        self._client[domain] = client
        self._client_direct[domain] = client_direct
        return True

    def _new_server_context(self, cert_path: Path, key_path: Path) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_COMPRESSION
        ctx.load_cert_chain(str(cert_path), str(key_path))
        ctx.set_alpn_protocols([ALPN_S2S])
        if not _accept_any_client_certificate(ctx):
            if self.requests_client_certificates:
                log.warning(
                    "this OpenSSL cannot be told to accept any client certificate: incoming "
                    "servers will authenticate with dialback only"
                )
            self.requests_client_certificates = False
        return ctx

    @staticmethod
    def _new_client_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_COMPRESSION
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # validated after the handshake (PeerValidator)
        ctx.load_cert_chain(str(cert_path), str(key_path))
        return ctx

    def has(self, domain: str) -> bool:
        return domain in self._server

    def server_context(self, domain: str) -> ssl.SSLContext | None:
        return self._server.get(domain)

    def client_context(self, domain: str, *, direct_tls: bool = False) -> ssl.SSLContext | None:
        return (self._client_direct if direct_tls else self._client).get(domain)

    def direct_tls_context(self) -> ssl.SSLContext | None:
        """A listening context for direct TLS that picks the host certificate by SNI."""
        if not self._server:
            return None
        default = next(iter(self._server.values()))
        hosts = self._server

        def pick(sslobj: ssl.SSLObject, servername: str | None, _ctx: ssl.SSLContext) -> None:
            ctx = hosts.get((servername or "").lower())
            if ctx is not None:
                sslobj.context = ctx

        default.sni_callback = pick
        return default
