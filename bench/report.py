"""The markdown report: one table with every figure for every server, and the ratios."""

from __future__ import annotations

import math
import os
import platform
from collections import Counter
from pathlib import Path

from bench.scenarios import Figure, Result

COLUMNS = ("salon", "prosody", "ejabberd")
DASH = "\u2013"  # an en dash: "not measured" in a table cell
TIMES = "\u00d7"
TITLES = {"salon": "Salon", "prosody": "Prosody", "ejabberd": "ejabberd", "forwarder": "limit"}


def _fmt(fig: Figure | None) -> str:
    if fig is None or fig.value is None or (isinstance(fig.value, float) and math.isnan(fig.value)):
        return DASH
    return fig.fmt.format(fig.value)


def _ratio(a: Figure | None, b: Figure | None) -> str:
    if a is None or b is None or not b.value or math.isnan(a.value) or math.isnan(b.value):
        return DASH
    return f"{a.value / b.value:.2f}{TIMES}"


def combine(runs: list[Result]) -> Result:
    """One result from the rounds of a scenario: each figure is the median over the rounds
    (every round's value is kept in ``details["rounds"]``)."""
    if len(runs) == 1:
        return runs[0]
    out = Result(details=dict(runs[-1].details))
    keys = list(dict.fromkeys(k for r in runs for k in r.figures))
    per_round: dict[str, list[float]] = {}
    for key in keys:
        figs = [r.figures[key] for r in runs if key in r.figures]
        values = sorted(f.value for f in figs)
        mid = len(values) // 2
        median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
        first = figs[0]
        out.figures[key] = Figure(first.label, median, first.higher_is_better, first.fmt)
        per_round[key] = [f.value for f in figs]
    out.details["rounds"] = per_round
    for k, r in enumerate(runs, 1):
        out.notes += [f"round {k}: {n}" for n in r.notes]
    return out


def rounds_section(results: dict[str, dict[str, Result]]) -> list[str]:
    """Salon's figures and its ratio to each other server, round by round."""
    salon = results.get("salon", {})
    lines: list[str] = []
    for scenario, res in salon.items():
        per_round = res.details.get("rounds")
        if not isinstance(per_round, dict) or not per_round:
            continue  # one round only (or a scenario's own list of measured rounds)
        others = [s for s in ("prosody", "ejabberd") if scenario in results.get(s, {})]
        for key, values in per_round.items():
            label = res.figures[key].label
            fmt = res.figures[key].fmt
            cells = [" / ".join(fmt.format(v) for v in values)]
            for other in others:
                theirs = results[other][scenario].details.get("rounds", {}).get(key, [])
                cells.append(
                    " / ".join(
                        f"{a / b:.2f}{TIMES}" if b else DASH
                        for a, b in zip(values, theirs, strict=False)
                    )
                )
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if lines and not lines[0].startswith("| Figure"):
            head = ["Figure", "Salon, each round", *(f"Salon/{TITLES[o]}" for o in others)]
            lines[:0] = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines


def merged(results: dict[str, dict[str, Result]]) -> dict[str, dict[str, Figure]]:
    """server -> key -> figure, over all scenarios."""
    out: dict[str, dict[str, Figure]] = {}
    for server, by_scenario in results.items():
        for res in by_scenario.values():
            out.setdefault(server, {}).update(res.figures)
    return out


