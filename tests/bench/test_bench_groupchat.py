"""Keeps the groupchat scenario of the benchmark harness from rotting: a room of three
against Salon, with tiny numbers. Nothing here checks a timing."""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
from pathlib import Path

import pytest

from bench.scenarios import SCENARIOS, Plan
from bench.servers import Salon

pytestmark = pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")


def test_groupchat_scenario_runs_against_salon(tmp_path: Path) -> None:
    plan = Plan.tiny()
    salon = Salon(tmp_path, port=0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        salon.port = int(sock.getsockname()[1])
    salon.ensure_population(plan.population())
    result = asyncio.run(SCENARIOS["groupchat"](salon, plan))
    size = plan.groupchat_sizes[0]
    join = result.figures[f"groupchat.{size}.join_last"].value
    assert math.isfinite(join) and join > 0, result
    assert result.figures[f"groupchat.{size}.max"].value > 0, result
    for figure in ("per_core", "cpu", "per_cpu_second"):  # present; tiny loads measure ~0 CPU
        assert f"groupchat.{size}.{figure}" in result.figures, result
