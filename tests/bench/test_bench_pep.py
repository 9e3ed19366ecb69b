"""The PEP fan-out scenario runs against Salon with tiny numbers, and every notification the
scenario expects arrives (caps answered by the generator, +notify honoured). No timing."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from bench.scenarios import SCENARIOS, Plan
from bench.servers import Salon

pytestmark = pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")


def test_pep_scenario_against_salon(tmp_path: Path) -> None:
    plan = Plan.tiny()
    salon = Salon(tmp_path, port=_free_port())
    salon.ensure_population(plan.population())
    result = asyncio.run(SCENARIOS["pep"](salon, plan))
    rounds = result.details["measured_rounds"]
    assert len(rounds) == plan.presence_rounds + 1
    for measured in rounds:
        assert measured["delivered"] == measured["expected"], rounds
    assert result.figures["pep.rate"].value > 0
    assert result.figures["pep.per_core"].value > 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
