"""Entry point: ``python -m bench setup`` and ``python -m bench run``.

    python -m bench setup
    python -m bench run --server all --scenario all            # the full comparison
    python -m bench run --server salon --scenario messages --quick

``run`` writes ``bench/results/<timestamp>.md`` (the table, ratios, targets, notes and Salon's
profile) and ``<timestamp>.json`` (every step), and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from bench import report
from bench.scenarios import SCENARIOS, Plan, Result, pinned_to_generator_cpu
from bench.servers import Forwarder, installed, make_server, stop_all

ALL_SERVERS = ("salon", "prosody", "ejabberd")
ALL_SCENARIOS = ("login", "idle", "messages", "presence", "storm", "groupchat", "pep", "limit")
# Run only when named: the soak takes ten minutes per server.
EXTRA_SCENARIOS = ("soak",)
RESULTS = Path(__file__).resolve().parent / "results"


def _split(value: str, allowed: tuple[str, ...], extra: tuple[str, ...] = ()) -> list[str]:
    names = list(allowed) if value == "all" else [v.strip() for v in value.split(",")]
    for name in names:
        if name not in allowed + extra:
            raise SystemExit(f"unknown name {name!r}: choose from {', '.join(allowed)} or all")
    return names


def stop_system_services() -> None:
    """The Debian packages may have started their own instances: stop them."""
    if shutil.which("service") and Path("/etc/init.d/prosody").exists():
        status = subprocess.run(["service", "prosody", "status"], capture_output=True)
        if status.returncode == 0:
            subprocess.run(["service", "prosody", "stop"], capture_output=True)
    if shutil.which("ejabberdctl"):
        status = subprocess.run(["ejabberdctl", "status"], capture_output=True, timeout=60)
        if status.returncode == 0:
            subprocess.run(["ejabberdctl", "stop"], capture_output=True, timeout=60)


def setup() -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "prosody", "ejabberd"], check=True, env=env)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    stop_system_services()
    print("prosody, ejabberd and py-spy are installed; system instances are stopped")


def _fd_cap(plan: Plan, notes: list[str]) -> None:
    """Scale idle sizes to what the open-file limit allows (each session is one fd on each
    side), saying so in the report."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    except (ValueError, OSError):
        pass
    cap = (soft - 800) // 1000 * 1000
    sizes = tuple(min(n, cap) for n in plan.idle_sizes)
    if sizes != plan.idle_sizes:
        notes.append(
            f"idle: the open-file limit here is {soft} (hard limit, which this root cannot "
            f"raise: no CAP_SYS_RESOURCE), so sessions are capped at {cap} instead of "
            f"{max(plan.idle_sizes)}"
        )
        plan.idle_sizes = tuple(dict.fromkeys(sizes))
    plan.idle_tls_sizes = tuple(dict.fromkeys(min(n, cap) for n in plan.idle_tls_sizes))


