"""``salon``: the operator's one tool (serve, init, adduser, passwd, deluser, check)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click

import salon
from salon.auth.credentials import make_credentials
from salon.certs import check_certificate, generate_self_signed, is_warning
from salon.config import ConfigError, Settings, default_config_text, load_settings
from salon.jid import JID, JIDError
from salon.storage import AccountExists, AccountNotFound, AccountStore, open_storage
from salon.storage.interfaces import Storage

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
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    help="Run this many worker processes sharing the listening ports (SO_REUSEPORT), each "
    "a cluster node; needs [cluster] redis and PostgreSQL storage.",
)
@click.option("--worker-index", type=int, default=None, hidden=True)
def serve(config_path: Path, workers: int | None, worker_index: int | None) -> None:
    """Run the server until interrupted."""
    settings = _load(config_path)
    setup_logging(settings)
    if workers is not None and workers > 1:
        if not settings.cluster.enabled:
            raise click.ClickException(
                "--workers needs cluster mode: set [cluster] redis = 'redis://...' and "
                "server.storage on PostgreSQL (each worker is a cluster node)"
            )
        sys.exit(_supervise(config_path, settings, workers))
    node_name = None
    if worker_index is not None:
        import socket

        from salon.net import listen

        listen.share_ports = True
        # stable names: a worker started again takes its place (and its stream) back
        base = settings.cluster.node or socket.gethostname()
        node_name = f"{base}-{worker_index}"
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(settings, config_path, node_name=node_name))


def _supervise(config_path: Path, settings: Settings, workers: int) -> int:
    """Start ``workers`` worker processes, pass signals on (TERM/INT stop them, HUP
    reloads them), start again a worker that dies, and return when all have stopped."""
    import subprocess

    command = [sys.executable, "-m", "salon", "serve", "-c", str(config_path)]
    procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(index: int) -> None:
        procs[index] = subprocess.Popen([*command, "--worker-index", str(index)])

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    pid_file = settings.resolve(settings.server.pid_file)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    for index in range(1, workers + 1):
        start(index)
    click.echo(f"supervising {workers} workers")
    try:
        while procs:
            time.sleep(0.5)
            for index, proc in list(procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                if stopping:
                    del procs[index]
                else:
                    click.echo(f"worker {index} exited with {code}; starting it again", err=True)
                    start(index)
    finally:
        pid_file.unlink(missing_ok=True)
    return 0


def _web_client_note(settings: Settings) -> None:
    """Say where the web chat's files are, or exactly how to fetch them."""
    from salon.net.chat_page import fetch_command

    folder = settings.resolve(settings.http.web_client_dir)
    if (folder / "converse.min.js").is_file():
        click.echo(f"web chat: Converse.js from {folder}")
    else:
        click.echo(
            f"web chat: Converse.js is not in {folder}; fetch it with: {fetch_command(folder)}"
        )


async def _serve(settings: Settings, config_path: Path, node_name: str | None = None) -> None:
    from salon.app import App

    server = App(settings, node_name=node_name)
    await server.start()
    pid_file = settings.resolve(settings.server.pid_file)
    if node_name is not None:  # a worker: the supervisor holds the pid file
        pid_file = pid_file.with_name(f"{pid_file.name}.{node_name}")
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
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

    async def reload() -> None:
        """SIGHUP: read the config again; new certificates and options apply to new
        connections, modules start, stop or restart with their new options, and no
        connection is dropped. A config with a mistake is refused: the old one keeps
        running."""
        from salon.core.hosts import ModuleError

        salon_log = logging.getLogger("salon")
        async with reload_lock:  # one reload at a time, in the order the signals came
            try:
                fresh = load_settings(config_path)
                await server.reload(fresh)
            except ConfigError as exc:
                salon_log.error("reload refused: %s", "; ".join(exc.problems))
                click.echo("reload refused")
                return
            except ModuleError as exc:
                salon_log.error("reload refused: %s", exc)
                click.echo("reload refused")
                return
            except Exception:
                salon_log.exception("reload failed")
                click.echo("reload failed")
                return
            setup_logging(fresh)
            click.echo("reloaded")

    reload_lock = asyncio.Lock()
    reloads: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = loop.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    for kind, addresses in server.addresses().items():
        for address, port in addresses:
            click.echo(f"listening: {kind} on {address}:{port}")
    _web_client_note(settings)
    await stop.wait()
    click.echo("stopping")
    await server.stop()
    pid_file.unlink(missing_ok=True)


def setup_logging(settings: Settings) -> None:
    """One line per record (``text``: key=value fields; ``json``), with the connection id
    when the record carries one, and a level per subsystem (``server.log_levels``)."""
    from salon.logs import configure

    configure(settings.server.log_level, settings.server.log_levels, settings.server.log_format)


