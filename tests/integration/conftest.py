from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.integration.harness import RunningServer, start_server


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def server_factory(
    tmp_path: Path, ca: trustme.CA
) -> AsyncIterator[Callable[..., Awaitable[RunningServer]]]:
    started: list[RunningServer] = []

    async def make(data_dir: Path | None = None, **options: Any) -> RunningServer:
        """Start a server; pass an earlier server's ``data_dir`` to restart on its data."""
        srv = await start_server(data_dir or tmp_path / f"server{len(started)}", ca, **options)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        await srv.server.stop()


@pytest.fixture
async def server(server_factory: Callable[..., Awaitable[RunningServer]]) -> RunningServer:
    return await server_factory()
