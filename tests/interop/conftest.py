from __future__ import annotations

from collections.abc import Mapping

import pytest
import trustme
import uvloop
from pytest_asyncio.plugin import LoopFactory


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    """Salon meets real peers on the event loop ``salon serve`` runs: uvloop. (Issue 9's
    STARTTLS stall showed only there: its loop polls sockets between two callbacks.)"""
    return {"uvloop": uvloop.new_event_loop}
