"""Client-side helpers for raw SASL, TLS and binding tests.

SCRAM is driven by scramp's ``ScramClient``, an implementation independent of the server's,
and channel-binding data is computed here from the certificate the server actually presented
(RFC 5929 §4.1), so neither can hide a server bug.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import slixmpp
from scramp import ScramClient

from tests.integration.harness import (
    NS_BIND,
    NS_SASL,
    PASSWORD,
    RawClient,
    RunningServer,
    SlixClient,
    q,
)

NS_SASL_CB = "urn:xmpp:sasl-cb:0"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_PING = "urn:xmpp:ping"


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode() or "="


def sasl_condition(failure: ET.Element) -> str:
    """The one defined condition of a SASL ``<failure/>`` (``<text/>`` aside)."""
    assert failure.tag == q(NS_SASL, "failure"), ET.tostring(failure)
    conditions = [child.tag for child in failure if child.tag != q(NS_SASL, "text")]
    assert len(conditions) == 1, conditions
    namespace, _, name = conditions[0][1:].partition("}")
    assert namespace == NS_SASL, conditions
    return name


def mechanisms(features: ET.Element) -> list[str]:
    """The mechanism names in ``<mechanisms/>``, in order; [] when not offered."""
    element = features.find(q(NS_SASL, "mechanisms"))
    if element is None:
        return []
    return [m.text or "" for m in element.findall(q(NS_SASL, "mechanism"))]


def tls_object(client: RawClient) -> ssl.SSLObject:
    sslobj = client.writer.get_extra_info("ssl_object")
    assert sslobj is not None, "the connection is not TLS"
    return sslobj


def tls_server_end_point(client: RawClient) -> bytes:
    """RFC 5929 §4.1 binding data: SHA-256 of the server certificate in DER (the trustme
    certificates are signed with SHA-256, so the hash is SHA-256 itself)."""
    der = tls_object(client).getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).digest()


def subject_alt_names(client: RawClient) -> list[str]:
    cert = tls_object(client).getpeercert()
    assert cert is not None
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]


async def secure_stream(client: RawClient, srv: RunningServer, domain: str = "localhost") -> Any:
    """Open, STARTTLS and restart; returns the features of the encrypted stream."""
    await client.open(domain)
    await client.starttls(srv, domain)
    return await client.open(domain)


@dataclass
class ScramResult:
    reply: ET.Element  # <success/> or <failure/>
    scram: ScramClient
    challenged: bool  # whether the server sent its server-first challenge


async def scram_exchange(
    client: RawClient,
    mechanism: str,
    username: str,
    password: str = PASSWORD,
    *,
    channel_binding: tuple[str, bytes] | None = None,
) -> ScramResult:
    """Run one SCRAM exchange on a stream whose features were just received."""
    scram = ScramClient([mechanism], username, password, channel_binding=channel_binding)
    first = scram.get_client_first()
    await client.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{b64(first)}</auth>")
    reply = await client.next()
    if reply.tag != q(NS_SASL, "challenge"):
        return ScramResult(reply, scram, challenged=False)
    scram.set_server_first(base64.b64decode(reply.text or "").decode())
    final = scram.get_client_final()
    await client.send(f"<response xmlns='{NS_SASL}'>{b64(final)}</response>")
    return ScramResult(await client.next(), scram, challenged=True)


def verify_success(result: ScramResult) -> None:
    """``<success/>`` carrying a server-final message whose signature scramp accepts."""
    assert result.reply.tag == q(NS_SASL, "success"), ET.tostring(result.reply)
    server_final = base64.b64decode(result.reply.text or "", validate=True).decode()
    result.scram.set_server_final(server_final)  # raises on a wrong server signature


async def restart_and_bind(client: RawClient, domain: str, resource: str | None) -> str:
    features = await client.open(domain)
    assert features.find(q(NS_BIND, "bind")) is not None, ET.tostring(features)
    return await client.bind(resource)


async def ping(client: SlixClient, to: str | None = None) -> Any:
    """XEP-0199 ping from a slixmpp client; returns the result iq (raises on error/timeout)."""
    xmpp: slixmpp.ClientXMPP = client.xmpp
    iq = xmpp.make_iq_get(ito=to or xmpp.boundjid.domain)
    iq.append(ET.Element(q(NS_PING, "ping")))
    return await iq.send(timeout=5)
