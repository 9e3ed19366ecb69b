"""``salon``: the operator's one tool (serve, init, adduser, passwd, deluser, check)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

import salon
from salon.auth.credentials import make_credentials
from salon.certs import check_certificate, generate_self_signed, is_warning
from salon.config import ConfigError, Settings, default_config_text, load_settings
from salon.jid import JID, JIDError
from salon.storage import AccountExists, AccountNotFound, AccountStore, open_storage

T = TypeVar("T")

DEFAULT_CONFIG = Path("var/salon.toml")
GC_YOUNG_THRESHOLD = 20_000  # allocations between young-generation collections (default 700)
config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The TOML configuration file.",
)


def _load(config_path: Path) -> Settings:
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        click.echo(f"{config_path}: the configuration has problems:", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(2)


def _account_jid(settings: Settings, text: str) -> JID:
    try:
        jid = JID.parse(text)
    except JIDError as exc:
        raise click.BadParameter(f"'{text}' is not a valid address: {exc}") from None
    if jid.local is None or jid.resource is not None:
        raise click.BadParameter(f"'{text}' is not an account address like user@{jid.domain}")
    if jid.domain not in settings.hosts:
        hosted = ", ".join(settings.hosts)
        raise click.BadParameter(f"{jid.domain} is not hosted here (hosted: {hosted})")
    return jid


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"salon, version {salon.__version__}")
        ctx.exit()


@click.group()
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show Salon's version and exit.",
)
def main() -> None:
    """Salon, an XMPP server."""


@main.command()
@config_option
@click.option("--domain", default="localhost", show_default=True, help="Domain to serve.")
def init(config_path: Path, domain: str) -> None:
    """Write a default config and self-signed certificates, where missing."""
    if not config_path.exists():
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(default_config_text(domain))
        click.echo(f"wrote {config_path}")
    settings = _load(config_path)
    for host in settings.hosts:
        cert, key = settings.host_cert_paths(host)
        if not cert.exists() or not key.exists():
            generate_self_signed([host], cert, key)
            click.echo(f"generated a self-signed certificate for {host}: {cert}")


@main.command()
@config_option
def serve(config_path: Path) -> None:
    """Run the server until interrupted."""
    settings = _load(config_path)
    _setup_logging(settings.server.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    from salon.app import App

    server = App(settings)
    await server.start()
    # Everything allocated at start-up lives until the end: keep it out of the cyclic
    # collector's scans, and collect the young generation less often (the hot path makes
    # many short-lived, acyclic objects; a profile showed the collector at 14% of CPU).
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for kind, addresses in server.addresses().items():
        for address, port in addresses:
            click.echo(f"listening: {kind} on {address}:{port}")
    await stop.wait()
    click.echo("stopping")
    await server.stop()


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _with_accounts(settings: Settings, action: Callable[[AccountStore], Awaitable[T]]) -> T:
    """Open the storage, run ``action`` on its accounts and close it again."""

    async def run() -> T:
        storage = await open_storage(settings.storage_url(), base_dir=settings.data_path())
        try:
            return await action(storage.accounts)
        finally:
            await storage.close()

    return asyncio.run(run())


def _ask_password(password: str | None) -> str:
    if password is not None:
        return password
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@main.command()
@config_option
@click.argument("jid")
@click.option("--password", help="The password (asked for when left out).")
def adduser(config_path: Path, jid: str, password: str | None) -> None:
    """Create the account JID (user@domain)."""
    settings = _load(config_path)
    account = _account_jid(settings, jid)
    credentials = make_credentials(_ask_password(password))
    try:
        _with_accounts(
            settings,
            lambda accounts: accounts.create(account.domain, account.local or "", credentials),
        )
    except AccountExists:
        click.echo(f"{account} already exists.", err=True)
        sys.exit(1)
    click.echo(f"created {account}")


@main.command()
@config_option
@click.argument("jid")
@click.option("--password", help="The new password (asked for when left out).")
def passwd(config_path: Path, jid: str, password: str | None) -> None:
    """Change the password of the account JID."""
    settings = _load(config_path)
    account = _account_jid(settings, jid)
    credentials = make_credentials(_ask_password(password))
    try:
        _with_accounts(
            settings,
            lambda accounts: accounts.set_credentials(
                account.domain, account.local or "", credentials
            ),
        )
    except AccountNotFound:
        click.echo(f"{account} does not exist.", err=True)
        sys.exit(1)
    click.echo(f"changed the password of {account}")


@main.command()
@config_option
@click.argument("jid")
def deluser(config_path: Path, jid: str) -> None:
    """Delete the account JID and everything stored for it."""
    settings = _load(config_path)
    account = _account_jid(settings, jid)
    is_deleted = _with_accounts(
        settings, lambda accounts: accounts.delete(account.domain, account.local or "")
    )
    if not is_deleted:
        click.echo(f"{account} does not exist.", err=True)
        sys.exit(1)
    click.echo(f"deleted {account}")


@main.command()
@config_option
def check(config_path: Path) -> None:
    """Validate the configuration, modules and certificates; explain each problem."""
    from salon.core.hosts import ModuleError, module_class

    settings = _load(config_path)
    errors = 0
    for name in settings.modules.enabled:
        try:
            cls = module_class(name)
            cls.Options.model_validate(settings.modules.options_for(name))
        except ModuleError as exc:
            click.echo(f"modules: {exc}.")
            errors += 1
        except ValueError as exc:
            click.echo(f"modules.{name}: {exc}")
            errors += 1
    for host in settings.hosts:
        cert, key = settings.host_cert_paths(host)
        for problem in check_certificate(cert, key, host):
            if is_warning(problem):
                click.echo(f"{host}: warning: {problem}")
            else:
                click.echo(f"{host}: {problem}")
                errors += 1
    if errors:
        click.echo(f"{errors} problem(s) found.")
        sys.exit(1)
    click.echo(f"{config_path}: configuration and certificates are fine.")


@main.command()
@click.argument("kind", type=click.Choice(["email", "sms"]))
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="The gateway's own TOML file (see the README).",
)
@click.option("--log-level", default="info", show_default=True)
def gateway(kind: str, config_path: Path, log_level: str) -> None:
    """Run a gateway shipped with Salon (an XEP-0114 component) until interrupted."""
    from salon.gateways import make_service, serve

    _setup_logging(log_level)
    asyncio.run(serve(make_service(kind, config_path)))