def run(args: argparse.Namespace) -> int:
    servers = _split(args.server, ALL_SERVERS)
    scenarios = _split(args.scenario, ALL_SCENARIOS, EXTRA_SCENARIOS)
    plan = Plan.quick() if args.quick else Plan.full()
    plan.native_profile = args.native_profile
    if args.profile_seconds is not None:
        plan.profile_seconds = args.profile_seconds
    if args.idle_sizes:
        plan.idle_sizes = tuple(int(x) for x in args.idle_sizes.split(","))
    if args.idle_tls_sizes is not None:
        plan.idle_tls_sizes = tuple(int(x) for x in args.idle_tls_sizes.split(",") if x)
    if args.soak_sessions is not None:
        plan.soak_sessions = args.soak_sessions
    if args.soak_rates:
        msgs, _, presence = args.soak_rates.partition(",")
        plan.soak_msg_rate, plan.soak_presence_rate = float(msgs), float(presence or 0)
    if args.soak_minutes is not None:
        plan.soak_seconds = args.soak_minutes * 60
        plan.soak_warmup = plan.soak_seconds / 5
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    plan.profile_dir = None if args.no_profile else RESULTS / f"{stamp}-profile"
    workdir = Path(args.workdir or ("/tmp/salon-bench-quick" if args.quick else "/tmp/salon-bench"))
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    general: list[str] = []
    _fd_cap(plan, general)
    stop_system_services()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        general.append("uvloop missing: the generator ran on asyncio's default loop")

    results: dict[str, dict[str, Result]] = {}
    versions: dict[str, str] = {}
    setup_notes: dict[str, list[str]] = {"general": general}
    general.append(
        "Load generator: one asyncio+uvloop process on CPU 1, raw protocols and precomputed "
        "bytes, counting by byte search; SCRAM SaltedPassword cached per salt as clients do; "
        "it measures its own CPU and flags steps where it was above 90%"
    )

    def interrupted(signum: int, _frame: object) -> None:
        stop_all()
        print(f"stopped by signal {signum}; servers stopped", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    started = time.monotonic()
    todo = [s for s in scenarios if s != "limit"]
    rounds: dict[str, dict[str, list[Result]]] = {}
    with pinned_to_generator_cpu():
        ready = []
        for name in servers if todo else ():
            if not installed(name):
                general.append(f"{name}: not installed, skipped (`python -m bench setup`)")
                continue
            server = make_server(name, workdir)
            server.port += args.port_offset
            versions[name] = server.version()
            setup_notes[name] = server.notes
            print(f"== {versions[name]}", flush=True)
            try:
                server.ensure_population(plan.population())
            except Exception as exc:
                traceback.print_exc()
                server.stop()
                general.append(f"{name}: could not create accounts: {str(exc)[:300]}")
                continue
            ready.append(server)
        # interleaved: each scenario runs on every server in turn, and again each round, so
        # that a noisy minute on this shared machine hits all servers alike
        for k in range(args.rounds):
            for scenario in todo:
                for server in ready:
                    print(f"  round {k + 1}/{args.rounds} {server.name}: {scenario}", flush=True)
                    res = _one(server, scenario, plan)
                    rounds.setdefault(server.name, {}).setdefault(scenario, []).append(res)
        if "limit" in scenarios:
            forwarder = Forwarder(workdir)
            versions["forwarder"] = forwarder.version()
            setup_notes["forwarder"] = forwarder.notes
            print(f"== {versions['forwarder']}", flush=True)
            forwarder.ensure_population(plan.population())
            rounds.setdefault("forwarder", {})["limit"] = [_one(forwarder, "limit", plan)]
    results = {
        server: {sc: report.combine(runs) for sc, runs in by.items()}
        for server, by in rounds.items()
    }
    elapsed = time.monotonic() - started
    text = report.render(
        results, servers, versions, setup_notes, _plan_text(plan, args.quick),
        stamp, elapsed,
    )  # fmt: skip
    out = Path(args.out) if args.out else RESULTS / f"{stamp}.md"
    out.write_text(text)
    raw = {
        server: {sc: {"figures": {k: asdict(f) for k, f in r.figures.items()}, "notes": r.notes,
                      "details": r.details} for sc, r in by.items()}
        for server, by in results.items()
    }  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    print(text)
    print(f"report: {out}")
    return 0


def _one(server, scenario: str, plan: Plan) -> Result:  # type: ignore[no-untyped-def]
    try:
        return asyncio.run(SCENARIOS[scenario](server, plan))
    except Exception as exc:
        traceback.print_exc()
        server.stop()
        res = Result()
        res.notes.append(f"{scenario} FAILED: {type(exc).__name__}: {str(exc)[:300]}")
        tail = server.log_tail().strip().splitlines()[-5:]
        if tail:
            res.notes.append("server log: " + " / ".join(tail))
        return res


def _plan_text(plan: Plan, quick: bool) -> str:
    return (
        f"{'quick' if quick else 'full'}: login {plan.login_concurrency} clients x "
        f"{plan.login_seconds:g}s; idle {', '.join(map(str, plan.idle_sizes))} (+ STARTTLS "
        f"{', '.join(map(str, plan.idle_tls_sizes))}); messages {plan.msg_users} users, "
        f"{plan.step_seconds:g}s steps from {plan.start_rate:,.0f}/s, x{plan.rate_factor:g}; "
        f"presence {plan.presence_users} users x {plan.roster_size} contacts, "
        f"{plan.presence_rounds} round(s); storm {plan.presence_users} users logging in at "
        f"once while {plan.storm_chatters} send {plan.storm_msg_rate:g} messages/s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="apt-get install prosody ejabberd; pip install py-spy")
    r = sub.add_parser("run", help="run scenarios against servers and write a report")
    r.add_argument("--server", default="all", help="salon|prosody|ejabberd|all, or a,b")
    r.add_argument(
        "--scenario",
        default="all",
        help="login|idle|messages|presence|storm|groupchat|pep|limit|all, or a,b; soak by name",
    )
    r.add_argument(
        "--rounds", type=int, default=1,
        help="repeat every scenario on every server, interleaved; figures are the medians",
    )  # fmt: skip
    r.add_argument("--quick", action="store_true", help="small sizes and short steps (smoke run)")
    r.add_argument("--workdir", help="configs, data and accounts (kept for the next run)")
    r.add_argument("--fresh", action="store_true", help="delete the work directory first")
    r.add_argument("--out", help="report path (default bench/results/<timestamp>.md)")
    r.add_argument("--no-profile", action="store_true", help="skip py-spy on Salon")
    r.add_argument("--idle-sizes", help="comma-separated session counts for idle")
    r.add_argument(
        "--port-offset", type=int, default=0, help="added to every server's port (two runs at once)"
    )
    r.add_argument("--idle-tls-sizes", help="the same over STARTTLS ('' for none)")
    r.add_argument(
        "--profile-seconds", type=float, help="py-spy time on Salon per profiled scenario"
    )
    r.add_argument(
        "--native-profile",
        action="store_true",
        help="py-spy --native (C frames: GC, syscalls); pauses Salon per sample",
    )
    r.add_argument("--soak-sessions", type=int, help="sessions in the soak (default 10,000)")
    r.add_argument(
        "--soak-minutes", type=float, help="length of the soak (default 10; warm-up a fifth)"
    )
    r.add_argument(
        "--soak-rates", help="messages/s,presence/s offered during the soak (default 500,200)"
    )
    args = parser.parse_args(argv)
    if args.command == "setup":
        setup()
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
