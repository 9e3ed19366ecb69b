"""Salon's configuration: one TOML file validated into typed settings.

The file is read with :mod:`tomllib` and validated with pydantic.  Every option
has a default, so an empty file is a working configuration that serves
``localhost``.  Unknown keys are errors, and every problem found is reported as
one plain sentence in :attr:`ConfigError.problems`, for example::

    c2s.port: 'abc' is not a whole number.
    c2s.prot: unknown option; did you mean 'port'?

Relative paths in the file are relative to ``server.data_dir``, which is itself
relative to the folder holding the config file.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import textwrap
import tomllib
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "DEFAULT_MODULES",
    "C2SSettings",
    "ComponentSettings",
    "ComponentsSettings",
    "ConfigError",
    "HostSettings",
    "HttpSettings",
    "LimitsSettings",
    "ModulesSettings",
    "S2SSettings",
    "ServerSettings",
    "Settings",
    "Socks5Settings",
    "default_config_text",
    "load_settings",
    "normalise_domain",
    "parse_s2s_target",
    "settings_from_dict",
]

#: Modules enabled when the config file does not list any.
DEFAULT_MODULES: tuple[str, ...] = (
    "disco",
    "ping",
    "version",
    "time",
    "last",
    "vcard",
    "private",
    "caps",
    "contact",
    "roster",
    "presence",
    "message",
    "offline",
    "carbons",
    "blocking",
    "register",
    "upload",
    "muc",
    "pep",
    "pubsub",
    "bookmarks",
    "avatars",
    "extdisco",
    "mam",
    "smacks",
    "csi",
    "push",
    "adhoc",
    "admin",
    "spam_reports",
)

#: Domain hosted when the config file has no ``[hosts]`` table.
DEFAULT_HOST = "localhost"

_CUSTOM_ERROR = "salon_config"
_LABEL_CHARS_HINT = "use only letters, digits, hyphens and dots"


class ConfigError(Exception):
    """The configuration could not be loaded.

    :attr:`problems` holds one plain sentence per problem found, suitable for
    showing to the person who wrote the file.
    """

    def __init__(self, problems: str | Sequence[str], *, path: Path | None = None) -> None:
        """Create the error from one problem sentence or a list of them."""
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        self.path = path
        super().__init__("\n".join(self.problems))


def _custom_error(text: str) -> PydanticCustomError:
    """A validation error whose message is *text*, used as-is in problem sentences."""
    return PydanticCustomError(_CUSTOM_ERROR, "{text}", {"text": text})


def normalise_domain(domain: str) -> str:
    """Return *domain* in the form Salon uses as a host key, or raise ``ValueError``.

    The name is NFC-normalised and lowercased (no IDNA conversion, so
    internationalised names stay in Unicode) and one trailing dot is removed.
    It must look like a plausible DNS name: dot-separated labels of 1 to 63
    letters, digits or hyphens, not starting or ending with a hyphen, at most
    253 characters in all.  An IPv4 address or a bracketed IPv6 address is also
    accepted.  The ``ValueError`` message is one sentence without a trailing
    period.
    """
    name = unicodedata.normalize("NFC", domain).lower()
    if name.endswith(".") and len(name) > 1:
        name = name[:-1]
    shown = repr(domain)
    if not name:
        raise ValueError("a domain name must not be empty")
    if name.startswith("[") and name.endswith("]"):
        try:
            address = ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            raise ValueError(f"{shown} is not a valid bracketed IPv6 address") from None
        return f"[{address.compressed}]"
    if len(name) > 253:
        raise ValueError(f"{shown} is longer than the 253 characters a domain name may have")
    for label in name.split("."):
        if not label:
            raise ValueError(f"{shown} is not a plausible domain name: it has an empty label")
        if len(label) > 63:
            raise ValueError(
                f"{shown} is not a plausible domain name: the label {label!r} is longer "
                "than 63 characters"
            )
        bad = next((c for c in label if not (c.isalnum() or c == "-")), None)
        if bad is not None:
            raise ValueError(
                f"{shown} is not a plausible domain name: {bad!r} is not allowed "
                f"({_LABEL_CHARS_HINT})"
            )
        if label.startswith("-") or label.endswith("-"):
            raise ValueError(
                f"{shown} is not a plausible domain name: the label {label!r} starts or "
                "ends with a hyphen"
            )
    return name


def _validate_domain_key(domain: str) -> str:
    """Pydantic hook: normalise a ``[hosts]`` key, reporting implausible names."""
    try:
        return normalise_domain(domain)
    except ValueError as exc:
        raise _custom_error(str(exc)) from None


DomainName = Annotated[str, AfterValidator(_validate_domain_key)]


LogLevel = Literal["debug", "info", "warning", "error"]


class _Section(BaseModel):
    """Base for every config table: strict TOML types, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ServerSettings(_Section):
    """The ``[server]`` table: process-wide settings."""

    data_dir: str = Field(
        default=".",
        min_length=1,
        description=(
            "Folder for Salon's data. Relative paths elsewhere in this file are relative "
            "to it; it is itself relative to the folder holding this file."
        ),
    )
    storage: str = Field(
        default="sqlite:///salon.db",
        min_length=1,
        description=(
            "Where accounts and other data are stored: 'sqlite:///salon.db' (a file, "
            "relative to data_dir) or 'postgresql://user@host:5432/db'."
        ),
    )
    log_level: LogLevel = Field(
        default="info",
        description="How much to log: 'debug', 'info', 'warning' or 'error'.",
    )

    log_levels: dict[str, LogLevel] = Field(
        default_factory=dict,
        description="A log level per subsystem, keyed by logger name: for example "
        '{ "salon.net.s2s" = "debug", "salon.modules.muc" = "warning" }.',
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="One line per log record: 'text' (key=value fields) or 'json'.",
    )
    admins: list[str] = Field(
        default_factory=list,
        description="Bare JIDs of the server's administrators (XEP-0133 commands), on "
        'every host; a host may add its own in [hosts."<domain>"] admins.',
    )
    pid_file: str = Field(
        default="salon.pid",
        min_length=1,
        description="Where 'salon serve' writes its process id ('salon reload' reads it).",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_level(cls, value: Any) -> Any:
        """Accept log levels in any letter case."""
        return value.lower() if isinstance(value, str) else value

    @field_validator("storage")
    @classmethod
    def _check_storage(cls, value: str) -> str:
        """Only SQLite and PostgreSQL URLs are supported."""
        scheme = value.split(":", 1)[0].split("+", 1)[0].lower() if ":" in value else ""
        if scheme not in {"sqlite", "postgresql", "postgres"} or "://" not in value:
            raise _custom_error(
                f"{value!r} is not a supported database URL; use 'sqlite:///salon.db' or "
                "'postgresql://user@host:5432/db'"
            )
        return value


class C2SSettings(_Section):
    """The ``[c2s]`` table: client-to-server listeners and stream limits."""

    interfaces: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description=(
            'Addresses to listen on for client connections; use "0.0.0.0" for every '
            'IPv4 address and "::" for every IPv6 address.'
        ),
    )
    port: int = Field(
        default=5222,
        ge=0,
        le=65535,
        description="Port for client connections that start in plain text and use STARTTLS "
        "(0 picks a free port).",
    )
    direct_tls_port: int = Field(
        default=5223,
        ge=0,
        le=65535,
        description="Port for client connections that start with TLS (XEP-0368) "
        "(0 picks a free port).",
    )
    starttls_enabled: bool = Field(
        default=True, description="Whether to listen on 'port' and offer STARTTLS there."
    )
    direct_tls_enabled: bool = Field(
        default=True, description="Whether to listen on 'direct_tls_port'."
    )
    require_encryption: bool = Field(
        default=True,
        description="Whether clients must use TLS before they may authenticate.",
    )
    max_stanza_size: int = Field(
        default=262144,
        ge=1,
        description="Largest stanza a client may send, in bytes (RFC 6120 requires at "
        "least 10000).",
    )
    max_depth: int = Field(
        default=32, ge=1, description="Deepest XML element nesting allowed inside a stanza."
    )
    idle_timeout: float = Field(
        default=600.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a connection may send nothing before it is closed.",
    )
    handshake_timeout: float = Field(
        default=60.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a new connection has to authenticate and bind a resource.",
    )
    max_auth_attempts: int = Field(
        default=3,
        ge=1,
        description="Failed authentication attempts allowed before the connection is closed.",
    )
    auth_failure_delay: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds to wait before answering a failed authentication; it doubles "
        "with each further failure on the same connection.",
    )
    max_send_queue: int = Field(
        default=1048576,
        ge=1,
        description="Bytes that may wait to be sent to a slow client before the "
        "connection is closed.",
    )

    @field_validator("interfaces")
    @classmethod
    def _check_interfaces(cls, value: list[str]) -> list[str]:
        """Every interface must be an IP address or a plausible host name."""
        if not value:
            raise _custom_error("list at least one address to listen on")
        for address in value:
            try:
                ipaddress.ip_address(address)
                continue
            except ValueError:
                pass
            try:
                normalise_domain(address)
            except ValueError:
                raise _custom_error(f"{address!r} is not an IP address or host name") from None
        return value

    @model_validator(mode="after")
    def _check_ports(self) -> C2SSettings:
        """The two listeners cannot share a fixed port."""
        if (
            self.starttls_enabled
            and self.direct_tls_enabled
            and self.port != 0
            and self.port == self.direct_tls_port
        ):
            raise _custom_error(
                f"port and direct_tls_port are both {self.port}, but they must differ"
            )
        return self


