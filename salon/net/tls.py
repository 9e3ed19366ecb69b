"""TLS contexts per hosted domain, SNI selection and channel-binding data (RFC 5929)."""

from __future__ import annotations

import hashlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _HostTls:
    context: ssl.SSLContext
    cert_path: Path
    key_path: Path
    end_point_hash: bytes  # tls-server-end-point channel-binding data


def end_point_hash(cert_pem: bytes) -> bytes:
    """RFC 5929 §4.1: hash of our certificate with its signature hash (MD5/SHA-1 → SHA-256)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    algorithm = cert.signature_hash_algorithm
    name = "sha256"
    if isinstance(algorithm, hashes.SHA384):
        name = "sha384"
    elif isinstance(algorithm, hashes.SHA512):
        name = "sha512"
    return hashlib.new(name, cert.public_bytes(Encoding.DER)).digest()


def _server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_path), str(key_path))
    ctx.options |= ssl.OP_NO_COMPRESSION
    # Resumption stays on (TLS 1.3 tickets, TLS 1.2 session tickets): a returning client
    # skips the certificate signature. One TLS 1.3 ticket per handshake instead of
    # OpenSSL's two: a client keeps one for its next connection, and each ticket costs the
    # server an encryption and a record on every login. The key exchange is OpenSSL's
    # default, X25519 (P-256 measured about 35% dearer per handshake here).
    ctx.num_tickets = 1
    return ctx


class TlsContexts:
    """One SSLContext per hosted domain that has a usable certificate."""

    def __init__(self) -> None:
        self._hosts: dict[str, _HostTls] = {}
        self._by_context: dict[int, str] = {}
        self._default: str | None = None

    def add_host(self, domain: str, cert_path: Path, key_path: Path) -> bool:
        try:
            ctx = _server_context(cert_path, key_path)
            cb_hash = end_point_hash(cert_path.read_bytes())
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("no TLS for %s: %s", domain, exc)
            return False
        # Direct TLS switches to this context on SNI, and OpenSSL then answers ALPN from it.
        ctx.set_alpn_protocols(["xmpp-client"])
        self._hosts[domain] = _HostTls(ctx, cert_path, key_path, cb_hash)
        self._by_context[id(ctx)] = domain
        if self._default is None:
            self._default = domain
        return True

    def has(self, domain: str) -> bool:
        return domain in self._hosts

    def context_for(self, domain: str) -> ssl.SSLContext | None:
        host = self._hosts.get(domain)
        return None if host is None else host.context

    def direct_tls_context(self) -> ssl.SSLContext | None:
        """A context for direct TLS (XEP-0368) that picks the host certificate by SNI."""
        if self._default is None:
            return None
        default = self._hosts[self._default]
        ctx = _server_context(default.cert_path, default.key_path)
        ctx.set_alpn_protocols(["xmpp-client"])

        def pick(sslobj: ssl.SSLObject, servername: str | None, _ctx: ssl.SSLContext) -> None:
            host = self._hosts.get((servername or "").lower())
            if host is not None:
                sslobj.context = host.context

        ctx.sni_callback = pick
        self._by_context[id(ctx)] = self._default
        return ctx

    def https_context(self) -> ssl.SSLContext | None:
        """A context for the HTTPS port (BOSH, WebSocket, /chat): the host certificate picked
        by SNI, HTTP/1.1 by ALPN."""
        if self._default is None:
            return None
        contexts: dict[str, ssl.SSLContext] = {}
        for domain, host in self._hosts.items():
            contexts[domain] = _server_context(host.cert_path, host.key_path)
            contexts[domain].set_alpn_protocols(["http/1.1"])
        ctx = contexts[self._default]

        def pick(sslobj: ssl.SSLObject, servername: str | None, _ctx: ssl.SSLContext) -> None:
            chosen = contexts.get((servername or "").lower())
            if chosen is not None:
                sslobj.context = chosen

        ctx.sni_callback = pick
        return ctx

    def domain_of(self, sslobj: ssl.SSLObject | None) -> str | None:
        """The hosted domain whose certificate this TLS session presented."""
        if sslobj is None:
            return None
        return self._by_context.get(id(sslobj.context))

    def channel_bindings(self, sslobj: ssl.SSLObject | None) -> dict[str, bytes]:
        """Channel-binding data of a finished handshake, by type name (XEP-0440)."""
        domain = self.domain_of(sslobj)
        if sslobj is None or domain is None:
            return {}
        return {"tls-server-end-point": self._hosts[domain].end_point_hash}
