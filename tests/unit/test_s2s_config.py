"""The [s2s] table: defaults, targets of static overrides, domain lists, port clash."""

from __future__ import annotations

import pytest

from salon.config import ConfigError, parse_s2s_target, settings_from_dict


def problems_for(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data)
    return info.value.problems


def test_defaults_federate_on_the_standard_ports() -> None:
    s2s = settings_from_dict({}).s2s
    assert s2s.enabled and s2s.require_encryption and not s2s.require_certificate
    assert (s2s.port, s2s.direct_tls_port) == (5269, 5270)
    assert s2s.overrides == {} and s2s.allow == [] and s2s.deny == []
    assert s2s.ca_file == ""


def test_overrides_and_lists_are_normalised() -> None:
    s2s = settings_from_dict(
        {
            "s2s": {
                "overrides": {"Partner.Example.": "10.0.0.5:5269"},
                "allow": ["Partner.Example"],
                "deny": ["Spam.Example."],
            }
        }
    ).s2s
    assert s2s.overrides == {"partner.example": "10.0.0.5:5269"}
    assert s2s.allow == ["partner.example"] and s2s.deny == ["spam.example"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.2:5269", ("127.0.0.2", 5269, False)),
        ("xmpp://xmpp.partner.example:5269", ("xmpp.partner.example", 5269, False)),
        ("xmpps://[::1]:5270", ("::1", 5270, True)),
    ],
)
def test_parse_s2s_target(value: str, expected: tuple[str, int, bool]) -> None:
    assert parse_s2s_target(value) == expected


@pytest.mark.parametrize("value", ["10.0.0.5", "host:0", "host:99999", ":5269", "bad host:1"])
def test_bad_override_targets_are_explained(value: str) -> None:
    (problem,) = problems_for({"s2s": {"overrides": {"partner.example": value}}})
    assert problem.startswith("s2s.overrides: ")
    assert "host:port" in problem or "domain name" in problem


def test_listener_ports_must_differ() -> None:
    (problem,) = problems_for({"s2s": {"port": 5269, "direct_tls_port": 5269}})
    assert "must differ" in problem


def test_unknown_s2s_option_suggests_a_close_one() -> None:
    assert problems_for({"s2s": {"require_certificates": True}}) == [
        "s2s.require_certificates: unknown option; did you mean 'require_certificate'?"
    ]