def _check_url_path(value: str) -> str:
    """A mount point: starts with '/', is not the root, and ends without '/'."""
    path = value.rstrip("/")
    if not value.startswith("/") or not path or any(c in value for c in " ?#"):
        raise _custom_error(f"{value!r} is not a URL path such as '/http-bind'")
    return path


UrlPath = Annotated[str, AfterValidator(_check_url_path)]


class HttpSettings(_Section):
    """The ``[http]`` table: the web server for BOSH, WebSocket, host-meta and the chat page."""

    enabled: bool = Field(
        default=True,
        description="Whether to run the HTTP server (BOSH, WebSocket, host-meta, /chat).",
    )
    interfaces: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Addresses the HTTP and HTTPS ports listen on; behind a reverse proxy "
        "keep 127.0.0.1.",
    )
    port: int = Field(
        default=5280, ge=0, le=65535, description="Plain HTTP port (0 picks a free port)."
    )
    tls_port: int = Field(
        default=5281,
        ge=0,
        le=65535,
        description="HTTPS port, using the hosts' certificates (0 picks a free port).",
    )
    tls_enabled: bool = Field(default=True, description="Whether to listen on 'tls_port'.")
    bosh_path: UrlPath = Field(
        default="/http-bind", description="Where BOSH (XEP-0124, XEP-0206) is served."
    )
    websocket_path: UrlPath = Field(
        default="/xmpp-websocket", description="Where XMPP over WebSocket (RFC 7395) is served."
    )
    chat_path: UrlPath = Field(default="/chat", description="Where the web chat page is served.")
    web_client_dir: str = Field(
        default="web/node_modules/converse.js/dist",
        min_length=1,
        description="Folder holding Converse.js's dist files, served by the chat page "
        "('make run' installs them under var/web).",
    )
    cors_origins: list[str] = Field(
        default_factory=lambda: ["*"],
        description='Web origins whose pages may use BOSH and host-meta ("*" for any; an '
        "empty list sends no CORS headers).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="Addresses of reverse proxies whose X-Forwarded-Proto, -Host and -For "
        "headers are believed.",
    )
    consider_secure: bool = Field(
        default=False,
        description="Treat plain-HTTP clients as encrypted; only for a TLS-terminating "
        "proxy that cannot send X-Forwarded-Proto.",
    )
    consider_loopback_secure: bool = Field(
        default=True,
        description="Let browsers on this machine log in over plain HTTP and ws:// (loopback "
        "traffic never crosses a network; browsers treat http://localhost as a secure "
        "context). Requests carrying proxy headers never count: a local reverse proxy "
        "speaks for remote clients.",
    )
    public_url: str = Field(
        default="",
        description="Base URL advertised in host-meta, such as 'https://chat.example.org' "
        "(empty: taken from each request).",
    )
    see_other_uri: str = Field(
        default="",
        description="When set, WebSocket clients are sent to this ws:// or wss:// URI "
        "instead of being served (RFC 7395 see-other-uri).",
    )
    bosh_max_wait: int = Field(
        default=60, ge=1, le=3600, description="Longest time a BOSH request is held, in seconds."
    )
    bosh_max_hold: int = Field(
        default=1, ge=1, le=8, description="Most BOSH requests held at once per session."
    )
    bosh_inactivity: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="Seconds a BOSH session may go without any request before it ends.",
    )
    bosh_polling: int = Field(
        default=2,
        ge=0,
        le=600,
        description="Shortest interval between empty requests of a polling BOSH client.",
    )
    bosh_max_pause: int = Field(
        default=120, ge=0, le=3600, description="Longest BOSH pause a client may ask for."
    )
    metrics_enabled: bool = Field(
        default=True, description="Serve Prometheus metrics at 'metrics_path'."
    )
    metrics_path: UrlPath = Field(default="/metrics", description="Where metrics are served.")
    metrics_allow: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Networks whose clients may read the metrics (the socket's address; "
        "proxy headers do not count).",
    )

    @field_validator("interfaces", "trusted_proxies")
    @classmethod
    def _check_addresses(cls, value: list[str]) -> list[str]:
        """Every entry must be an IP address or a plausible host name."""
        return _check_address_list(value)

    @field_validator("metrics_allow")
    @classmethod
    def _check_metrics_allow(cls, value: list[str]) -> list[str]:
        """Every entry must be a network such as '10.0.0.0/8' or an address."""
        return _check_networks(value)

    @field_validator("see_other_uri")
    @classmethod
    def _check_see_other_uri(cls, value: str) -> str:
        """RFC 7395 redirects to WebSocket URIs only."""
        if value and not value.startswith(("ws://", "wss://")):
            raise _custom_error(f"{value!r} is not a ws:// or wss:// URI")
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        """An http(s) base URL, kept without its trailing slash."""
        if value and not value.startswith(("http://", "https://")):
            raise _custom_error(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_distinct(self) -> HttpSettings:
        """Ports and mount points must not collide."""
        if self.tls_enabled and self.port != 0 and self.port == self.tls_port:
            raise _custom_error(f"port and tls_port are both {self.port}, but they must differ")
        paths = [self.bosh_path, self.websocket_path, self.chat_path]
        if len(set(paths)) != len(paths):
            raise _custom_error("bosh_path, websocket_path and chat_path must differ")
        if any(p == "/.well-known" or p.startswith("/.well-known/") for p in paths):
            raise _custom_error("/.well-known is reserved for host-meta")
        return self


def _check_networks(value: list[str]) -> list[str]:
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise _custom_error(f"{entry!r} is not an IP network such as '10.0.0.0/8'") from None
    return value


def _check_address_list(value: list[str]) -> list[str]:
    """Pydantic helper: IP addresses or host names (shared by listener address lists)."""
    for address in value:
        try:
            ipaddress.ip_address(address)
            continue
        except ValueError:
            pass
        try:
            normalise_domain(address)
        except ValueError:
            raise _custom_error(f"{address!r} is not an IP address or host name") from None
    return value


def parse_s2s_target(value: str) -> tuple[str, int, bool]:
    """``"host:port"`` (STARTTLS) or ``"xmpps://host:port"`` (direct TLS, XEP-0368) as
    ``(host, port, is_direct_tls)``; an IPv6 host is written in brackets. Raises
    ``ValueError`` with one sentence."""
    text = value.strip()
    is_direct_tls = text.startswith("xmpps://")
    text = text.removeprefix("xmpps://").removeprefix("xmpp://")
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f'{value!r} is not host:port (for example "10.0.0.5:5269")')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        normalise_domain(host)
    return host, int(port_text), is_direct_tls


