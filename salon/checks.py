"""The steps of ``salon check dns|certs|federation``: each one a verdict, what was found and,
when it failed, what to do. Results are ``(ok, what, advice)`` triples."""

from __future__ import annotations

import asyncio
import ssl
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import cast

from salon.certs import check_certificate, is_warning
from salon.config import Settings

Verdict = tuple[bool, str, str]
NS_STREAM = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_DIALBACK = "urn:xmpp:features:dialback"
TIMEOUT = 10.0


def dns_checks(domain: str, nameserver: str | None = None) -> list[Verdict]:
    """The SRV and address records of ``domain``, from the system's resolver or from
    ``nameserver`` (``host`` or ``host:port``, e.g. the zone's authoritative server, to see
    a change before caches expire)."""
    import dns.exception
    import dns.resolver

    if nameserver:
        host, sep, port = nameserver.rpartition(":")
        if not sep or not port.isdigit() or (":" in host and not host.startswith("[")):
            host, port = nameserver, "53"  # a bare name or IPv6 address
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host.strip("[]")]
        resolver.port = int(port)
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = TIMEOUT
    results: list[Verdict] = []
    for service, needed in (
        ("_xmpp-client._tcp", True),
        ("_xmpps-client._tcp", False),
        ("_xmpp-server._tcp", True),
        ("_xmpps-server._tcp", False),
    ):
        name = f"{service}.{domain}"
        try:
            answer = resolver.resolve(name, "SRV")
            targets = ", ".join(f"{r.target.to_text().rstrip('.')}:{r.port}" for r in answer)
            results.append((True, f"{name} SRV -> {targets}", ""))
        except (dns.exception.DNSException, OSError) as exc:
            kind = "missing" if needed else "missing (optional, XEP-0368 direct TLS)"
            advice = (
                f"add '{name}. 3600 IN SRV 0 5 {5222 if 'client' in service else 5269} "
                f"xmpp.{domain}.' (or clients and servers fall back to {domain} itself)"
            )
            results.append((not needed, f"{name} SRV {kind}: {type(exc).__name__}", advice))
    found = False
    for rtype in ("A", "AAAA"):
        try:
            answer = resolver.resolve(domain, rtype)
            found = True
            results.append(
                (True, f"{domain} {rtype} -> {', '.join(r.to_text() for r in answer)}", "")
            )
        except (dns.exception.DNSException, OSError):
            pass
    if not found:
        results.append((False, f"{domain} has no A or AAAA record", f"add an address for {domain}"))
    return results


def cert_checks(settings: Settings, domain: str | None) -> list[Verdict]:
    results: list[Verdict] = []
    hosts = [domain] if domain else list(settings.hosts)
    for host in hosts:
        if host not in settings.hosts:
            results.append((False, f"{host} is not hosted here", "add it under [hosts]"))
            continue
        cert, key = settings.host_cert_paths(host)
        problems = check_certificate(cert, key, host)
        errors = [p for p in problems if not is_warning(p)]
        for warning in (p for p in problems if is_warning(p)):
            results.append((True, f"{host}: warning: {warning}", ""))
        if errors:
            advice = (
                f"get a certificate for {host} (e.g. from an ACME client) and run "
                "'salon cert import /etc/letsencrypt/live', then 'salon reload'"
            )
            results.append((False, f"{host}: {'; '.join(errors)}", advice))
        else:
            results.append((True, f"{host}: {cert} covers {host}", ""))
    return results


class _Stream:
    """The elements of one XML stream, read one top-level element at a time: the parser
    lives as long as the stream (a new one for the stream opened after STARTTLS), so an
    element that arrives after the features is still read at depth 1."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.ready: list[ET.Element] = []

    async def next(self) -> ET.Element:
        """The next top-level element; a stream error raises ConnectionError."""
        while not self.ready:
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.parser.feed(data)
            for event, elem in cast("list[tuple[str, ET.Element]]", self.parser.read_events()):
                if event == "start":
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.ready.append(elem)
        elem = self.ready.pop(0)
        if elem.tag == f"{{{NS_STREAM}}}error":
            raise ConnectionError(f"stream error: {[c.tag for c in elem]}")
        return elem


async def _read_features(stream: _Stream) -> ET.Element:
    """The stream's features (or, after ``<starttls/>``, its ``<proceed/>``)."""
    while True:
        elem = await stream.next()
        if elem.tag in (f"{{{NS_STREAM}}}features", f"{{{NS_TLS}}}proceed"):
            return elem


def _header(domain: str, local: str) -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        f"xmlns:stream='{NS_STREAM}' xmlns:db='jabber:server:dialback' "
        f"from='{local}' to='{domain}' version='1.0'>"
    ).encode()


async def federation_checks(
    domain: str, local: str, address: str | None, ca_file: Path | None
) -> list[Verdict]:
    results: list[Verdict] = []
    if address:
        host, _, port_text = address.rpartition(":")
        targets = [(host, int(port_text))]
    else:
        from salon.net.dns import NoService, S2SResolver

        try:
            resolved = await S2SResolver({}, lifetime=TIMEOUT).targets(domain)
            targets = [(t.host, t.port) for t in resolved if not t.is_direct_tls]
        except NoService:
            targets = [(domain, 5269)]
    reader = writer = None
    for host, port in targets:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
            results.append((True, f"TCP connection to {host}:{port}", ""))
            break
        except (OSError, TimeoutError) as exc:
            results.append(
                (False, f"TCP connection to {host}:{port}: {exc}", "open port 5269 to the server")
            )
    if reader is None or writer is None:
        return results
    try:
        writer.write(_header(domain, local))
        stream = _Stream(reader)
        features = await _read_features(stream)
        if features.find(f"{{{NS_TLS}}}starttls") is None:
            results.append((False, "no STARTTLS offered", "enable TLS for server connections"))
            return results
        results.append((True, "STARTTLS offered", ""))
        writer.write(f"<starttls xmlns='{NS_TLS}'/>".encode())
        proceed = await _read_features(stream)
        if proceed.tag != f"{{{NS_TLS}}}proceed":
            raise ConnectionError("the server did not answer <starttls/> with <proceed/>")
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        try:
            await asyncio.wait_for(writer.start_tls(ctx, server_hostname=domain), TIMEOUT)
            results.append((True, f"TLS with a certificate valid for {domain}", ""))
            verified = True
        except ssl.SSLCertVerificationError as exc:
            results.append(
                (False, f"certificate: {exc.verify_message}",
                 f"serve a CA-signed certificate for {domain} (dialback may still work)")
            )  # fmt: skip
            verified = False
        if verified:
            writer.write(_header(domain, local))
            features = await _read_features(_Stream(reader))  # a new stream over TLS
            mechanisms = [m.text for m in features.iter(f"{{{NS_SASL}}}mechanism")]
            dialback = features.find(f"{{{NS_DIALBACK}}}dialback") is not None
            if "EXTERNAL" in mechanisms or dialback:
                ways = ", ".join(
                    w for w, on in (("SASL EXTERNAL", "EXTERNAL" in mechanisms),
                                    ("dialback", dialback)) if on
                )  # fmt: skip
                results.append((True, f"authentication offered: {ways}", ""))
            else:
                results.append(
                    (False, "neither SASL EXTERNAL nor dialback offered",
                     "the peer refuses us; check its federation settings")
                )  # fmt: skip
    except (OSError, TimeoutError, ConnectionError, ET.ParseError) as exc:
        results.append((False, f"stream negotiation failed: {exc!r}", "check the peer's logs"))
    finally:
        writer.close()
    return results
