"""Tests for salon.certs: generating self-signed certificates and checking them."""

from __future__ import annotations

import stat
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from salon.certs import (
    EXPIRY_WARNING_DAYS,
    ID_ON_XMPPADDR,
    WARNING_PREFIX,
    certificate_covers,
    certificate_names,
    check_certificate,
    generate_self_signed,
    is_warning,
)


def make_cert(
    names: Sequence[x509.GeneralName] | None,
    *,
    not_before: datetime,
    not_after: datetime,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    common_name: str = "example.com",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    """Build a self-signed certificate with chosen names and validity period."""
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(key, hashes.SHA256()), key


def write_pair(
    directory: Path,
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    name: str = "site",
) -> tuple[Path, Path]:
    """Write *cert* and *key* as PEM files and return their paths."""
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def load(path: Path) -> x509.Certificate:
    """Load a PEM certificate file."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def dns_cert(*names: str) -> x509.Certificate:
    """A currently valid certificate whose SAN lists *names* as DNS names."""
    now = datetime.now(UTC)
    cert, _ = make_cert(
        [x509.DNSName(n) for n in names],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=30),
    )
    return cert


# --------------------------------------------------------------------------- generating


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_generate_then_check_is_clean(tmp_path: Path, key_type: str) -> None:
    cert_path = tmp_path / "certs" / "nested" / "example.com.crt"
    key_path = tmp_path / "keys" / "example.com.key"
    generate_self_signed(
        ["example.com", "conference.example.com"],
        cert_path,
        key_path,
        key_type=key_type,  # type: ignore[arg-type]
    )
    assert check_certificate(cert_path, key_path, "example.com") == []
    assert check_certificate(cert_path, key_path, "conference.example.com") == []
    assert check_certificate(cert_path, key_path, "EXAMPLE.com.") == []


def test_generated_files(tmp_path: Path) -> None:
    cert_path = tmp_path / "a" / "x.crt"
    key_path = tmp_path / "b" / "x.key"
    generate_self_signed(["example.com", "other.example"], cert_path, key_path, days=30)

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"

    cert = load(cert_path)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "example.com"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["example.com", "other.example"]
    assert certificate_names(cert) == ["example.com", "other.example"]
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=29) < lifetime <= timedelta(days=30)
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False
    assert list(tmp_path.glob("*/.*")) == []  # no temporary files left behind


def test_generate_replaces_existing_files_and_fixes_mode(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "x.crt", tmp_path / "x.key"
    key_path.write_text("old")
    key_path.chmod(0o644)
    generate_self_signed(["example.com"], cert_path, key_path)
    first = cert_path.read_bytes()
    generate_self_signed(["example.com"], cert_path, key_path)
    assert cert_path.read_bytes() != first
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert check_certificate(cert_path, key_path, "example.com") == []


def test_generate_unicode_domain_uses_a_label(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "x.crt", tmp_path / "x.key"
    generate_self_signed(["bücher.example"], cert_path, key_path)
    assert certificate_names(load(cert_path)) == ["xn--bcher-kva.example"]
    assert check_certificate(cert_path, key_path, "bücher.example") == []
    assert check_certificate(cert_path, key_path, "xn--bcher-kva.example") == []


def test_generate_rejects_bad_arguments(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "x.crt", tmp_path / "x.key"
    with pytest.raises(ValueError):
        generate_self_signed([], cert_path, key_path)
    with pytest.raises(ValueError):
        generate_self_signed(["example.com"], cert_path, key_path, days=0)
    with pytest.raises(TypeError):
        generate_self_signed("example.com", cert_path, key_path)


# --------------------------------------------------------------------------- checking


def test_mismatched_key(tmp_path: Path) -> None:
    generate_self_signed(["example.com"], tmp_path / "a.crt", tmp_path / "a.key")
    generate_self_signed(["example.com"], tmp_path / "b.crt", tmp_path / "b.key")
    problems = check_certificate(tmp_path / "a.crt", tmp_path / "b.key", "example.com")
    assert problems == [
        f"The private key in {tmp_path / 'b.key'} does not belong to the certificate in "
        f"{tmp_path / 'a.crt'}."
    ]


def test_expired_certificate(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    cert, key = make_cert(
        [x509.DNSName("example.com")],
        not_before=now - timedelta(days=400),
        not_after=now - timedelta(days=35),
    )
    cert_path, key_path = write_pair(tmp_path, cert, key)
    problems = check_certificate(cert_path, key_path, "example.com")
    assert len(problems) == 1
    assert problems[0].startswith(f"The certificate in {cert_path} expired on ")
    assert not is_warning(problems[0])


def test_expired_using_now(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "x.crt", tmp_path / "x.key"
    generate_self_signed(["example.com"], cert_path, key_path, days=30)
    later = datetime.now(UTC) + timedelta(days=31)
    problems = check_certificate(cert_path, key_path, "example.com", now=later)
    assert len(problems) == 1 and "expired on" in problems[0]
    naive_later = later.replace(tzinfo=None)
    assert check_certificate(cert_path, key_path, "example.com", now=naive_later) == problems


def test_not_yet_valid(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    cert, key = make_cert(
        [x509.DNSName("example.com")],
        not_before=now + timedelta(days=2),
        not_after=now + timedelta(days=300),
    )
    cert_path, key_path = write_pair(tmp_path, cert, key)
    problems = check_certificate(cert_path, key_path, "example.com")
    assert len(problems) == 1
    assert problems[0].startswith(f"The certificate in {cert_path} is not valid until ")


@pytest.mark.parametrize("days_left", [0, 1, 5, EXPIRY_WARNING_DAYS - 1])
def test_expiring_soon_is_a_warning(tmp_path: Path, days_left: int) -> None:
    now = datetime.now(UTC)
    cert, key = make_cert(
        [x509.DNSName("example.com")],
        not_before=now - timedelta(days=80),
        not_after=now + timedelta(days=days_left, hours=2),
    )
    cert_path, key_path = write_pair(tmp_path, cert, key)
    problems = check_certificate(cert_path, key_path, "example.com", now=now)
    assert len(problems) == 1
    assert problems[0].startswith(WARNING_PREFIX)
    assert is_warning(problems[0])
    assert "renew it soon" in problems[0]


def test_not_expiring_soon_has_no_warning(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "x.crt", tmp_path / "x.key"
    generate_self_signed(["example.com"], cert_path, key_path, days=EXPIRY_WARNING_DAYS + 2)
    assert check_certificate(cert_path, key_path, "example.com") == []


def test_domain_not_covered(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "x.crt", tmp_path / "x.key"
    generate_self_signed(["example.com", "chat.example.com"], cert_path, key_path)
    problems = check_certificate(cert_path, key_path, "example.org")
    assert problems == [
        f"The certificate in {cert_path} does not cover example.org; it covers "
        "example.com, chat.example.com."
    ]


def test_certificate_without_san_is_not_trusted_by_common_name(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    cert, key = make_cert(
        None, not_before=now - timedelta(days=1), not_after=now + timedelta(days=90)
    )
    cert_path, key_path = write_pair(tmp_path, cert, key)
    assert not certificate_covers(cert, "example.com")
    problems = check_certificate(cert_path, key_path, "example.com")
    assert len(problems) == 1 and "lists no names in subjectAltName" in problems[0]


def test_missing_files(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "none.crt", tmp_path / "none.key"
    assert check_certificate(cert_path, key_path, "example.com") == [
        f"The certificate file {cert_path} does not exist.",
        f"The key file {key_path} does not exist.",
    ]


def test_not_pem(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "x.crt", tmp_path / "x.key"
    cert_path.write_text("hello\n")
    key_path.write_text("hello\n")
    problems = check_certificate(cert_path, key_path, "example.com")
    assert problems == [
        f"The certificate file {cert_path} does not contain a PEM certificate "
        "(a '-----BEGIN CERTIFICATE-----' block).",
        f"The key file {key_path} does not contain a PEM private key "
        "(a '-----BEGIN PRIVATE KEY-----' block).",
    ]


def test_der_certificate_is_recognised(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "x.crt", tmp_path / "x.key"
    generate_self_signed(["example.com"], cert_path, key_path)
    cert_path.write_bytes(load(cert_path).public_bytes(serialization.Encoding.DER))
    problems = check_certificate(cert_path, key_path, "example.com")
    assert len(problems) == 1 and "DER format" in problems[0]


def test_damaged_pem(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "x.crt", tmp_path / "x.key"
    generate_self_signed(["example.com"], cert_path, key_path)
    cert_path.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    key_path.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    problems = check_certificate(cert_path, key_path, "example.com")
    assert problems == [
        f"The certificate file {cert_path} contains a damaged PEM certificate.",
        f"The key file {key_path} contains a damaged or unsupported private key.",
    ]


def test_encrypted_key(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "x.crt", tmp_path / "x.key"
    generate_self_signed(["example.com"], cert_path, key_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    problems = check_certificate(cert_path, key_path, "example.com")
    assert len(problems) == 1 and "passphrase" in problems[0]


def test_weak_rsa_key(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cert, key = make_cert(
        [x509.DNSName("example.com")],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=90),
        key=weak,
    )
    cert_path, key_path = write_pair(tmp_path, cert, key)
    problems = check_certificate(cert_path, key_path, "example.com")
    assert len(problems) == 1 and "1024-bit RSA key" in problems[0]


def test_certificate_chain_file_uses_leaf(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("example.org", "*.example.org")
    cert_path, key_path = tmp_path / "chain.pem", tmp_path / "leaf.key"
    leaf.private_key_pem.write_to_path(str(key_path))
    cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    assert check_certificate(cert_path, key_path, "example.org") == []
    assert check_certificate(cert_path, key_path, "muc.example.org") == []
    assert len(check_certificate(cert_path, key_path, "a.b.example.org")) == 1


# --------------------------------------------------------------------------- coverage


@pytest.mark.parametrize(
    ("pattern", "domain", "covered"),
    [
        ("example.com", "example.com", True),
        ("Example.COM", "example.com", True),
        ("example.com", "EXAMPLE.com.", True),
        ("example.com", "www.example.com", False),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "A.Example.Com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "a.example.org", False),
        ("*.example.com", "xn--bcher-kva.example.com", True),
        ("*.example.com", "bücher.example.com", True),
        ("*.com", "example.com", False),
        ("*", "localhost", False),
        ("f*.example.com", "foo.example.com", False),
        ("a.*.example.com", "a.b.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
        ("xn--bcher-kva.example", "bücher.example", True),
    ],
)
def test_dns_name_coverage(pattern: str, domain: str, covered: bool) -> None:
    assert certificate_covers(dns_cert(pattern), domain) is covered


def test_any_of_several_names_covers() -> None:
    cert = dns_cert("a.example", "*.b.example")
    assert certificate_covers(cert, "a.example")
    assert certificate_covers(cert, "x.b.example")
    assert not certificate_covers(cert, "b.example")


def _utf8_der(text: str) -> bytes:
    """DER encoding of a short UTF8String."""
    body = text.encode("utf-8")
    return bytes([0x0C, len(body)]) + body


def test_xmppaddr_other_name_covers() -> None:
    now = datetime.now(UTC)
    cert, _ = make_cert(
        [x509.OtherName(ID_ON_XMPPADDR, _utf8_der("chat.example"))],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=30),
    )
    assert certificate_covers(cert, "chat.example")
    assert certificate_covers(cert, "Chat.Example")
    assert not certificate_covers(cert, "other.example")
    assert certificate_names(cert) == ["chat.example"]


def test_ip_address_coverage(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "x.crt", tmp_path / "x.key"
    generate_self_signed(["127.0.0.1", "[::1]"], cert_path, key_path)
    cert = load(cert_path)
    assert certificate_covers(cert, "127.0.0.1")
    assert certificate_covers(cert, "[::1]")
    assert not certificate_covers(cert, "127.0.0.2")
    assert not certificate_covers(dns_cert("127.0.0.1"), "127.0.0.1")


def test_trustme_wildcard_certificate() -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("*.example.net")
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    assert certificate_covers(cert, "chat.example.net")
    assert not certificate_covers(cert, "example.net")