def _with_accounts(settings: Settings, action: Callable[[AccountStore], Awaitable[T]]) -> T:
    """Open the storage, run ``action`` on its accounts and close it again."""
    return _with_storage(settings, lambda storage: action(storage.accounts))


def _with_storage(settings: Settings, action: Callable[[Storage], Awaitable[T]]) -> T:
    """Open the storage, run ``action`` on it and close it again."""

    async def run() -> T:
        storage = await open_storage(settings.storage_url(), base_dir=settings.data_path())
        try:
            return await action(storage)
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
@click.argument("target")
@click.option("--lifetime", type=float, help="Seconds the invitation stays valid "
              "(default: [modules.register] invite_lifetime).")  # fmt: skip
def invite(config_path: Path, target: str, lifetime: float | None) -> None:
    """Make a single-use registration invitation for DOMAIN, or for the one account
    USER@DOMAIN (XEP-0401/XEP-0445); prints its URI. The server accepts it when
    [modules.register] invite_only is on; a running server needs no reload."""
    from salon.core.clock import SystemClock
    from salon.modules.register import Invites, RegistrationOptions

    settings = _load(config_path)
    username: str | None = None
    if "@" in target:
        jid = _account_jid(settings, target)
        domain, username = jid.domain, jid.local
    else:
        domain = target.lower().rstrip(".")
        if domain not in settings.hosts:
            hosted = ", ".join(settings.hosts)
            raise click.BadParameter(f"{domain} is not hosted here (hosted: {hosted})")
    options = RegistrationOptions.model_validate(settings.modules.options_for("register"))
    if lifetime is not None and lifetime <= 0:
        raise click.BadParameter("--lifetime must be more than 0 seconds")

    async def make(storage: Storage) -> tuple[str, float] | None:
        if username is not None and await storage.accounts.get(domain, username) is not None:
            return None
        invites = Invites(
            storage.keyvalue("invites"), domain, SystemClock(), options.invite_lifetime
        )
        token, expires = await invites.create("salon invite", lifetime, username)
        return invites.uri(token, username), expires

    made = _with_storage(settings, make)
    if made is None:
        click.echo(f"{username}@{domain} already exists.", err=True)
        sys.exit(1)
    uri, expires = made
    when = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
    click.echo(uri)
    click.echo(f"valid until {when}, for one registration")
    if "register" not in settings.modules.enabled or not options.invite_only:
        click.echo(
            "note: registration with invitations needs the module 'register' enabled with "
            "[modules.register] invite_only = true",
            err=True,
        )


@main.command()
@config_option
def reload(config_path: Path) -> None:
    """Tell the running server to reload its config and certificates (SIGHUP)."""
    settings = _load(config_path)
    pid_file = settings.resolve(settings.server.pid_file)
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        click.echo(f"no running server: {pid_file} is missing or unreadable.", err=True)
        sys.exit(1)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        click.echo(f"no process {pid} (from {pid_file}); is the server running?", err=True)
        sys.exit(1)
    click.echo(f"asked server {pid} to reload")


@main.command()
@config_option
def about(config_path: Path) -> None:
    """Versions, modules and paths of this installation."""
    from importlib.metadata import PackageNotFoundError, version

    from salon.core.hosts import available_modules

    settings = _load(config_path)
    click.echo(f"Salon {salon.__version__}")
    click.echo(f"Python {sys.version.split()[0]} ({sys.executable})")
    for package in ("aiohttp", "sqlalchemy", "pydantic", "cryptography", "prometheus-client"):
        try:
            click.echo(f"  {package} {version(package)}")
        except PackageNotFoundError:
            click.echo(f"  {package} not installed")
    click.echo("Paths:")
    click.echo(f"  config:   {config_path.resolve()}")
    click.echo(f"  data:     {settings.data_path()}")
    click.echo(f"  storage:  {settings.storage_url()}")
    click.echo(f"  pid file: {settings.resolve(settings.server.pid_file)}")
    for host in settings.hosts:
        cert, key = settings.host_cert_paths(host)
        click.echo(f"  {host}: certificate {cert}, key {key}")
    click.echo(f"Modules enabled: {', '.join(settings.modules.enabled)}")
    click.echo(f"Modules available: {', '.join(available_modules())}")


@main.group()
def users() -> None:
    """List or count the accounts of the hosted domains."""


@users.command("list")
@config_option
@click.option("--host", "hosts", multiple=True, help="Only this domain (repeatable).")
def users_list(config_path: Path, hosts: tuple[str, ...]) -> None:
    """Print every account, one JID per line."""
    settings = _load(config_path)
    domains = list(hosts) or list(settings.hosts)

    async def names(accounts: AccountStore) -> list[str]:
        found: list[str] = []
        for domain in domains:
            found.extend(f"{name}@{domain}" for name in await accounts.list_usernames(domain))
        return found

    for jid in _with_accounts(settings, names):
        click.echo(jid)