class S2SSettings(_Section):
    """The ``[s2s]`` table: federation with other XMPP servers (server-to-server)."""

    enabled: bool = Field(
        default=True,
        description="Whether to federate at all; false keeps a private deployment to itself "
        "(stanzas to other domains get remote-server-not-found).",
    )
    interfaces: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description='Addresses to listen on for other servers; use "0.0.0.0" and "::" in '
        "production.",
    )
    port: int = Field(
        default=5269,
        ge=0,
        le=65535,
        description="Port for server connections that start in plain text and use STARTTLS "
        "(0 picks a free port).",
    )
    direct_tls_port: int = Field(
        default=5270,
        ge=0,
        le=65535,
        description="Port for server connections that start with TLS (XEP-0368) "
        "(0 picks a free port).",
    )
    direct_tls_enabled: bool = Field(
        default=True, description="Whether to listen on 'direct_tls_port'."
    )
    require_encryption: bool = Field(
        default=True, description="Whether server connections must use TLS, both ways."
    )
    require_certificate: bool = Field(
        default=False,
        description="Whether peers must prove their domain with a certificate that validates "
        "against ca_file; false also accepts Server Dialback (XEP-0220).",
    )
    ca_file: str = Field(
        default="",
        description="PEM bundle of the certificate authorities trusted for peers' "
        "certificates; empty means the system's bundle.",
    )
    overrides: dict[DomainName, str] = Field(
        default_factory=dict,
        description='Where to reach a domain instead of asking DNS: "host:port" (STARTTLS) '
        'or "xmpps://host:port" (direct TLS), e.g. { "partner.example" = "10.0.0.5:5269" }.',
    )
    allow: list[str] = Field(
        default_factory=list,
        description="If not empty, the only remote domains to federate with.",
    )
    deny: list[str] = Field(
        default_factory=list, description="Remote domains never to federate with."
    )
    idle_timeout: float = Field(
        default=600.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a server connection may carry nothing before it is closed.",
    )
    connect_timeout: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds to reach and authenticate with a remote server before the "
        "stanzas waiting for it bounce with remote-server-timeout.",
    )
    max_queue: int = Field(
        default=1000,
        ge=1,
        description="Stanzas that may wait for a connection to one remote domain; more "
        "bounce with resource-constraint.",
    )
    max_stanza_size: int = Field(
        default=262144, ge=10000, description="Largest stanza a remote server may send, in bytes."
    )

    @field_validator("interfaces")
    @classmethod
    def _check_interfaces(cls, value: list[str]) -> list[str]:
        """Every interface must be an IP address or a plausible host name."""
        if not value:
            raise _custom_error("list at least one address to listen on")
        return _check_address_list(value)

    @field_validator("allow", "deny")
    @classmethod
    def _check_domains(cls, value: list[str]) -> list[str]:
        """Domain names, normalised."""
        try:
            return [normalise_domain(domain) for domain in value]
        except ValueError as exc:
            raise _custom_error(str(exc)) from None

    @field_validator("overrides")
    @classmethod
    def _check_overrides(cls, value: dict[str, str]) -> dict[str, str]:
        """Every target must be host:port."""
        for target in value.values():
            try:
                parse_s2s_target(target)
            except ValueError as exc:
                raise _custom_error(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _check_ports(self) -> S2SSettings:
        """The two listeners cannot share a fixed port."""
        if self.direct_tls_enabled and self.port != 0 and self.port == self.direct_tls_port:
            raise _custom_error(
                f"port and direct_tls_port are both {self.port}, but they must differ"
            )
        return self


class ComponentSettings(_Section):
    """One ``[components."<domain>"]`` table: an external component (XEP-0114)."""

    secret: str = Field(
        min_length=1,
        description="Shared secret the component proves in its handshake; keep it long "
        "and random, and the same in the component's own configuration.",
    )


class ComponentsSettings(_Section):
    """The ``[components]`` table: the listener for external components (XEP-0114).

    In the file, every sub-table names one component domain and holds its secret
    (``[components."gateway.example.org"]``); they are collected into :attr:`domains`.
    The listener runs only when at least one component is configured.
    """

    interfaces: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Addresses to listen on for components; components usually run on the "
        "same machine, so keep 127.0.0.1 unless they do not.",
    )
    port: int = Field(
        default=5347,
        ge=0,
        le=65535,
        description="Port for component connections (0 picks a free port).",
    )
    handshake_timeout: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a new component connection has to complete its handshake.",
    )
    max_stanza_size: int = Field(
        default=262144, ge=10000, description="Largest stanza a component may send, in bytes."
    )
    max_send_queue: int = Field(
        default=8388608,
        ge=1,
        description="Bytes that may wait to be sent to a slow component before the "
        "connection is closed.",
    )
    domains: dict[DomainName, ComponentSettings] = Field(
        default_factory=dict,
        description="One table per component domain, keyed by the domain.",
    )

    @model_validator(mode="before")
    @classmethod
    def _collect_component_tables(cls, data: Any) -> Any:
        """Move every sub-table into ``domains`` (their keys are component domains)."""
        if not isinstance(data, dict):
            return data
        result: dict[str, Any] = {}
        domains: dict[str, Any] = dict(data.get("domains") or {})
        for key, value in data.items():
            if key == "domains":
                continue
            if isinstance(value, dict):
                domains[key] = value
            else:
                result[key] = value
        result["domains"] = domains
        return result

    @field_validator("interfaces")
    @classmethod
    def _check_interfaces(cls, value: list[str]) -> list[str]:
        """Every interface must be an IP address or a plausible host name."""
        if not value:
            raise _custom_error("list at least one address to listen on")
        return _check_address_list(value)


