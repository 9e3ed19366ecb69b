"""The servers under test: Salon, Prosody, ejabberd, and the bare byte forwarder.

Each one gets its own config and data directory under the work directory, listens on its own
loopback port, and is pinned to CPU 0 (``taskset -c 0``; ejabberd also runs one scheduler).
Accounts (``u0``..``uN``, password ``pw``) and the presence users' rosters (``p0``..``pM``, each
subscribed both ways to its ``roster_size`` ring neighbours) are created before the server is
measured, and kept in the work directory so that a second run reuses them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.procstat import rss_kib

HOST = "localhost"
MUC = f"conference.{HOST}"  # the chat service of every server (the groupchat scenario)
PASSWORD = "pw"
ITERATIONS = 4096  # SCRAM iteration count stored for every account on every server
# Every account gets its own random salt (as a real server's accounts do); the generator
# caches SaltedPassword per salt, as clients do, after one warm-up login per account.
SALT_SCHEME = "random-per-account"
SERVER_CPU = "0"
GENERATOR_CPU = 1


def user(i: int) -> str:
    return f"u{i}"


def presence_user(i: int) -> str:
    return f"p{i}"


def ring_contacts(i: int, users: int, size: int) -> list[int]:
    """The ``size`` ring neighbours of presence user ``i`` (symmetric: j in c(i) iff i in c(j))."""
    half = min(size // 2, (users - 1) // 2)
    out = []
    for d in range(1, half + 1):
        out.append((i + d) % users)
        out.append((i - d) % users)
    return sorted(set(out) - {i})


def random_salt() -> bytes:
    """16 random bytes, printable (Prosody's files keep the salt as a string)."""
    return os.urandom(12).hex().encode()


def scram_sha1_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha1").digest()
    server_key = hmac.new(salted, b"Server Key", "sha1").digest()
    return hashlib.sha1(client_key).digest(), server_key


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} at start:\n{tail}")
        if port_open(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """One self-signed ECDSA P-256 certificate for ``localhost`` that all servers use."""
    cert, key, both = directory / "bench.crt", directory / "bench.key", directory / "bench.pem"
    if not both.exists():
        from salon.certs import generate_self_signed

        directory.mkdir(parents=True, exist_ok=True)
        generate_self_signed([HOST], cert, key)
        both.write_text(cert.read_text() + key.read_text())
        for path in (cert, key, both):
            path.chmod(0o644)
    return cert, key, both


@dataclass
class Population:
    users: int  # u0..u{users-1}
    presence_users: int  # p0..p{presence_users-1}
    roster_size: int


RUNNING: dict[int, subprocess.Popen[bytes]] = {}


def stop_all() -> None:
    """Terminate every server process this harness started and has not stopped yet."""
    for proc in list(RUNNING.values()):
        if proc.poll() is None:
            proc.terminate()
    for pid, proc in list(RUNNING.items()):
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        RUNNING.pop(pid, None)


@dataclass
class ServerUnderTest:
    """Base: subclasses write their config, create accounts and start their process."""

    workdir: Path
    name: str = ""
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return self.workdir / self.name

    @property
    def pid(self) -> int:
        """The process whose CPU time and RSS are measured."""
        assert self.proc is not None
        return self.proc.pid

    def version(self) -> str:
        return "?"

    # -- accounts ---------------------------------------------------------------------------

    def _state(self) -> dict[str, int]:
        path = self.dir / "population.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _save_state(self, state: dict[str, int]) -> None:
        (self.dir / "population.json").write_text(json.dumps(state))

    def ensure_population(self, pop: Population) -> None:
        """Create whatever accounts and rosters are missing (remembered in population.json)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        state = self._state()
        if state and state.get("salts") != SALT_SCHEME:
            raise RuntimeError(
                f"{self.name}: the work directory's accounts share one salt; run with --fresh "
                "to rebuild them with a random salt per account"
            )
        have_users = state.get("users", 0)
        have_p = state.get("presence_users", 0)
        roster = state.get("roster_size", 0)
        need_p = pop.presence_users > 0 and (
            have_p != pop.presence_users or roster != pop.roster_size
        )
        if pop.users <= have_users and not need_p:
            return
        started = time.monotonic()
        new_users = range(have_users, pop.users) if pop.users > have_users else range(0)
        if need_p and have_p:
            raise RuntimeError(
                f"{self.name}: the work directory has {have_p} presence users with rosters of "
                f"{roster}; run with --fresh to rebuild them as {pop.presence_users}/"
                f"{pop.roster_size}"
            )
        self.create_accounts(
            [user(i) for i in new_users],
            pop if need_p else Population(0, 0, 0),
        )
        state = {
            "salts": SALT_SCHEME,
            "users": max(pop.users, have_users),
            "presence_users": pop.presence_users if need_p else have_p,
            "roster_size": pop.roster_size if need_p else roster,
        }
        self._save_state(state)
        print(
            f"  {self.name}: created {len(new_users)} accounts"
            + (f" and {pop.presence_users} rosters of {pop.roster_size}" if need_p else "")
            + f" in {time.monotonic() - started:.1f}s",
            flush=True,
        )

    def create_accounts(self, users: list[str], pop: Population) -> None:
        raise NotImplementedError

    # -- process ----------------------------------------------------------------------------

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is None:
            return
        RUNNING.pop(self.proc.pid, None)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def log_tail(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


# -----------------------------------------------------------------------------------------
# Salon


def salon_source() -> Path:
    import salon

    return Path(salon.__file__).resolve().parent


class Salon(ServerUnderTest):
    def __init__(self, workdir: Path, port: int = 15222) -> None:
        super().__init__(workdir, "salon", port)
        self.source_stamps: list[str] = []
        self.notes = [
            "Salon: no rate limits exist on c2s (the register module's limiter only counts "
            "in-band registrations, which the benchmark does not do); default module set; "
            "SQLite storage; idle_timeout 3600 s; HTTP and s2s listeners off; MUC at "
            f"{MUC} with its per-occupant message rate limit raised out of reach and 5,000 "
            "occupants allowed per room"
        ]

    def version(self) -> str:
        import salon

        newest = max(p.stat().st_mtime for p in salon_source().rglob("*.py"))
        return (
            f"Salon {getattr(salon, '__version__', '0.1.0')} (Python {sys.version.split()[0]}; "
            f"newest source file {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(newest))})"
        )

    @property
    def config(self) -> Path:
        return self.dir / "salon.toml"

    def write_config(self) -> None:
        cert, key, _ = make_certificate(self.workdir / "certs")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"""
[server]
data_dir = "{self.dir}"
log_level = "warning"

[c2s]
interfaces = ["127.0.0.1"]
port = {self.port}
direct_tls_enabled = false
require_encryption = false
idle_timeout = 3600.0
handshake_timeout = 600.0

[http]
enabled = false

[s2s]
enabled = false

[hosts."{HOST}"]
certificate = "{cert}"
key = "{key}"

[modules.muc]
max_users = 5000
max_rooms_per_user = 1000
message_rate = 1000000.0
message_burst = 1000000
"""
        )

    def create_accounts(self, users: list[str], pop: Population) -> None:
        self.write_config()
        asyncio.run(self._create(users, pop))

    async def _create(self, users: list[str], pop: Population) -> None:
        from salon.auth.credentials import make_credentials
        from salon.config import load_settings
        from salon.storage import open_storage
        from salon.storage.interfaces import RosterItem

        settings = load_settings(self.config)
        storage = await open_storage(settings.storage_url(), base_dir=settings.data_path())
        names = users + [presence_user(i) for i in range(pop.presence_users)]
        try:
            for name in names:  # make_credentials draws a random salt per account and hash
                creds = make_credentials(PASSWORD, ITERATIONS)
                await storage.accounts.create(HOST, name, creds)
            for i in range(pop.presence_users):
                for j in ring_contacts(i, pop.presence_users, pop.roster_size):
                    item = RosterItem(jid=f"{presence_user(j)}@{HOST}", subscription="both")
                    await storage.roster.put_item(HOST, presence_user(i), item)
        finally:
            await storage.close()

    def start(self) -> None:
        self.write_config()
        newest = max(p.stat().st_mtime for p in Path(salon_source()).rglob("*.py"))
        stamp = time.strftime("%H:%M:%S", time.localtime(newest))
        if stamp not in self.source_stamps:
            self.source_stamps.append(stamp)
            if len(self.source_stamps) > 1:
                self.notes.append(
                    f"Salon's source changed during the run (newest file at each start: "
                    f"{', '.join(self.source_stamps)}): other engineers edit the tree"
                )
        log = self.dir / "server.log"
        cmd = ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "salon", "serve"]
        self.proc = subprocess.Popen(
            [*cmd, "--config", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        RUNNING[self.proc.pid] = self.proc
        wait_port(self.port, self.proc, 60, log)


# -----------------------------------------------------------------------------------------
# Prosody


def lua(text: str | Path) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Prosody(ServerUnderTest):
    MODULES = (
        "roster",
        "saslauth",
        "tls",
        "disco",
        "ping",
        "version",
        "time",
        "lastactivity",
        "vcard_legacy",
        "private",
        "carbons",
        "blocklist",
        "offline",
        "server_contact_info",
        "pep",
    )

    def __init__(self, workdir: Path, port: int = 25222) -> None:
        super().__init__(workdir, "prosody", port)
        self.notes = [
            "Prosody: mod_limits not loaded and `limits = {}` (no c2s rate limits); "
            "storage internal, authentication internal_hashed (SCRAM-SHA-1, 4096 iterations "
            "written into the account files); c2s_require_encryption = false; "
            "network_backend epoll (the default); MUC: mod_muc as Component "
            f"{MUC} (no occupant limit or rate limit by default)"
        ]

    def version(self) -> str:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "prosody"], capture_output=True, text=True
        )
        return f"Prosody {out.stdout.strip()} (Debian)"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def config(self) -> Path:
        return self.dir / "prosody.cfg.lua"

    def write_config(self) -> None:
        cert, key, _ = make_certificate(self.workdir / "certs")
        self.data.mkdir(parents=True, exist_ok=True)
        modules = "; ".join(lua(m) for m in self.MODULES)
        self.config.write_text(
            f"""
run_as_root = true
pidfile = {lua(self.dir / "prosody.pid")}
data_path = {lua(self.data)}
log = {{ {{ levels = {{ min = "error" }}, to = "file",
          filename = {lua(self.dir / "server.log")} }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
s2s_direct_tls_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ {modules} }}
modules_disabled = {{ "admin_shell"; "posix"; "s2s"; "limits" }}
limits = {{ }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = false
default_iteration_count = {ITERATIONS}
certificates = {lua(self.dir / "no-certs-dir")}
ssl = {{ certificate = {lua(cert)}; key = {lua(key)}; }}
VirtualHost "{HOST}"
Component "{MUC}" "muc"
    restrict_room_creation = false
"""
        )

    def create_accounts(self, users: list[str], pop: Population) -> None:
        """Writes Prosody's account and roster files directly (prosodyctl takes ~1 s a user)."""
        self.write_config()
        accounts = self.data / HOST / "accounts"
        accounts.mkdir(parents=True, exist_ok=True)
        names = users + [presence_user(i) for i in range(pop.presence_users)]
        for name in names:
            salt = random_salt()
            stored, server = scram_sha1_keys(PASSWORD, salt, ITERATIONS)
            body = (
                "return {\n"
                f'\t["iteration_count"] = {ITERATIONS};\n'
                f'\t["stored_key"] = "{stored.hex()}";\n'
                f'\t["server_key"] = "{server.hex()}";\n'
                f'\t["salt"] = "{salt.decode()}";\n'
                "};\n"
            )
            (accounts / f"{name}.dat").write_text(body)
        if pop.presence_users:
            rosters = self.data / HOST / "roster"
            rosters.mkdir(parents=True, exist_ok=True)
            for i in range(pop.presence_users):
                lines = ["return {", '\t[false] = { ["version"] = 1; ["pending"] = { }; };']
                for j in ring_contacts(i, pop.presence_users, pop.roster_size):
                    jid = f"{presence_user(j)}@{HOST}"
                    lines.append(
                        f'\t["{jid}"] = {{ ["subscription"] = "both"; ["groups"] = {{ }}; }};'
                    )
                lines.append("};")
                (rosters / f"{presence_user(i)}.dat").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.write_config()
        log = self.dir / "server.log"
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, "prosody", "--config", str(self.config), "-F"],
            stdin=subprocess.DEVNULL,
            stdout=(self.dir / "stdout.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        RUNNING[self.proc.pid] = self.proc
        wait_port(self.port, self.proc, 30, log)


# -----------------------------------------------------------------------------------------
# ejabberd

EJABBERD_LIBS = "/usr/lib/x86_64-linux-gnu"
COOKIE = "salonbench"


class Ejabberd(ServerUnderTest):
    @property
    def NODE(self) -> str:
        """One Erlang node name per port: two runs at once (--port-offset) must not collide;
        the default port keeps the first name (Mnesia's files belong to the node's name)."""
        return "salonbench@localhost" if self.port == 35222 else f"salonbench{self.port}@localhost"

    def __init__(self, workdir: Path, port: int = 35222) -> None:
        super().__init__(workdir, "ejabberd", port)
        self.notes = [
            "ejabberd: one scheduler (`+S 1:1 +SDcpu 1:1`) besides taskset; listener "
            "`shaper: none`, `c2s_shaper: none`, no `shaper:` definitions, max_fsm_queue off, "
            "mnesia storage, auth_password_format scram (4096 iterations), starttls optional, "
            "listen backlog 128 like Prosody's default (Erlang's default of 5 drops SYNs as soon "
            "as ten clients connect at once; Salon uses asyncio's default of 100); mod_muc at "
            f"{MUC} with max_users (also the rooms' default) and max_users_presence 5,000 "
            "and min_message_interval 0"
        ]

    def version(self) -> str:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "ejabberd"], capture_output=True, text=True
        )
        otp = subprocess.run(
            [
                "erl",
                "-noshell",
                "-eval",
                'io:format("~s",[erlang:system_info(otp_release)]),halt().',
            ],
            capture_output=True,
            text=True,
        )
        return f"ejabberd {out.stdout.strip()} (Debian, OTP {otp.stdout.strip()})"

    @property
    def config(self) -> Path:
        return self.dir / "ejabberd.yml"

    def write_config(self) -> None:
        _, _, pem = make_certificate(self.workdir / "certs")
        (self.dir / "spool").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"""
hosts: ["{HOST}"]
loglevel: error
log_rotate_count: 0
certfiles: ["{pem}"]
define_macro: {{}}
listen:
  - port: {self.port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    backlog: 128
    access: c2s
    starttls: true
    starttls_required: false
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 5000
  c2s_shaper: none
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
disable_sasl_mechanisms: []
max_fsm_queue: 1000000
modules:
  mod_admin_extra: {{}}
  mod_blocking: {{}}
  mod_caps: {{}}
  mod_carboncopy: {{}}
  mod_disco: {{}}
  mod_last: {{}}
  mod_offline: {{}}
  mod_ping: {{}}
  mod_privacy: {{}}
  mod_private: {{}}
  mod_pubsub:
    plugins: ["flat", "pep"]
  mod_roster: {{}}
  mod_time: {{}}
  mod_vcard: {{}}
  mod_version: {{}}
  mod_muc:
    host: "{MUC}"
    access_create: all
    max_users: 5000
    max_users_presence: 5000
    max_user_conferences: 1000
    min_message_interval: 0
    min_presence_interval: 0
    default_room_options:
      max_users: 5000
"""
        )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            EJABBERD_CONFIG_PATH=str(self.config),
            EJABBERD_LOG_PATH=str(self.dir / "server.log"),
            ERL_LIBS=EJABBERD_LIBS,
            ERL_MAX_PORTS="32000",
            ERL_MAX_ETS_TABLES="1400",
            ERL_CRASH_DUMP=str(self.dir / "erl_crash.dump"),
            ERL_CRASH_DUMP_BYTES="0",
            HOME=str(self.dir),
        )
        return env

    def start(self) -> None:
        self.write_config()
        log = self.dir / "server.log"
        cmd = [
            "taskset", "-c", SERVER_CPU,
            "erl", "-sname", self.NODE, "-setcookie", COOKIE,
            "-noinput", "-noshell",
            "+K", "true", "+P", "250000", "+Q", "32000",
            "+S", "1:1", "+SDcpu", "1:1", "+SDio", "1",
            "-mnesia", "dir", f'"{self.dir / "spool"}"',
            "-s", "ejabberd",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            env=self._env(),
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=(self.dir / "stdout.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        RUNNING[self.proc.pid] = self.proc
        wait_port(self.port, self.proc, 90, log)

    def rpc_eval(self, expr: str, timeout: float = 1800) -> str:
        """Evaluate Erlang ``expr`` (a fun body returning a term) on the running node."""
        script = (
            f"R = rpc:call('{self.NODE}', erlang, apply, [fun() -> {expr} end, []], infinity),"
            ' io:format("~p~n", [R]), halt().'
        )
        out = subprocess.run(
            ["erl", "-sname", f"ctl{os.getpid()}@localhost", "-setcookie", COOKIE, "-noshell",
             "-eval", script],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"erl rpc failed: {out.stdout}{out.stderr}")
        return out.stdout.strip()

    def create_accounts(self, users: list[str], pop: Population) -> None:
        self.start()
        try:
            host = f'<<"{HOST}">>'
            if users:
                first, last = int(users[0][1:]), int(users[-1][1:])
                result = self.rpc_eval(
                    "length([ok || I <- lists:seq("
                    f"{first}, {last}), ejabberd_auth:try_register(list_to_binary("
                    f'"u" ++ integer_to_list(I)), {host}, <<"{PASSWORD}">>)'
                    " /= {error, not_allowed}])"
                )
                if result != str(len(users)):
                    raise RuntimeError(f"ejabberd registered {result} of {len(users)} users")
            if pop.presence_users:
                n = pop.presence_users
                result = self.rpc_eval(
                    "length([ok || I <- lists:seq(0, "
                    f"{n - 1}), ejabberd_auth:try_register(list_to_binary("
                    f'"p" ++ integer_to_list(I)), {host}, <<"{PASSWORD}">>)'
                    " /= {error, not_allowed}])"
                )
                if result != str(n):
                    raise RuntimeError(f"ejabberd registered {result} of {n} presence users")
                half = min(pop.roster_size // 2, (n - 1) // 2)
                # the same ring as ring_contacts(), built on the node: a list of 50k pairs
                # is too long for a command line
                result = self.rpc_eval(
                    f'N = {n}, H = {half}, P = fun(X) -> list_to_binary("p" ++'
                    " integer_to_list(X)) end,"
                    " Pairs = [{I, J} || I <- lists:seq(0, N - 1), J <- lists:usort("
                    "[(I + D) rem N || D <- lists:seq(1, H)] ++"
                    " [(I - D + N) rem N || D <- lists:seq(1, H)]) -- [I]],"
                    " length([ok || {I, J} <- Pairs,"
                    f" mod_admin_extra:add_rosteritem(P(I), {host}, P(J), {host},"
                    ' <<"">>, <<"bench">>, <<"both">>) == ok])'
                )
                expected = sum(len(ring_contacts(i, n, pop.roster_size)) for i in range(n))
                if result != str(expected):
                    raise RuntimeError(f"ejabberd added {result} of {expected} roster items")
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.rpc_eval("init:stop()", timeout=30)
                self.proc.wait(30)
            except Exception:
                pass
        super().stop()


# -----------------------------------------------------------------------------------------
# The byte forwarder (the "limit" scenario's server)


class Forwarder(ServerUnderTest):
    def __init__(self, workdir: Path, port: int = 45222) -> None:
        super().__init__(workdir, "forwarder", port)
        self.notes = [
            "limit: bench/forwarder.py, uvloop, parses nothing: each connection's bytes go to "
            "one fixed partner connection"
        ]

    def version(self) -> str:
        import uvloop

        return f"uvloop {uvloop.__version__} byte forwarder (Python {sys.version.split()[0]})"

    def create_accounts(self, users: list[str], pop: Population) -> None:
        pass

    def ensure_population(self, pop: Population) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = self.dir / "server.log"
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "bench.forwarder",
             "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        RUNNING[self.proc.pid] = self.proc
        wait_port(self.port, self.proc, 30, log)


SERVERS = {"salon": Salon, "prosody": Prosody, "ejabberd": Ejabberd}


def make_server(name: str, workdir: Path) -> ServerUnderTest:
    if name == "forwarder":
        return Forwarder(workdir)
    return SERVERS[name](workdir)


def installed(name: str) -> bool:
    if name in ("salon", "forwarder"):
        return True
    return shutil.which({"prosody": "prosody", "ejabberd": "erl"}[name]) is not None and (
        name != "ejabberd"
        or Path(EJABBERD_LIBS, "ejabberd-23.01").exists()
        or any(Path(EJABBERD_LIBS).glob("ejabberd-*"))
    )
