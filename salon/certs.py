"""TLS certificates for hosted domains: generating self-signed ones and checking them.

:func:`check_certificate` reports problems as plain sentences.  Sentences that
describe something that still works but needs attention soon start with
:data:`WARNING_PREFIX`; everything else means the certificate cannot be used
for the domain as it is.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import idna
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "WARNING_PREFIX",
    "certificate_covers",
    "certificate_names",
    "check_certificate",
    "generate_self_signed",
    "is_warning",
]

#: Certificates expiring within this many days get a warning.
EXPIRY_WARNING_DAYS = 14

#: Every warning sentence from :func:`check_certificate` starts with this.
WARNING_PREFIX = "Warning: "

#: RFC 6120 §13.7.1.4 XmppAddr identifier (otherName, UTF8String).
ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
#: RFC 4985 SRVName identifier (otherName, IA5String), e.g. ``_xmpp-client.example.com``.
ID_ON_DNSSRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")

_XMPP_SERVICES = ("_xmpp-client.", "_xmpp-server.")
_MIN_RSA_BITS = 2048


def _ascii_domain(domain: str) -> str:
    """*domain* lowercased, without a trailing dot, with Unicode labels as A-labels."""
    name = domain.strip().rstrip(".").lower()
    if name.isascii():
        return name
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError:
        return name


def is_warning(problem: str) -> bool:
    """Whether a sentence from :func:`check_certificate` is only a warning."""
    return problem.startswith(WARNING_PREFIX)


# --------------------------------------------------------------------------- generating


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Atomically replace *path* with *data*, readable per *mode* from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def generate_self_signed(
    domains: Sequence[str],
    cert_path: Path,
    key_path: Path,
    *,
    days: int = 3650,
    key_type: Literal["ec", "rsa"] = "ec",
) -> None:
    """Write a new self-signed certificate for *domains* and its private key.

    The key is EC P-256 (or RSA 2048 with ``key_type="rsa"``), written as
    unencrypted PKCS#8 PEM with mode 0600.  The certificate's subjectAltName
    lists exactly the given names as DNS names (Unicode names as A-labels) and
    its common name is the first domain.  It is valid from an hour ago for
    *days* days.  Parent folders are created; existing files are replaced.
    """
    if isinstance(domains, str):
        raise TypeError("domains must be a sequence of names, not a single string")
    names = list(dict.fromkeys(_ascii_domain(domain) for domain in domains))
    if not names or not all(names):
        raise ValueError("at least one non-empty domain name is required")
    if days < 1:
        raise ValueError("days must be at least 1")

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
        usage_key_encipherment = False
    elif key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        usage_key_encipherment = True
    else:
        raise ValueError(f"unknown key type {key_type!r}; use 'ec' or 'rsa'")

    subject_attrs = []
    if len(names[0]) <= 64:  # the X.520 upper bound for commonName
        subject_attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, names[0]))
    subject = x509.Name(subject_attrs)
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
        except ValueError:
            alt_names.append(x509.DNSName(name))

    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=usage_key_encipherment,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    certificate = builder.sign(key, hashes.SHA256())

    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(Path(key_path), key_pem, 0o600)
    _write_private(Path(cert_path), certificate.public_bytes(serialization.Encoding.PEM), 0o644)


# --------------------------------------------------------------------------- names


def _der_string(value: bytes) -> str | None:
    """Decode a DER UTF8String or IA5String, or return ``None``."""
    if len(value) < 2 or value[0] not in (0x0C, 0x16):
        return None
    length = value[1]
    offset = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(value) < 2 + count:
            return None
        length = int.from_bytes(value[2 : 2 + count], "big")
        offset = 2 + count
    body = value[offset : offset + length]
    if len(body) != length:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The server identities in *cert*'s subjectAltName, as written there.

    DNS names and IP addresses are listed as-is; XmppAddr names are listed as
    their domain, and SRV names (``_xmpp-client.example.com``) as written.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(san.get_values_for_type(x509.DNSName))
    names.extend(str(address) for address in san.get_values_for_type(x509.IPAddress))
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id in (ID_ON_XMPPADDR, ID_ON_DNSSRV):
            text = _der_string(other.value)
            if text:
                names.append(text)
    return names


def _dns_id_matches(pattern: str, domain: str) -> bool:
    """RFC 6125 §6.4 matching of one DNS-ID against an ASCII reference domain.

    A wildcard is only honoured as the whole left-most label, matches exactly
    one label, and needs at least two labels after it (so ``*.com`` matches
    nothing).
    """
    pattern = _ascii_domain(pattern)
    if not pattern or not domain:
        return False
    if "*" not in pattern:
        return pattern == domain
    first, _, rest = pattern.partition(".")
    if first != "*" or "*" in rest or rest.count(".") < 1:
        return False
    label, dot, remainder = domain.partition(".")
    return bool(label) and bool(dot) and remainder == rest


def certificate_covers(cert: x509.Certificate, domain: str) -> bool:
    """Whether *cert* is valid for the XMPP service *domain* (RFC 6125, RFC 7590).

    DNS names in subjectAltName may use a wildcard as the whole left-most
    label (``*.example.com`` covers ``a.example.com`` but neither
    ``example.com`` nor ``a.b.example.com``).  XmppAddr and XMPP SRV names
    must match exactly; an IP address domain must appear as an IP address
    entry.  The subject's common name is not consulted.
    """
    reference = _ascii_domain(domain)
    try:
        address = ipaddress.ip_address(reference.strip("[]"))
    except ValueError:
        address = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if address is not None:
        return address in san.get_values_for_type(x509.IPAddress)
    if any(_dns_id_matches(name, reference) for name in san.get_values_for_type(x509.DNSName)):
        return True
    for other in san.get_values_for_type(x509.OtherName):
        text = _der_string(other.value)
        if text is None:
            continue
        if other.type_id == ID_ON_XMPPADDR and _ascii_domain(text) == reference:
            return True
        if other.type_id == ID_ON_DNSSRV:
            for service in _XMPP_SERVICES:
                if text.lower().startswith(service) and (
                    _ascii_domain(text[len(service) :]) == reference
                ):
                    return True
    return False


# --------------------------------------------------------------------------- checking


def _read(path: Path, what: str, problems: list[str]) -> bytes | None:
    """Read *path*, recording a sentence in *problems* on failure."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        problems.append(f"The {what} file {path} does not exist.")
    except IsADirectoryError:
        problems.append(f"The {what} file {path} is a folder, not a file.")
    except OSError as exc:
        problems.append(f"The {what} file {path} could not be read: {exc.strerror or exc}.")
    return None