def table(figs: dict[str, dict[str, Figure]], servers: list[str]) -> list[str]:
    columns = [s for s in COLUMNS if s in servers]
    has_limit = "forwarder" in figs
    keys: list[str] = []
    for server in [*columns, "forwarder"]:
        for key in figs.get(server, {}):
            if key not in keys:
                keys.append(key)
    head = ["Figure", *(TITLES[c] for c in columns)]
    ratios = [c for c in ("prosody", "ejabberd") if "salon" in columns and c in columns]
    head += [f"Salon/{TITLES[c]}" for c in ratios]
    if has_limit:
        head += ["limit forwarder", "Salon/limit"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys:
        sample = next(figs[s][key] for s in [*columns, "forwarder"] if key in figs.get(s, {}))
        arrow = "↑" if sample.higher_is_better else "↓"
        row = [f"{sample.label} {arrow}"]
        row += [_fmt(figs.get(c, {}).get(key)) for c in columns]
        salon = figs.get("salon", {}).get(key)
        row += [_ratio(salon, figs.get(c, {}).get(key)) for c in ratios]
        if has_limit:
            lim = figs["forwarder"].get(key)
            row += [_fmt(lim), _ratio(salon, lim) if lim else DASH]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def targets(figs: dict[str, dict[str, Figure]]) -> list[str]:
    s, p, e, f = (figs.get(k, {}) for k in ("salon", "prosody", "ejabberd", "forwarder"))
    out: list[str] = []

    def check(text: str, a: Figure | None, b: Figure | None, factor: float, higher: bool) -> None:
        if a is None or b is None or math.isnan(a.value) or math.isnan(b.value):
            out.append(f"| {text} | {DASH} | not measured |")
            return
        goal = b.value * factor
        ok = a.value >= goal if higher else a.value <= goal
        out.append(
            f"| {text} | {a.fmt.format(a.value)} vs {b.fmt.format(goal)} | "
            f"{'met' if ok else 'NOT met'} |"
        )

    check("messages/s per core ≥ ejabberd's", s.get("messages.per_core"),
          e.get("messages.per_core"), 1.0, True)  # fmt: skip
    for key in sorted(k for k in s if k.startswith("idle.") and k.endswith(".rss")):
        label = s[key].label.split(":")[0]
        check(
            f"{label}: RSS per session ≤ 0.75{TIMES} Prosody's", s.get(key), p.get(key), 0.75, False
        )
    check("login SCRAM-SHA-1 sessions/s ≥ ejabberd's", s.get("login.scram.rate"),
          e.get("login.scram.rate"), 1.0, True)  # fmt: skip
    check("login SCRAM-SHA-1 + STARTTLS sessions/s ≥ ejabberd's", s.get("login.scram_tls.rate"),
          e.get("login.scram_tls.rate"), 1.0, True)  # fmt: skip
    check("… per CPU-second, SCRAM-SHA-1", s.get("login.scram.per_core"),
          e.get("login.scram.per_core"), 1.0, True)  # fmt: skip
    check("… per CPU-second, SCRAM-SHA-1 + STARTTLS", s.get("login.scram_tls.per_core"),
          e.get("login.scram_tls.per_core"), 1.0, True)  # fmt: skip
    check("presence deliveries/s ≥ ejabberd's", s.get("presence.rate"), e.get("presence.rate"),
          1.0, True)  # fmt: skip
    check("storm: presences delivered ≤ ejabberd's", s.get("storm.delivered"),
          e.get("storm.delivered"), 1.0, False)  # fmt: skip
    check(f"storm: deliveries/s ≥ 1.5{TIMES} ejabberd's", s.get("storm.rate"), e.get("storm.rate"),
          1.5, True)  # fmt: skip
    msg_p99 = s.get("storm.msg_p99")
    check("storm: online users' message p99 < 50 ms", msg_p99,
          None if msg_p99 is None else Figure("", 50.0, False), 1.0, False)  # fmt: skip
    for key in sorted(k for k in s if k.endswith(".rss_closed")):
        held = s.get(key.replace(".rss_closed", ".rss_held"))
        check(f"{s[key].label.split(':')[0]}: RSS after closing ≤ RSS held", s.get(key), held,
              1.0, False)  # fmt: skip
    check("message throughput ≥ 25% of the limit forwarder's", s.get("messages.max"),
          f.get("messages.max"), 0.25, True)  # fmt: skip
    check("… per core ≥ 25% of the limit forwarder's", s.get("messages.per_core"),
          f.get("messages.per_core"), 0.25, True)  # fmt: skip
    return ["| Target | Salon vs goal | |", "|---|---|---|", *out]


def profile_section(raw: Path, top: int = 30) -> list[str]:
    """Top functions by own (self) and inclusive time from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";")]
        thread = next((f for f in frames if f.startswith("thread ")), "")
        threads[thread] += count
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return ["(py-spy recorded no samples)"]
    per_thread = ", ".join(f"{t or 'thread ?'} {c / total:.0%}" for t, c in threads.most_common(6))
    lines = [f"{total:,} samples ({per_thread}). Own time (samples holding the GIL, so "
             "threads blocked in a queue or in C code that released it do not count; time in "
             "C code, such as uvloop's socket calls, counts for the Python frame that called "
             "it):", "",
             "| own % | function |", "|---:|---|"]  # fmt: skip
    lines += [f"| {c / total:.1%} | `{name}` |" for name, c in own.most_common(top)]
    lines += ["", "Inclusive time (the function and what it called):", "",
              "| incl. % | function |", "|---:|---|"]  # fmt: skip
    lines += [f"| {c / total:.1%} | `{name}` |" for name, c in inclusive.most_common(top)]
    return lines


def _short(frame: str) -> str:
    """'handle (salon/core/router.py:12)' with the site-packages or project prefix removed."""
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in frame:
            head, _, tail = frame.partition("(")
            path = tail.split(marker, 1)[-1]
            return f"{head.strip()} ({path}"
    return frame


def render(
    results: dict[str, dict[str, Result]],
    servers: list[str],
    versions: dict[str, str],
    setup_notes: dict[str, list[str]],
    plan_text: str,
    started: str,
    elapsed: float,
) -> str:
    figs = merged(results)
    lines = [
        f"# Salon benchmark — {started}",
        "",
        f"Machine: {os.cpu_count()} CPUs ({_cpu_model()}), {platform.platform()}. "
        "Server under test pinned to CPU 0, load generator to CPU 1. "
        f"One run, {elapsed / 60:.1f} min. Plan: {plan_text}.",
        "",
        "Servers: " + "; ".join(f"{TITLES.get(k, k)}: {v}" for k, v in versions.items()) + ".",
        "",
        "↑ higher is better, ↓ lower is better. Ratios are Salon's figure divided by the other "
        "server's (for ↓ rows a ratio below 1 favours Salon).",
        "",
        *table(figs, servers),
        "",
        "## Targets (issues 6 and 10)",
        "",
        *targets(figs),
        "",
        "## Configuration and fairness",
        "",
    ]
    for notes in setup_notes.values():
        lines += [f"- {n}" for n in notes]
    per_round = rounds_section(results)
    if per_round:
        lines += ["", "## Round by round (stability)", "", *per_round]
    lines += ["", "## Notes per run", ""]
    for server, by_scenario in results.items():
        for res in by_scenario.values():
            for note in res.notes:
                lines.append(f"- {TITLES.get(server, server)} — {note}")
    what = {
        "messages": "the messages scenario, at 90% of the max sustained rate",
        "login": "SCRAM-SHA-1 logins (plaintext), closed loop",
        "presence": "one more presence round (every user coming online at once)",
        "pep": "one more PEP round (every user publishing a tune at once)",
        "storm": "the login storm itself (profiled while it runs)",
    }
    for scenario, text in what.items():
        res = results.get("salon", {}).get(scenario)
        if res is None or not res.details.get("profile"):
            continue
        raw = Path(res.details["profile"])
        lines += [
            "",
            f"## Salon profile: {text} (py-spy)",
            "",
            f"Collapsed stacks: `{raw}` (open in speedscope.app or flamegraph.pl).",
            "",
        ]
        threads = res.details.get("profile_threads") or {}
        if threads.get("wall"):
            lines += [
                f"CPU while recording ({threads['wall']:.1f} s, from /proc): event-loop thread "
                f"{threads['main_thread']:.2f} s, other threads (SQLite worker, executors) "
                f"{threads['other_threads']:.2f} s.",
                "",
            ]
        lines += profile_section(raw)
    lines += ["", "## Message steps", ""]
    for server, by_scenario in results.items():
        for name in ("messages", "limit"):
            res = by_scenario.get(name)
            if res is None or "steps" not in res.details:
                continue
            lines += [
                f"{TITLES.get(server, server)} ({name}):",
                "",
                "| offered/s | sent/s | delivered/s | p50 ms | p99 ms | server CPU | gen CPU "
                "| others CPU0/CPU1 | µs CPU/msg | result |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            ]
            for s in res.details["steps"]:
                verdict = "ok" if s["passed"] else s["reason"]
                if s["generator_bound"]:
                    verdict += " (generator-bound)"
                lines.append(
                    f"| {s['offered']:,.0f} | {s['sent_rate']:,.0f} | {s['delivered_rate']:,.0f}"
                    f" | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['server_share']:.0%} | "
                    f"{s['generator_share']:.0%} | {s['others_cpu0']:.0%}/{s['others_cpu1']:.0%} | "
                    f"{s['cpu_us_per_msg']:.1f} | {verdict} |"
                )
            lines.append("")
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
