"""The ``[http]`` table: the web server's ports, mount points and BOSH limits."""

from __future__ import annotations

from typing import Any

import pytest

from salon.config import ConfigError, HttpSettings, settings_from_dict


def problems_for(http: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings_from_dict({"http": http})
    return info.value.problems


def test_defaults_serve_the_issue_ports_and_paths() -> None:
    http = settings_from_dict({}).http
    assert http == HttpSettings()
    assert (http.enabled, http.port, http.tls_port) == (True, 5280, 5281)
    assert (http.bosh_path, http.websocket_path, http.chat_path) == (
        "/http-bind",
        "/xmpp-websocket",
        "/chat",
    )
    assert http.cors_origins == ["*"]


def test_mount_points_lose_their_trailing_slash() -> None:
    http = settings_from_dict({"http": {"bosh_path": "/bosh/", "chat_path": "/web/chat/"}}).http
    assert (http.bosh_path, http.chat_path) == ("/bosh", "/web/chat")


@pytest.mark.parametrize(
    ("http", "problem"),
    [
        ({"bosh_path": "bosh"}, "http.bosh_path: 'bosh' is not a URL path such as '/http-bind'."),
        ({"chat_path": "/"}, "http.chat_path: '/' is not a URL path such as '/http-bind'."),
        (
            {"bosh_path": "/x", "websocket_path": "/x"},
            "http: bosh_path, websocket_path and chat_path must differ.",
        ),
        ({"chat_path": "/.well-known/chat"}, "http: /.well-known is reserved for host-meta."),
        ({"port": 5281}, "http: port and tls_port are both 5281, but they must differ."),
        (
            {"see_other_uri": "https://x"},
            "http.see_other_uri: 'https://x' is not a ws:// or wss:// URI.",
        ),
        (
            {"public_url": "chat.example"},
            "http.public_url: 'chat.example' is not an http:// or https:// URL.",
        ),
        (
            {"trusted_proxies": ["not an address"]},
            "http.trusted_proxies: 'not an address' is not an IP address or host name.",
        ),
        ({"bosh_max_wait": 0}, "http.bosh_max_wait: 0 is out of range; it must be at least 1."),
        ({"bosh_path_x": "/a"}, "http.bosh_path_x: unknown option; did you mean 'bosh_path'?"),
    ],
)
def test_mistakes_are_explained(http: dict[str, Any], problem: str) -> None:
    assert problems_for(http) == [problem]
