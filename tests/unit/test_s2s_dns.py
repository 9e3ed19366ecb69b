"""Finding a remote domain's servers: overrides, SRV for both services, RFC 6120 §3.2.1
fallback, the "." target, RFC 2782 ordering. DNS is a fake: nothing leaves the machine."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest

from salon.net.dns import NoService, S2SResolver, S2STarget


def Srv(priority: int, weight: int, port: int, target: str) -> Any:
    """A real SRV rdata, as dnspython's resolver returns it."""
    return dns.rdata.from_text(
        dns.rdataclass.IN, dns.rdatatype.SRV, f"{priority} {weight} {port} {target}"
    )


@pytest.fixture(autouse=True)
def seeded_random() -> Iterator[None]:
    """dnspython's RFC 2782 ordering draws from the ``random`` module: seed it, then restore."""
    state = random.getstate()
    random.seed(1)
    yield
    random.setstate(state)


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
    return S2SResolver(overrides, resolver=FakeDns(records))


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


def srv_domain(*records: Any) -> S2SResolver:
    return resolver({"_xmpp-server._tcp.example.org.": list(records)})


async def hosts(r: S2SResolver) -> list[str]:
    return [t.host for t in await r.targets("example.org")]


async def test_priority_groups_come_lowest_first_with_every_record() -> None:
    r = srv_domain(
        Srv(1, 10, 5269, "a.example.org."),
        Srv(1, 90, 5269, "b.example.org."),
        Srv(0, 0, 5269, "c.example.org."),
        Srv(2, 0, 5269, "d.example.org."),
    )
    seen_second: set[str] = set()
    for _ in range(50):
        ordered = await hosts(r)
        assert ordered[0] == "c.example.org" and ordered[-1] == "d.example.org"
        assert set(ordered[1:3]) == {"a.example.org", "b.example.org"}
        seen_second.add(ordered[1])
    assert seen_second == {"a.example.org", "b.example.org"}  # random within a group


async def test_heavier_records_are_tried_first_more_often() -> None:
    r = srv_domain(Srv(0, 1, 5269, "light.example.org."), Srv(0, 99, 5269, "heavy.example.org."))
    firsts = [(await hosts(r))[0] for _ in range(200)]
    assert firsts.count("heavy.example.org") > 150


async def test_weight_zero_has_a_small_chance_next_to_weighted_records() -> None:
    """RFC 2782: weight 0 records get "a very small chance of being selected" when others
    in the group have weight; with only weight 0 records every order is possible."""
    r = srv_domain(Srv(0, 0, 5269, "zero.example.org."), Srv(0, 50, 5269, "some.example.org."))
    firsts = [(await hosts(r))[0] for _ in range(200)]
    assert firsts.count("some.example.org") > 190

    r = srv_domain(Srv(0, 0, 5269, "x.example.org."), Srv(0, 0, 5269, "y.example.org."))
    orders = {tuple(await hosts(r)) for _ in range(50)}
    assert orders == {
        ("x.example.org", "y.example.org"),
        ("y.example.org", "x.example.org"),
    }