@users.command("count")
@config_option
@click.option("--host", "hosts", multiple=True, help="Only this domain (repeatable).")
def users_count(config_path: Path, hosts: tuple[str, ...]) -> None:
    """Print the number of accounts per domain and in all."""
    settings = _load(config_path)
    domains = list(hosts) or list(settings.hosts)

    async def counts(accounts: AccountStore) -> list[int]:
        return [await accounts.count(domain) for domain in domains]

    numbers = _with_accounts(settings, counts)
    for domain, number in zip(domains, numbers, strict=True):
        click.echo(f"{domain}: {number}")
    click.echo(f"total: {sum(numbers)}")


@main.group()
def cert() -> None:
    """Certificates of the hosted domains."""


@cert.command("import")
@config_option
@click.argument("source", type=click.Path(path_type=Path, exists=True, file_okay=False))
def cert_import(config_path: Path, source: Path) -> None:
    """Copy the certificates of the hosted domains from SOURCE: an ACME client's live/
    folder (SOURCE/<domain>/fullchain.pem and privkey.pem) or <domain>.crt/.key files."""
    settings = _load(config_path)
    imported = 0
    for host in settings.hosts:
        candidates = [
            (source / host / "fullchain.pem", source / host / "privkey.pem"),
            (source / f"{host}.crt", source / f"{host}.key"),
            (source / host / f"{host}.crt", source / host / f"{host}.key"),
        ]
        found = next(((c, k) for c, k in candidates if c.is_file() and k.is_file()), None)
        if found is None:
            click.echo(f"{host}: no certificate in {source} (looked for {candidates[0][0]})")
            continue
        problems = [p for p in check_certificate(found[0], found[1], host) if not is_warning(p)]
        if problems:
            click.echo(f"{host}: not imported: {'; '.join(problems)}")
            continue
        cert_path, key_path = settings.host_cert_paths(host)
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        key_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], cert_path)
        key_path.touch(mode=0o600, exist_ok=True)
        key_path.chmod(0o600)
        shutil.copyfile(found[1], key_path)
        imported += 1
        click.echo(f"{host}: imported {found[0]} -> {cert_path}")
    if imported:
        click.echo("run 'salon reload' to use them without a restart")
    else:
        sys.exit(1)


@main.group(invoke_without_command=True)
@config_option
@click.pass_context
def check(ctx: click.Context, config_path: Path) -> None:
    """Validate the configuration, modules and certificates; explain each problem.
    Subcommands check DNS, certificates and federation of one domain."""
    if ctx.invoked_subcommand is not None:
        return
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
        cert_path, key = settings.host_cert_paths(host)
        for problem in check_certificate(cert_path, key, host):
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
    from salon.logs import configure

    configure(log_level, {}, "text")
    asyncio.run(serve(make_service(kind, config_path)))


def _verdicts(results: list[tuple[bool, str, str]]) -> None:
    """Print each step: OK or FAIL, what was found, and what to do when it failed."""
    failed = 0
    for ok, what, advice in results:
        click.echo(f"{'OK  ' if ok else 'FAIL'} {what}")
        if not ok:
            failed += 1
            if advice:
                click.echo(f"     -> {advice}")
    sys.exit(1 if failed else 0)


@check.command("dns")
@click.argument("domain")
@click.option(
    "--nameserver",
    help="Ask this DNS server (host or host:port, e.g. the zone's own) instead of the system's.",
)
def check_dns(domain: str, nameserver: str | None) -> None:
    """SRV and address records of DOMAIN (RFC 6120 §3.2, XEP-0368)."""
    from salon.checks import dns_checks

    _verdicts(dns_checks(domain, nameserver))


@check.command("certs")
@config_option
@click.argument("domain", required=False)
def check_certs(config_path: Path, domain: str | None) -> None:
    """Whether each hosted domain's certificate covers it (and its services)."""
    from salon.checks import cert_checks

    _verdicts(cert_checks(_load(config_path), domain))


@check.command("federation")
@click.argument("domain")
@click.option("--from", "local", default="localhost", show_default=True, help="Our domain.")
@click.option("--address", help="host:port to connect to instead of resolving DOMAIN.")
@click.option("--ca-file", type=click.Path(path_type=Path), help="Trust these CAs.")
def check_federation(domain: str, local: str, address: str | None, ca_file: Path | None) -> None:
    """Open a server-to-server stream to DOMAIN: TCP, STARTTLS, certificate, authentication."""
    from salon.checks import federation_checks

    _verdicts(asyncio.run(federation_checks(domain, local, address, ca_file)))