class Socks5Settings(_Section):
    """The ``[socks5]`` table: the relay behind the XEP-0065 proxy module (``proxy65``).

    The relay listens only when some host enables the ``proxy65`` module.
    """

    interfaces: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Addresses the SOCKS5 relay listens on; clients of both parties of a "
        "transfer must reach it, so list a public address in production.",
    )
    port: int = Field(default=7777, ge=0, le=65535, description="Port of the SOCKS5 relay.")
    public_host: str = Field(
        default="",
        description="Host name or address announced to clients (empty: the first listening "
        "address).",
    )
    public_port: int = Field(
        default=0, ge=0, le=65535, description="Port announced to clients (0: 'port')."
    )
    max_bytes: int = Field(
        default=1073741824,
        ge=1,
        description="Bytes one transfer may carry; past it both connections are closed.",
    )
    buffer_size: int = Field(
        default=65536,
        ge=1024,
        description="Bytes buffered towards a slow reader before the relay stops reading "
        "from its peer.",
    )
    max_pending: int = Field(
        default=1000, ge=1, description="Transfers waiting for activation at once."
    )
    activation_timeout: float = Field(
        default=60.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a connection may wait for its peer and the activation.",
    )
    idle_timeout: float = Field(
        default=300.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds an active transfer may stay silent before it is closed.",
    )

    @field_validator("interfaces")
    @classmethod
    def _check_interfaces(cls, value: list[str]) -> list[str]:
        if not value:
            raise _custom_error("list at least one address to listen on")
        return _check_address_list(value)


