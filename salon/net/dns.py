"""Where a remote XMPP domain's servers are: static overrides, then DNS SRV records for
``_xmpps-server._tcp`` (direct TLS, XEP-0368) and ``_xmpp-server._tcp`` (STARTTLS), then the
domain itself on port 5269 (RFC 6120 §3.2.1 fallback; the connect resolves A/AAAA)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.rdtypes.util
import dns.resolver

from salon.config import parse_s2s_target

log = logging.getLogger(__name__)

DEFAULT_S2S_PORT = 5269


@dataclass(frozen=True, slots=True)
class S2STarget:
    host: str
    port: int
    is_direct_tls: bool = False


class _AsyncResolver(Protocol):
    async def resolve(self, qname: str, rdtype: str) -> Any: ...


class NoService(Exception):
    """The domain says it offers no XMPP server service (an SRV target of ".")."""


class S2SResolver:
    def __init__(
        self,
        overrides: Mapping[str, str],
        *,
        resolver: _AsyncResolver | None = None,
        lifetime: float = 10.0,
    ) -> None:
        self.overrides = {domain: parse_s2s_target(target) for domain, target in overrides.items()}
        self._resolver = resolver
        self._lifetime = lifetime

    def _dns(self) -> _AsyncResolver:
        if self._resolver is None:
            resolver = dns.asyncresolver.Resolver()
            resolver.lifetime = self._lifetime
            self._resolver = resolver
        return self._resolver

    async def targets(self, domain: str) -> list[S2STarget]:
        """Targets to try in order. Raises NoService when the domain declines service."""
        override = self.overrides.get(domain)
        if override is not None:
            host, port, is_direct_tls = override
            return [S2STarget(host, port, is_direct_tls)]
        tls, plain = await asyncio.gather(
            self._srv(f"_xmpps-server._tcp.{domain}."),
            self._srv(f"_xmpp-server._tcp.{domain}."),
        )
        if tls is None and plain is None:
            return [S2STarget(domain, DEFAULT_S2S_PORT)]  # RFC 6120 §3.2.1: no SRV at all
        records = [(r, True) for r in tls or ()] + [(r, False) for r in plain or ()]
        records = [(r, direct) for r, direct in records if str(r.target) != "."]
        if not records:
            raise NoService(domain)
        by_record = {id(r): direct for r, direct in records}
        # RFC 2782: priority groups lowest first, a weighted random order within each group
        # (weight 0 gets a small chance); both services' records are ordered as one set.
        ordered = dns.rdtypes.util.weighted_processing_order(  # type: ignore[no-untyped-call]
            r for r, _ in records
        )
        return [
            S2STarget(str(r.target).rstrip("."), int(r.port), by_record[id(r)]) for r in ordered
        ]

    async def _srv(self, name: str) -> list[Any] | None:
        """The SRV records at ``name``; None when there are none (or DNS fails)."""
        try:
            answer = await self._dns().resolve(name, "SRV")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return None
        except dns.exception.DNSException as exc:
            log.info("SRV lookup of %s failed: %s", name, exc)
            return None
        return list(answer)
