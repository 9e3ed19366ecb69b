"""Tests for salon.config: loading, defaults, error sentences and path resolution."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from salon.config import (
    DEFAULT_MODULES,
    C2SSettings,
    ConfigError,
    HostSettings,
    HttpSettings,
    ModulesSettings,
    S2SSettings,
    ServerSettings,
    Settings,
    default_config_text,
    load_settings,
    normalise_domain,
    settings_from_dict,
)


def write_config(tmp_path: Path, text: str, name: str = "salon.toml") -> Path:
    """Write *text* as a config file under *tmp_path* and return its path."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_for(data: dict[str, Any]) -> list[str]:
    """The problem sentences reported for *data*, failing if it validates."""
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data)
    return info.value.problems


def problems_for_text(tmp_path: Path, text: str) -> list[str]:
    """The problem sentences reported for a config file containing *text*."""
    with pytest.raises(ConfigError) as info:
        load_settings(write_config(tmp_path, text))
    return info.value.problems


# --------------------------------------------------------------------------- defaults


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, ""))
    assert settings.server == ServerSettings()
    assert settings.server.storage == "sqlite:///salon.db"
    assert settings.server.log_level == "info"
    assert settings.c2s == C2SSettings()
    assert settings.c2s.interfaces == ["127.0.0.1"]
    assert (settings.c2s.port, settings.c2s.direct_tls_port) == (5222, 5223)
    assert settings.c2s.starttls_enabled and settings.c2s.direct_tls_enabled
    assert settings.c2s.require_encryption
    assert settings.c2s.max_stanza_size == 262144
    assert settings.c2s.max_depth == 32
    assert settings.c2s.idle_timeout == 600.0
    assert settings.c2s.handshake_timeout == 60.0
    assert settings.c2s.max_auth_attempts == 3
    assert settings.c2s.auth_failure_delay == 1.0
    assert settings.c2s.max_send_queue == 1048576
    assert settings.hosts == {"localhost": HostSettings()}
    assert settings.modules.enabled == list(DEFAULT_MODULES)
    assert settings.modules.options == {}
    assert settings.config_path == (tmp_path / "salon.toml").absolute()


def test_empty_dict_gives_defaults() -> None:
    settings = settings_from_dict({})
    assert settings == Settings()
    assert list(settings.hosts) == ["localhost"]
    assert settings.config_path is None


def test_default_values_are_not_shared() -> None:
    first = settings_from_dict({})
    first.c2s.interfaces.append("::1")
    first.modules.enabled.append("extra")
    second = settings_from_dict({})
    assert second.c2s.interfaces == ["127.0.0.1"]
    assert "extra" not in second.modules.enabled


@pytest.mark.parametrize("domain", ["localhost", "example.com", "chat.example.org"])
def test_default_config_text_loads(tmp_path: Path, domain: str) -> None:
    settings = load_settings(write_config(tmp_path, default_config_text(domain)))
    assert list(settings.hosts) == [domain]
    assert settings.server == ServerSettings()
    assert settings.c2s == C2SSettings()
    assert settings.modules == ModulesSettings()
    cert, key = settings.host_cert_paths(domain)
    assert cert == tmp_path.resolve() / "certs" / f"{domain}.crt"
    assert key == tmp_path.resolve() / "certs" / f"{domain}.key"


def test_default_config_text_default_domain_is_localhost() -> None:
    settings = settings_from_dict(tomllib.loads(default_config_text()))
    assert list(settings.hosts) == ["localhost"]


def test_default_config_text_normalises_domain() -> None:
    text = default_config_text("Chat.Example.COM.")
    assert '[hosts."chat.example.com"]' in text
    assert list(settings_from_dict(tomllib.loads(text)).hosts) == ["chat.example.com"]


def test_default_config_text_handles_unicode_domain() -> None:
    settings = settings_from_dict(tomllib.loads(default_config_text("Bücher.example")))
    assert list(settings.hosts) == ["bücher.example"]


def test_default_config_text_mentions_every_option() -> None:
    text = default_config_text()
    for model in (ServerSettings, C2SSettings, S2SSettings, HttpSettings, HostSettings):
        for name in model.model_fields:
            assert re.search(rf"^{name} = ", text, re.MULTILINE), name
    assert re.search(r"^enabled = ", text, re.MULTILINE)
    assert text.startswith("#")


def test_default_config_text_rejects_bad_domain() -> None:
    with pytest.raises(ValueError):
        default_config_text("not a domain")