class LimitsSettings(_Section):
    """The ``[limits]`` table: abuse controls (README, "Abuse controls"). 0 turns a limit off."""

    c2s_read_rate: int = Field(
        default=0, ge=0, description="Bytes per second a client connection may send (0: no limit)."
    )
    c2s_read_burst: int = Field(
        default=1048576, ge=1024, description="Bytes a client may send at once above the rate."
    )
    s2s_read_rate: int = Field(
        default=0, ge=0, description="Bytes per second a server connection may send (0: no limit)."
    )
    s2s_read_burst: int = Field(
        default=4194304, ge=1024, description="Bytes a server may send at once above the rate."
    )
    max_connections_per_ip: int = Field(
        default=100, ge=0, description="Open client connections per IP address (0: no limit)."
    )
    max_auth_failures_per_ip: int = Field(
        default=10,
        ge=0,
        description="SASL failures per IP address within 'auth_failure_window' before the "
        "address is blocked for 'block_seconds' (0: no limit).",
    )
    auth_failure_window: float = Field(
        default=300.0, gt=0, description="Seconds over which SASL failures are counted."
    )
    block_seconds: float = Field(
        default=600.0, gt=0, description="How long a blocked address stays blocked."
    )
    stanza_rate: float = Field(
        default=0.0, ge=0, description="Stanzas per second a client session may send (0: no limit)."
    )
    stanza_burst: int = Field(
        default=100, ge=1, description="Stanzas a session may send at once above the rate."
    )
    exempt: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Networks the per-IP limits do not apply to.",
    )

    @field_validator("exempt")
    @classmethod
    def _check_exempt(cls, value: list[str]) -> list[str]:
        """Every entry must be a network such as '10.0.0.0/8' or an address."""
        return _check_networks(value)


class HostSettings(_Section):
    """One ``[hosts."<domain>"]`` table: a domain this server hosts."""

    certificate: str | None = Field(
        default=None,
        min_length=1,
        description="PEM certificate file for this domain (default: certs/<domain>.crt).",
    )
    key: str | None = Field(
        default=None,
        min_length=1,
        description="PEM private key file for this domain (default: certs/<domain>.key).",
    )
    admins: list[str] = Field(
        default_factory=list,
        description="Bare JIDs who administer this domain, besides server.admins.",
    )


class ModulesSettings(_Section):
    """The ``[modules]`` table: which modules run, and their options.

    In the file, every sub-table other than ``enabled`` holds one module's
    options (``[modules.version]``); they are collected into :attr:`options`
    keyed by module name and validated later by each module.  A dict that
    already has an ``options`` key (the shape of :meth:`model_dump`) is also
    accepted, so settings round-trip.
    """

    enabled: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MODULES),
        description="Names of the modules to run.",
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Options for each module, keyed by module name; each module checks "
        "its own options.",
    )

    @model_validator(mode="before")
    @classmethod
    def _collect_module_tables(cls, data: Any) -> Any:
        """Move every key other than ``enabled`` into ``options``."""
        if not isinstance(data, dict):
            return data
        result: dict[str, Any] = {}
        options: dict[str, Any] = {}
        given = data.get("options")
        if isinstance(given, dict) and all(isinstance(v, dict) for v in given.values()):
            options.update(given)
        elif "options" in data:
            options["options"] = given
        for key, value in data.items():
            if key == "enabled":
                result["enabled"] = value
            elif key != "options":
                if key in options:
                    raise _custom_error(f"options for module {key!r} are given twice")
                options[key] = value
        result["options"] = options
        return result

    @field_validator("enabled")
    @classmethod
    def _check_enabled(cls, value: list[str]) -> list[str]:
        """Module names must be non-empty and listed once."""
        seen: set[str] = set()
        for name in value:
            if not name.strip():
                raise _custom_error("module names must not be empty")
            if name in seen:
                raise _custom_error(f"{name!r} is listed more than once")
            seen.add(name)
        return value

    def options_for(self, module: str) -> dict[str, Any]:
        """Return the option table given for *module*, or an empty dict."""
        return dict(self.options.get(module, {}))


