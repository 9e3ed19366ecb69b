"""Memory per idle authenticated session, now the harness's ``idle`` scenario.

    python -m bench.idle --sessions 1000 [--tls] [--server salon|prosody|ejabberd]

is kept as a shortcut for

    python -m bench run --server salon --scenario idle --idle-sizes 1000

(with ``--tls`` the sessions use STARTTLS instead of plaintext SCRAM).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bench.scenarios import Plan, scenario_idle
from bench.servers import make_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--server", default="salon", choices=("salon", "prosody", "ejabberd"))
    parser.add_argument("--workdir", default="/tmp/salon-bench")
    args = parser.parse_args()
    plan = Plan.full()
    plan.idle_sizes = () if args.tls else (args.sessions,)
    plan.idle_tls_sizes = (args.sessions,) if args.tls else ()
    plan.presence_users = 0
    server = make_server(args.server, Path(args.workdir))
    server.ensure_population(plan.population())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(scenario_idle(server, plan))
    for fig in result.figures.values():
        print(f"{fig.label}: {fig.fmt.format(fig.value)}")
    for note in result.notes:
        print(note)


if __name__ == "__main__":
    sys.exit(main())
