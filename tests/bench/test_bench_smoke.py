"""Keeps the benchmark harness (bench/) from rotting: every scenario runs once against Salon
(and the limit forwarder) with tiny numbers. Nothing here checks a timing."""

from __future__ import annotations

import asyncio
import math
import shutil
from pathlib import Path

import pytest

from bench import report
from bench.scenarios import SCENARIOS, Plan
from bench.servers import Forwarder, Salon

pytestmark = pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")


def test_every_scenario_runs_against_salon(tmp_path: Path) -> None:
    plan = Plan.tiny()
    salon = Salon(tmp_path, port=0)
    salon.port = _free_port()
    salon.ensure_population(plan.population())
    results = {"salon": {}, "forwarder": {}}
    for name in ("login", "idle", "messages", "presence", "storm"):
        results["salon"][name] = asyncio.run(SCENARIOS[name](salon, plan))
    forwarder = Forwarder(tmp_path, port=_free_port())
    results["forwarder"]["limit"] = asyncio.run(SCENARIOS["limit"](forwarder, plan))

    figures = report.merged(results)
    for key in (
        "login.scram.rate",
        "login.plain_tls.cpu",
        "idle.5.rss",
        "idle.5.rss_closed",
        "presence.rate",
        "storm.delivered",
        "storm.msg_p99",
    ):
        assert key in figures["salon"], (key, results["salon"])
    assert figures["salon"]["login.scram.rate"].value > 0
    assert figures["salon"]["presence.rate"].value > 0
    for server, scenario in (("salon", "messages"), ("forwarder", "limit")):
        ran = results[server][scenario]
        assert ran.details["steps"], ran  # the load generator ran
        best = figures[server].get("messages.max")
        if best is None:
            # A machine busy elsewhere may sustain not even the first (tiny) step: that is a
            # timing, not rot; the scenario must still say so.
            assert any("no step was sustained" in note for note in ran.notes), ran
        else:
            assert math.isfinite(best.value) and best.value > 0, ran
    text = report.render(results, ["salon"], {"salon": "Salon"}, {}, "tiny", "now", 1.0)
    assert "| login SCRAM-SHA-1: sessions/s ↑ |" in text


def _free_port() -> int:
    from tests.integration.harness import free_port

    return free_port("127.0.0.1")