class ClusterSettings(_Section):
    """The ``[cluster]`` table: several Salon processes serving as one, sharing sessions and
    routing stanzas over Redis, their data in PostgreSQL."""

    redis: str | None = Field(
        default=None,
        description="Redis URL ('redis://127.0.0.1:6379/0'); set, this process is a cluster "
        "node. Requires server.storage on PostgreSQL.",
    )
    node: str = Field(
        default="",
        description="This node's name, unique in the cluster; empty takes the host name and "
        "process id. 'salon serve --workers N' appends '-1' .. '-N'.",
    )
    key_prefix: str = Field(
        default="salon:",
        description="Prefix of every Redis key the cluster uses (two clusters can share one "
        "Redis with different prefixes).",
    )
    heartbeat_interval: float = Field(
        default=1.0, gt=0, strict=False, description="Seconds between a node's heartbeats."
    )
    heartbeat_ttl: float = Field(
        default=15.0,
        gt=0,
        strict=False,
        description="Seconds without a heartbeat after which a node counts as dead: its "
        "sessions leave the directory and its queued stanzas are re-routed.",
    )
    dialback_secret: str = Field(
        default="",
        description="Secret for server dialback keys, the same on every node; empty lets the "
        "first node make one and keep it in Redis for the others.",
    )

    @field_validator("redis")
    @classmethod
    def _check_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise _custom_error(f"{value!r} is not a Redis URL (redis://host:6379/0)")
        return value

    @model_validator(mode="after")
    def _check_ttl(self) -> ClusterSettings:
        if self.heartbeat_ttl <= self.heartbeat_interval:
            raise _custom_error("cluster.heartbeat_ttl must be longer than heartbeat_interval")
        return self

    @property
    def enabled(self) -> bool:
        return self.redis is not None


def _default_hosts() -> dict[str, HostSettings]:
    """Hosts served when the file has no ``[hosts]`` table."""
    return {DEFAULT_HOST: HostSettings()}


class Settings(_Section):
    """The whole configuration file."""

    server: ServerSettings = Field(
        default_factory=ServerSettings, description="Process-wide settings."
    )
    c2s: C2SSettings = Field(
        default_factory=C2SSettings, description="Client-to-server listeners and limits."
    )
    s2s: S2SSettings = Field(
        default_factory=S2SSettings, description="Federation with other XMPP servers."
    )
    http: HttpSettings = Field(
        default_factory=HttpSettings,
        description="The web server: BOSH, WebSocket, host-meta and the chat page.",
    )
    hosts: dict[DomainName, HostSettings] = Field(
        default_factory=_default_hosts,
        description="One table per hosted domain; keys are lowercased domain names.",
    )
    modules: ModulesSettings = Field(
        default_factory=ModulesSettings, description="Modules to run and their options."
    )
    components: ComponentsSettings = Field(
        default_factory=ComponentsSettings,
        description="External components (XEP-0114) and their listener.",
    )
    socks5: Socks5Settings = Field(
        default_factory=Socks5Settings,
        description="The SOCKS5 relay of the bytestream proxy (XEP-0065).",
    )
    limits: LimitsSettings = Field(
        default_factory=LimitsSettings, description="Abuse controls: rates and per-IP limits."
    )
    cluster: ClusterSettings = Field(
        default_factory=ClusterSettings,
        description="Cluster mode: several Salon processes as one server on Redis and PostgreSQL.",
    )
    config_path: Path | None = Field(
        default=None,
        exclude=True,
        strict=False,
        description="Absolute path of the file these settings were loaded from, if any.",
    )

    @field_validator("hosts", mode="before")
    @classmethod
    def _check_hosts_table(cls, value: Any) -> Any:
        """At least one domain, and no two keys naming the same domain."""
        if not isinstance(value, dict):
            return value
        if not value:
            raise _custom_error("at least one hosted domain is required")
        seen: dict[str, str] = {}
        for key in value:
            if not isinstance(key, str):
                continue
            try:
                normal = normalise_domain(key)
            except ValueError:
                continue  # reported per key by DomainName
            if normal in seen:
                raise _custom_error(
                    f"{seen[normal]!r} and {key!r} name the same domain; keep only one"
                )
            seen[normal] = key
        return value

    @model_validator(mode="after")
    def _check_component_domains(self) -> Settings:
        """A component needs a domain of its own, not a hosted one."""
        for domain in self.components.domains:
            if domain in self.hosts:
                raise _custom_error(
                    f"components.{json.dumps(domain)} is also a hosted domain; a component "
                    "needs a domain of its own, such as a subdomain"
                )
        return self

    @model_validator(mode="after")
    def _check_cluster_storage(self) -> Settings:
        """A cluster keeps its data where every node reaches it: PostgreSQL, not SQLite."""
        if self.cluster.enabled and self.server.storage.lower().startswith("sqlite"):
            raise _custom_error(
                "cluster mode ([cluster] redis) needs server.storage on PostgreSQL: a SQLite "
                "file is one process's; set server.storage = 'postgresql://user@host/db'"
            )
        return self

    def data_path(self) -> Path:
        """Absolute path of ``server.data_dir``.

        A relative ``data_dir`` is taken relative to the config file's folder,
        or to the current directory when the settings did not come from a file.
        """
        data_dir = Path(self.server.data_dir).expanduser()
        if not data_dir.is_absolute():
            base = self.config_path.parent if self.config_path is not None else Path.cwd()
            data_dir = base / data_dir
        return data_dir.resolve()

    def resolve(self, p: str | Path) -> Path:
        """Absolute path for *p*, taken relative to :meth:`data_path` if relative."""
        path = Path(p).expanduser()
        if path.is_absolute():
            return path
        return (self.data_path() / path).resolve()

    def host_cert_paths(self, domain: str) -> tuple[Path, Path]:
        """Absolute ``(certificate, key)`` paths for hosted *domain*.

        Raises ``KeyError`` if *domain* is not hosted.
        """
        try:
            name = normalise_domain(domain)
        except ValueError:
            name = domain
        host = self.hosts.get(name)
        if host is None:
            raise KeyError(f"{domain!r} is not a hosted domain")
        cert = host.certificate if host.certificate is not None else f"certs/{name}.crt"
        key = host.key if host.key is not None else f"certs/{name}.key"
        return self.resolve(cert), self.resolve(key)

    def admins_of(self, domain: str) -> frozenset[str]:
        """The bare JIDs (as written, lowercased) who administer hosted ``domain``."""
        host = self.hosts.get(domain)
        extra = host.admins if host is not None else []
        return frozenset(jid.strip().lower() for jid in [*self.server.admins, *extra])

    def storage_url(self) -> str:
        """``server.storage`` with a relative SQLite file made absolute under data_dir."""
        url = self.server.storage
        prefix, sep, rest = url.partition(":///")
        if (
            sep
            and prefix.split("+", 1)[0].lower() == "sqlite"
            and rest
            and not rest.startswith((":memory:", "/", "file:"))
        ):
            path_part, query_sep, query = rest.partition("?")
            absolute = self.resolve(path_part)
            return f"{prefix}:///{absolute}{query_sep}{query}"
        return url