@pytest.mark.parametrize(
    "model", [ServerSettings, C2SSettings, HttpSettings, HostSettings, ModulesSettings, Settings]
)
def test_every_option_has_a_description(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description"


# --------------------------------------------------------------------------- values


def test_full_file_loads(tmp_path: Path) -> None:
    text = """
[server]
data_dir = "var"
storage = "postgresql://salon@db.internal:5432/salon"
log_level = "DEBUG"

[c2s]
interfaces = ["0.0.0.0", "::"]
port = 0
direct_tls_port = 0
starttls_enabled = true
direct_tls_enabled = false
require_encryption = false
max_stanza_size = 65536
max_depth = 16
idle_timeout = 30
handshake_timeout = 5.5
max_auth_attempts = 5
auth_failure_delay = 0
max_send_queue = 4096

[hosts."Example.COM"]
certificate = "tls/example.pem"
key = "/etc/ssl/private/example.key"

[hosts."chat.example.org"]

[modules]
enabled = ["disco", "ping", "version"]

[modules.version]
hide_os = false

[modules.ping]
interval = 30
"""
    settings = load_settings(write_config(tmp_path, text))
    assert settings.server.log_level == "debug"
    assert settings.server.storage.startswith("postgresql://")
    assert settings.c2s.interfaces == ["0.0.0.0", "::"]
    assert settings.c2s.port == 0 and settings.c2s.direct_tls_port == 0
    assert settings.c2s.direct_tls_enabled is False
    assert settings.c2s.idle_timeout == 30.0
    assert isinstance(settings.c2s.idle_timeout, float)
    assert settings.c2s.auth_failure_delay == 0.0
    assert set(settings.hosts) == {"example.com", "chat.example.org"}
    assert settings.modules.enabled == ["disco", "ping", "version"]
    assert settings.modules.options == {"version": {"hide_os": False}, "ping": {"interval": 30}}

    data = tmp_path.resolve() / "var"
    assert settings.data_path() == data
    assert settings.host_cert_paths("example.com") == (
        data / "tls" / "example.pem",
        Path("/etc/ssl/private/example.key"),
    )
    assert settings.host_cert_paths("EXAMPLE.com") == settings.host_cert_paths("example.com")
    assert settings.host_cert_paths("chat.example.org") == (
        data / "certs" / "chat.example.org.crt",
        data / "certs" / "chat.example.org.key",
    )


def test_module_options_captured_and_round_trip() -> None:
    data = {"modules": {"enabled": ["version"], "version": {"hide_os": True, "name": "x"}}}
    settings = settings_from_dict(data)
    assert settings.modules.options == {"version": {"hide_os": True, "name": "x"}}
    assert settings.modules.options_for("version") == {"hide_os": True, "name": "x"}
    assert settings.modules.options_for("ping") == {}
    # A module may have options without being enabled; each module validates its own.
    again = settings_from_dict(settings.model_dump())
    assert again == settings


def test_module_settings_accept_programmatic_form() -> None:
    modules = ModulesSettings(enabled=["ping"], options={"ping": {"interval": 5}})
    assert modules.options == {"ping": {"interval": 5}}


def test_model_dump_excludes_config_path(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, ""))
    assert "config_path" not in settings.model_dump()


def test_hosts_are_lowercased_and_trailing_dot_removed() -> None:
    settings = settings_from_dict({"hosts": {"Example.ORG.": {}, "ÉCOLE.example": {}}})
    assert list(settings.hosts) == ["example.org", "école.example"]


def test_log_level_any_case() -> None:
    assert settings_from_dict({"server": {"log_level": "Warning"}}).server.log_level == "warning"


def test_both_ports_zero_is_allowed() -> None:
    settings = settings_from_dict({"c2s": {"port": 0, "direct_tls_port": 0}})
    assert settings.c2s.port == settings.c2s.direct_tls_port == 0


def test_same_port_allowed_when_one_listener_disabled() -> None:
    data = {"c2s": {"port": 5222, "direct_tls_port": 5222, "direct_tls_enabled": False}}
    assert settings_from_dict(data).c2s.port == 5222


def test_interface_host_name_allowed() -> None:
    assert settings_from_dict({"c2s": {"interfaces": ["localhost"]}}).c2s.interfaces == [
        "localhost"
    ]


# --------------------------------------------------------------------------- problems


def test_unknown_key_suggests_close_match() -> None:
    assert problems_for({"c2s": {"prot": 5222}}) == [
        "c2s.prot: unknown option; did you mean 'port'?"
    ]