def _load_certificate(path: Path, data: bytes, problems: list[str]) -> x509.Certificate | None:
    """Parse the first certificate of a PEM file, recording problems."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        try:
            x509.load_der_x509_certificate(data)
        except ValueError:
            problems.append(
                f"The certificate file {path} does not contain a PEM certificate "
                "(a '-----BEGIN CERTIFICATE-----' block)."
            )
        else:
            problems.append(
                f"The certificate file {path} is in DER format, but Salon needs PEM; "
                f"convert it with 'openssl x509 -inform der -in {path} -out {path.name}.pem'."
            )
        return None
    try:
        return x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        problems.append(f"The certificate file {path} contains a damaged PEM certificate.")
        return None


def _load_key(path: Path, data: bytes, problems: list[str]) -> PrivateKeyTypes | None:
    """Parse a PEM private key, recording problems."""
    if b"PRIVATE KEY-----" not in data:
        problems.append(
            f"The key file {path} does not contain a PEM private key "
            "(a '-----BEGIN PRIVATE KEY-----' block)."
        )
        return None
    if b"ENCRYPTED" in data:
        problems.append(
            f"The key file {path} is protected by a passphrase, but Salon needs an unencrypted key."
        )
        return None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        problems.append(
            f"The key file {path} is protected by a passphrase, but Salon needs an unencrypted key."
        )
    except (ValueError, UnsupportedAlgorithm):
        problems.append(f"The key file {path} contains a damaged or unsupported private key.")
    return None


def _public_der(key: PublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo DER of a public key, for comparing keys."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_certificate(
    cert_path: Path, key_path: Path, domain: str, *, now: datetime | None = None
) -> list[str]:
    """Problems that stop *cert_path* and *key_path* serving *domain*, as sentences.

    Checks that both files exist and hold PEM data, that the key is
    unencrypted and belongs to the certificate, that the certificate is valid
    at *now* (default: the current time; naive values are taken as UTC) and
    covers *domain*.  A certificate that expires within
    :data:`EXPIRY_WARNING_DAYS` days gets a sentence starting with
    :data:`WARNING_PREFIX`.  An empty list means all is well.
    """
    cert_path = Path(cert_path)
    key_path = Path(key_path)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    problems: list[str] = []

    cert_data = _read(cert_path, "certificate", problems)
    key_data = _read(key_path, "key", problems)
    cert = _load_certificate(cert_path, cert_data, problems) if cert_data is not None else None
    key = _load_key(key_path, key_data, problems) if key_data is not None else None

    if (
        cert is not None
        and key is not None
        and _public_der(key.public_key()) != _public_der(cert.public_key())
    ):
        problems.append(
            f"The private key in {key_path} does not belong to the certificate in {cert_path}."
        )
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < _MIN_RSA_BITS:
        problems.append(
            f"The key in {key_path} is a {key.key_size}-bit RSA key, which is too weak; "
            f"use at least {_MIN_RSA_BITS} bits."
        )

    if cert is None:
        return problems

    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    if now < not_before:
        problems.append(
            f"The certificate in {cert_path} is not valid until {not_before:%Y-%m-%d %H:%M} UTC."
        )
    elif now > not_after:
        problems.append(
            f"The certificate in {cert_path} expired on {not_after:%Y-%m-%d %H:%M} UTC."
        )
    elif not_after - now <= timedelta(days=EXPIRY_WARNING_DAYS):
        left = (not_after - now).days
        when = "in less than a day" if left == 0 else f"in {left} day{'s' * (left != 1)}"
        problems.append(
            f"{WARNING_PREFIX}the certificate in {cert_path} expires on "
            f"{not_after:%Y-%m-%d %H:%M} UTC, {when}; renew it soon."
        )

    if not certificate_covers(cert, domain):
        names = certificate_names(cert)
        if names:
            listed = ", ".join(names)
            problems.append(
                f"The certificate in {cert_path} does not cover {domain}; it covers {listed}."
            )
        else:
            problems.append(
                f"The certificate in {cert_path} does not cover {domain}; it lists no names "
                "in subjectAltName, which clients require."
            )
    return problems