# --------------------------------------------------------------------------- loading


def load_settings(path: Path | str) -> Settings:
    """Read and validate the TOML config file at *path*.

    Raises :class:`ConfigError` listing every problem found.
    """
    config_path = Path(path).expanduser().absolute()
    try:
        raw = config_path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"The config file {config_path} does not exist.", path=config_path
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"The config file {config_path} is a folder, not a file.", path=config_path
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"The config file {config_path} could not be read: {reason}.", path=config_path
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"The config file is not valid UTF-8 text (bad byte at line {line}).",
            path=config_path,
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_syntax_problem(exc), path=config_path) from None
    return settings_from_dict(data, config_path=config_path)


def settings_from_dict(data: dict[str, Any], *, config_path: Path | None = None) -> Settings:
    """Validate already-parsed TOML *data* into :class:`Settings`.

    *config_path* is where the data came from; relative ``data_dir`` values
    are taken relative to its folder.  Raises :class:`ConfigError`.
    """
    if not isinstance(data, dict):
        raise ConfigError("The configuration must be a table of settings.", path=config_path)
    if "config_path" in data:
        raise ConfigError(
            "config_path: unknown option; it is set by Salon, not in the file.",
            path=config_path,
        )
    path = Path(config_path).absolute() if config_path is not None else None
    try:
        return Settings.model_validate({**data, "config_path": path})
    except ValidationError as exc:
        problems = [_problem_sentence(error, data) for error in exc.errors()]
        raise ConfigError(problems, path=path) from None


_TOML_POSITION = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def _toml_syntax_problem(exc: tomllib.TOMLDecodeError) -> str:
    """One sentence describing a TOML syntax error."""
    message = str(exc)
    match = _TOML_POSITION.match(message)
    if match:
        detail = _sentence_fragment(match["msg"])
        return (
            f"The config file has a TOML syntax error at line {match['line']}, "
            f"column {match['col']}: {detail}."
        )
    if message.endswith("(at end of document)"):
        detail = _sentence_fragment(message.removesuffix("(at end of document)"))
        return f"The config file has a TOML syntax error at the end of the file: {detail}."
    return f"The config file has a TOML syntax error: {_sentence_fragment(message)}."


def _sentence_fragment(text: str) -> str:
    """Strip *text* and its final period, and lowercase its first letter."""
    text = text.strip().rstrip(".")
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    return text


# --------------------------------------------------------------------------- error text

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_location(loc: Iterable[int | str]) -> str:
    """Render a pydantic error location the way the key is written in TOML."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            if parts:
                parts[-1] += f"[{item}]"
            else:
                parts.append(f"[{item}]")
        elif _BARE_KEY.match(item):
            parts.append(item)
        else:
            parts.append(json.dumps(item, ensure_ascii=False))
    return ".".join(parts)


def _file_location(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Map a location in the model to the location of the key in the file."""
    loc = tuple(item for item in loc if item != "[key]")
    if loc[:2] == ("modules", "options"):
        loc = ("modules", *loc[2:])
    if loc[:2] == ("components", "domains"):
        loc = ("components", *loc[2:])
    return loc


def _show(value: Any) -> str:
    """A short rendering of a value from the file, in TOML-ish notation."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Keys allowed in the table at model location *loc*."""
    model: type[BaseModel] = Settings
    index = 0
    while index < len(loc):
        field = model.model_fields.get(str(loc[index]))
        if field is None:
            return []
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            index += 1
            continue
        if get_origin(annotation) is dict:
            value_type = get_args(annotation)[1]
            if isinstance(value_type, type) and issubclass(value_type, BaseModel):
                model = value_type
                index += 2
                continue
        return []
    return [name for name in model.model_fields if name != "config_path"]