def test_unknown_section_suggests_close_match() -> None:
    assert problems_for({"sever": {"log_level": "info"}}) == [
        "sever: unknown section; did you mean 'server'?"
    ]


def test_unknown_key_without_close_match() -> None:
    assert problems_for({"server": {"colour": "blue"}}) == ["server.colour: unknown option."]


def test_unknown_key_in_host_table() -> None:
    assert problems_for({"hosts": {"example.com": {"cert": "x"}}}) == [
        "hosts.\"example.com\".cert: unknown option; did you mean 'certificate'?"
    ]


def test_misspelt_enabled_in_modules() -> None:
    assert problems_for({"modules": {"enable": ["ping"]}}) == [
        "modules.enable: unknown option; did you mean 'enabled'?"
    ]


def test_module_options_must_be_a_table() -> None:
    assert problems_for({"modules": {"ping": 3}}) == [
        "modules.ping: module options must be a table such as [modules.ping], not 3."
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"c2s": {"port": "abc"}}, "c2s.port: 'abc' is not a whole number."),
        ({"c2s": {"port": 5222.5}}, "c2s.port: 5222.5 is not a whole number."),
        ({"c2s": {"port": True}}, "c2s.port: true is not a whole number."),
        ({"c2s": {"idle_timeout": "10"}}, "c2s.idle_timeout: '10' is not a number."),
        (
            {"c2s": {"require_encryption": "yes"}},
            "c2s.require_encryption: 'yes' is not true or false.",
        ),
        (
            {"server": {"data_dir": 5}},
            "server.data_dir: 5 is not a text string; put it in double quotes.",
        ),
        (
            {"c2s": {"interfaces": "127.0.0.1"}},
            'c2s.interfaces: \'127.0.0.1\' is not a list; write it like ["a", "b"].',
        ),
        (
            {"c2s": {"interfaces": ["::1", 7]}},
            "c2s.interfaces[1]: 7 is not a text string; put it in double quotes.",
        ),
        ({"c2s": 5}, "c2s: 5 is not a table."),
        ({"hosts": ["localhost"]}, "hosts: a list is not a table."),
        (
            {"server": {"log_level": "verbose"}},
            "server.log_level: 'verbose' is not one of 'debug', 'info', 'warning' or 'error'.",
        ),
        (
            {"c2s": {"port": 70000}},
            "c2s.port: 70000 is out of range; it must be at most 65535.",
        ),
        (
            {"c2s": {"max_auth_attempts": 0}},
            "c2s.max_auth_attempts: 0 is out of range; it must be at least 1.",
        ),
        (
            {"c2s": {"idle_timeout": 0}},
            "c2s.idle_timeout: 0 is out of range; it must be more than 0.",
        ),
        (
            {"c2s": {"handshake_timeout": float("nan")}},
            "c2s.handshake_timeout: nan is not a finite number.",
        ),
        ({"hosts": {"example.com": {"key": ""}}}, 'hosts."example.com".key: must not be empty.'),
        (
            {"c2s": {"interfaces": []}},
            "c2s.interfaces: list at least one address to listen on.",
        ),
        (
            {"c2s": {"interfaces": ["not an address"]}},
            "c2s.interfaces: 'not an address' is not an IP address or host name.",
        ),
        (
            {"c2s": {"port": 5000, "direct_tls_port": 5000}},
            "c2s: port and direct_tls_port are both 5000, but they must differ.",
        ),
        (
            {"server": {"storage": "mysql://db/salon"}},
            "server.storage: 'mysql://db/salon' is not a supported database URL; use "
            "'sqlite:///salon.db' or 'postgresql://user@host:5432/db'.",
        ),
        (
            {"modules": {"enabled": ["ping", "ping"]}},
            "modules.enabled: 'ping' is listed more than once.",
        ),
        ({"hosts": {}}, "hosts: at least one hosted domain is required."),
        (
            {"hosts": {"Example.com": {}, "example.com": {}}},
            "hosts: 'Example.com' and 'example.com' name the same domain; keep only one.",
        ),
        (
            {"config_path": "/x"},
            "config_path: unknown option; it is set by Salon, not in the file.",
        ),
    ],
)
def test_problem_sentences(data: dict[str, Any], expected: str) -> None:
    assert problems_for(data) == [expected]


@pytest.mark.parametrize(
    "domain",
    [
        "exa mple.com",
        "-bad.example",
        "bad-.example",
        "a..b",
        "under_score.example",
        "a" * 64,
        "x@example.com",
        "example.com/res",
        ".",
        "",
    ],
)
def test_implausible_domains_rejected(domain: str) -> None:
    problems = problems_for({"hosts": {domain: {}}})
    assert len(problems) == 1
    assert problems[0].startswith("hosts")
    assert problems[0].endswith(".")


