"""Finding a remote domain's servers: overrides, SRV for both services, RFC 6120 §3.2.1
fallback, the "." target, RFC 2782 ordering. DNS is a fake: nothing leaves the machine."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import dns.resolver
import pytest

from salon.net.dns import NoService, S2SResolver, S2STarget, weighted_order


@dataclass
class Srv:
    priority: int
    weight: int
    port: int
    target: str


class FakeDns:
    def __init__(self, records: dict[str, list[Srv]]) -> None:
        self.records = records
        self.asked: list[str] = []

    async def resolve(self, qname: str, rdtype: str) -> Any:
        assert rdtype == "SRV"
        self.asked.append(qname)
        if qname not in self.records:
            raise dns.resolver.NXDOMAIN()
        return self.records[qname]


def resolver(records: dict[str, list[Srv]], **overrides: str) -> S2SResolver:
    return S2SResolver(overrides, resolver=FakeDns(records), rng=random.Random(1))


async def test_override_wins_without_asking_dns() -> None:
    fake = FakeDns({})
    r = S2SResolver({"partner.example": "xmpps://10.0.0.6:5270"}, resolver=fake)
    assert await r.targets("partner.example") == [S2STarget("10.0.0.6", 5270, True)]
    assert fake.asked == []


async def test_no_srv_falls_back_to_the_domain_on_5269() -> None:
    r = resolver({})
    assert await r.targets("example.org") == [S2STarget("example.org", 5269, False)]


async def test_both_services_are_asked_and_merged_by_priority() -> None:
    r = resolver(
        {
            "_xmpps-server._tcp.example.org.": [Srv(5, 0, 5270, "tls.example.org.")],
            "_xmpp-server._tcp.example.org.": [
                Srv(10, 0, 5269, "backup.example.org."),
                Srv(1, 0, 5269, "main.example.org."),
            ],
        }
    )
    assert await r.targets("example.org") == [
        S2STarget("main.example.org", 5269, False),
        S2STarget("tls.example.org", 5270, True),
        S2STarget("backup.example.org", 5269, False),
    ]


async def test_dot_target_means_no_service() -> None:
    r = resolver({"_xmpp-server._tcp.example.org.": [Srv(0, 0, 0, ".")]})
    with pytest.raises(NoService):
        await r.targets("example.org")


def test_weighted_order_keeps_priorities_and_every_record() -> None:
    records = [Srv(1, 10, 1, "a"), Srv(1, 90, 2, "b"), Srv(0, 0, 3, "c"), Srv(2, 0, 4, "d")]
    for seed in range(20):
        ordered = weighted_order(records, random.Random(seed))
        assert ordered[0].target == "c" and ordered[-1].target == "d"
        assert {r.target for r in ordered[1:3]} == {"a", "b"}


def test_weighted_order_prefers_heavier_records() -> None:
    records = [Srv(0, 1, 1, "light"), Srv(0, 99, 2, "heavy")]
    rng = random.Random(7)
    firsts = [weighted_order(records, rng)[0].target for _ in range(200)]
    assert firsts.count("heavy") > 150