def _suggestion(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the choice closest to *word*, or ``""``."""
    lowered = {choice.lower(): choice for choice in choices}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    if not match and len(word) >= 3:
        # Abbreviations such as 'cert' for 'certificate'.
        match = [choice for choice in lowered if choice.startswith(word.lower())][:1]
    return f"; did you mean {lowered[match[0]]!r}?" if match else ""


def _problem_sentence(error: Any, data: dict[str, Any]) -> str:
    """Turn one pydantic error into one plain sentence about the config file."""
    loc = tuple(error["loc"])
    where = _toml_location(_file_location(loc)) or "The configuration"
    kind: str = error["type"]
    value = error.get("input")
    ctx: dict[str, Any] = error.get("ctx") or {}
    shown = _show(value)

    if kind == "extra_forbidden":
        key = str(loc[-1])
        what = "section" if isinstance(value, dict) else "option"
        hint = _suggestion(key, _known_keys(loc[:-1]))
        return f"{where}: unknown {what}{hint or '.'}"
    if kind == _CUSTOM_ERROR:
        return f"{where}: {ctx.get('text', error['msg'])}."
    if loc[:2] == ("modules", "options") and len(loc) == 3 and kind == "dict_type":
        hint = _suggestion(str(loc[2]), ["enabled"])
        if hint:
            return f"{where}: unknown option{hint}"
        return f"{where}: module options must be a table such as [{where}], not {shown}."

    simple = {
        "int_type": f"{shown} is not a whole number",
        "int_parsing": f"{shown} is not a whole number",
        "int_from_float": f"{shown} is not a whole number",
        "float_type": f"{shown} is not a number",
        "float_parsing": f"{shown} is not a number",
        "finite_number": f"{shown} is not a finite number",
        "bool_type": f"{shown} is not true or false",
        "bool_parsing": f"{shown} is not true or false",
        "string_type": f"{shown} is not a text string; put it in double quotes",
        "list_type": f'{shown} is not a list; write it like ["a", "b"]',
        "dict_type": f"{shown} is not a table",
        "model_type": f"{shown} is not a table",
        "model_attributes_type": f"{shown} is not a table",
        "missing": "is required but not given",
    }
    if kind in simple:
        return f"{where}: {simple[kind]}."
    if kind == "literal_error":
        return f"{where}: {shown} is not one of {ctx.get('expected', 'the allowed values')}."
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        bound = ctx.get("gt", ctx.get("ge", ctx.get("lt", ctx.get("le"))))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        phrase = {
            "greater_than": "more than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }[kind]
        return f"{where}: {shown} is out of range; it must be {phrase} {bound}."
    if kind == "string_too_short":
        return f"{where}: must not be empty."
    message = str(error.get("msg", "is not valid")).rstrip(".")
    return f"{where}: {_sentence_fragment(message)} (got {shown})."


# --------------------------------------------------------------------------- default file


def _toml_value(value: Any) -> str:
    """Render a simple Python value as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (
            f"{json.dumps(k, ensure_ascii=False)} = {_toml_value(v)}" for k, v in value.items()
        )
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


def _comment(text: str) -> list[str]:
    """*text* wrapped into ``#`` comment lines."""
    return [f"# {line}" for line in textwrap.wrap(text, width=76)]


def _section_lines(
    model: type[BaseModel], instance: BaseModel, skip: tuple[str, ...] = ()
) -> list[str]:
    """Commented ``key = default`` lines for every field of a section."""
    lines: list[str] = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        lines.extend(_comment(field.description or name))
        lines.append(f"{name} = {_toml_value(getattr(instance, name))}")
        lines.append("")
    return lines


def default_config_text(domain: str = DEFAULT_HOST) -> str:
    """A commented config file serving *domain*, with every option at its default.

    Raises ``ValueError`` if *domain* is not a plausible domain name.
    """
    name = normalise_domain(domain)
    quoted = json.dumps(name, ensure_ascii=False)
    lines = [
        "# Salon configuration file.",
        "#",
        "# Every option below is shown with its default value; you may delete any",
        "# of them. Relative paths are relative to server.data_dir, which is itself",
        "# relative to the folder holding this file.",
        "",
        "[server]",
        *_section_lines(ServerSettings, ServerSettings()),
        "[c2s]",
        *_section_lines(C2SSettings, C2SSettings()),
        "[s2s]",
        *_section_lines(S2SSettings, S2SSettings()),
        "[http]",
        *_section_lines(HttpSettings, HttpSettings()),
        '# One [hosts."<domain>"] table for each domain this server hosts.',
        f"[hosts.{quoted}]",
        *_comment(HostSettings.model_fields["certificate"].description or ""),
        f"certificate = {_toml_value(f'certs/{name}.crt')}",
        "",
        *_comment(HostSettings.model_fields["key"].description or ""),
        f"key = {_toml_value(f'certs/{name}.key')}",
        "",
        "[socks5]",
        *_section_lines(Socks5Settings, Socks5Settings()),
        "[limits]",
        *_section_lines(LimitsSettings, LimitsSettings()),
        "[components]",
        *_section_lines(ComponentsSettings, ComponentsSettings(), skip=("domains",)),
        '# One [components."<domain>"] table for each external component (XEP-0114):',
        f'# [components."gateway.{name}"]',
        '# secret = "a long random secret"',
        "",
        "[modules]",
        *_comment(ModulesSettings.model_fields["enabled"].description or ""),
        f"enabled = {_toml_value(list(DEFAULT_MODULES))}",
        "",
        "# Options for a module go in a table named after it, for example:",
        "# [modules.version]",
        "# hide_os = false",
    ]
    return "\n".join(lines) + "\n"
