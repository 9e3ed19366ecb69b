"""The soak scenario runs against Salon with tiny numbers: sessions churn (log out and back
in) while messages and presence flow, and RSS is sampled. No timing or memory figure is
checked here: that is what `python -m bench run --scenario soak` is for."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from bench.scenarios import SCENARIOS, Plan
from bench.servers import Salon

pytestmark = pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")


def test_soak_scenario_against_salon(tmp_path: Path) -> None:
    plan = Plan.tiny()
    salon = Salon(tmp_path, port=_free_port())
    salon.ensure_population(plan.population())
    result = asyncio.run(SCENARIOS["soak"](salon, plan))
    soak = result.details["soak"]
    assert soak["relogins"] > 0 and soak["relogin_failures"] == 0, soak
    assert soak["messages_sent"] > 0 and soak["messages_received"] > 0, soak
    assert soak["presence_sent"] > 0 and soak["presence_received"] > 0, soak
    assert len(soak["samples"]) >= 4 and all(rss > 0 for _, rss in soak["samples"])
    assert "soak.growth" in result.figures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