@pytest.mark.parametrize(
    ("domain", "normal"),
    [
        ("localhost", "localhost"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "[::1]"),
        ("[0:0:0:0:0:0:0:1]", "[::1]"),
    ],
)
def test_normalise_domain(domain: str, normal: str) -> None:
    assert normalise_domain(domain) == normal


def test_every_problem_is_reported_once_each() -> None:
    problems = problems_for(
        {"server": {"log_level": 3}, "c2s": {"port": "x", "prot": 1}, "hosts": {}}
    )
    assert len(problems) == 4
    assert all(problem.endswith((".", "?")) for problem in problems)
    assert all("\n" not in problem for problem in problems)


def test_config_error_str_lists_problems() -> None:
    error = ConfigError(["one.", "two."])
    assert error.problems == ["one.", "two."]
    assert str(error) == "one.\ntwo."
    assert ConfigError("single.").problems == ["single."]


# --------------------------------------------------------------------------- file errors


def test_toml_syntax_error_message(tmp_path: Path) -> None:
    problems = problems_for_text(tmp_path, "[server]\nlog_level = 'info'\n[c2s\nport = 1\n")
    assert len(problems) == 1
    assert re.fullmatch(
        r"The config file has a TOML syntax error at line 3, column \d+: .+\.", problems[0]
    ), problems[0]


def test_toml_syntax_error_at_end_of_file(tmp_path: Path) -> None:
    problems = problems_for_text(tmp_path, "[server]\nlog_level = ")
    assert len(problems) == 1
    assert problems[0].startswith("The config file has a TOML syntax error")


def test_toml_file_problems_are_validated(tmp_path: Path) -> None:
    assert problems_for_text(tmp_path, "[c2s]\nport = 'abc'\n") == [
        "c2s.port: 'abc' is not a whole number."
    ]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.problems == [f"The config file {path} does not exist."]


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert "is a folder" in info.value.problems[0]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "salon.toml"
    path.write_bytes(b"[server]\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.problems == ["The config file is not valid UTF-8 text (bad byte at line 2)."]


# --------------------------------------------------------------------------- paths


def test_relative_data_dir_is_relative_to_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write_config(tmp_path, '[server]\ndata_dir = "../data"\n', name="etc/salon.toml")
    settings = load_settings(path)
    data = (tmp_path / "data").resolve()
    assert settings.data_path() == data
    assert settings.resolve("certs/a.crt") == data / "certs" / "a.crt"
    assert settings.resolve(Path("x/../y")) == data / "y"
    assert settings.resolve("/abs/file") == Path("/abs/file")


def test_default_data_dir_is_config_folder(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, "", name="conf/salon.toml"))
    assert settings.data_path() == (tmp_path / "conf").resolve()
    assert settings.host_cert_paths("localhost") == (
        (tmp_path / "conf" / "certs" / "localhost.crt").resolve(),
        (tmp_path / "conf" / "certs" / "localhost.key").resolve(),
    )


def test_relative_config_path_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("salon.toml"))
    assert settings.config_path is not None and settings.config_path.is_absolute()
    assert settings.data_path() == tmp_path.resolve()


def test_absolute_data_dir(tmp_path: Path) -> None:
    settings = settings_from_dict(
        {"server": {"data_dir": str(tmp_path / "d")}}, config_path=Path("/somewhere/salon.toml")
    )
    assert settings.data_path() == (tmp_path / "d").resolve()


def test_without_config_path_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = settings_from_dict({"server": {"data_dir": "state"}})
    assert settings.data_path() == (tmp_path / "state").resolve()


def test_host_cert_paths_unknown_domain() -> None:
    with pytest.raises(KeyError):
        settings_from_dict({}).host_cert_paths("example.com")


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("sqlite:///salon.db", "sqlite:///{data}/salon.db"),
        ("sqlite+aiosqlite:///db/s.db?timeout=5", "sqlite+aiosqlite:///{data}/db/s.db?timeout=5"),
        ("sqlite:////var/lib/salon.db", "sqlite:////var/lib/salon.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
    ],
)
def test_storage_url_resolves_sqlite_paths(tmp_path: Path, storage: str, expected: str) -> None:
    settings = settings_from_dict(
        {"server": {"storage": storage}}, config_path=tmp_path / "salon.toml"
    )
    assert settings.storage_url() == expected.format(data=tmp_path.resolve())
