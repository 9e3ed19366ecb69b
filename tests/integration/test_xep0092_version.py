"""XEP-0092: Software Version. The version Salon reports is its package's version, read from
the installed distribution's metadata in one place (``salon.__version__``)."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import salon
from salon.cli import main
from salon.namespaces import NS_VERSION
from tests.integration.harness import NS_CLIENT, RunningServer, q, raw_session

ServerFactory = Callable[..., Awaitable[RunningServer]]
FAKE_VERSION = "9.8.7.dev42"


async def _software_version(srv: RunningServer) -> tuple[str | None, str | None]:
    client, _ = await raw_session(srv)
    await client.send(f"<iq type='get' id='v1' to='localhost'><query xmlns='{NS_VERSION}'/></iq>")
    reply = await client.next()
    assert reply.get("type") == "result" and reply.get("id") == "v1", ET.tostring(reply)
    query = reply.find(q(NS_VERSION, "query"))
    assert query is not None, ET.tostring(reply)
    await client.close()
    assert reply.tag == q(NS_CLIENT, "iq")
    return query.findtext(q(NS_VERSION, "name")), query.findtext(q(NS_VERSION, "version"))


@pytest.fixture
def other_release(tmp_path: Path) -> Iterator[str]:
    """Installed metadata that says Salon is another release: a ``salon-<v>.dist-info`` ahead
    of the real one on ``sys.path``, with ``salon`` re-imported so it reads it."""
    dist_info = tmp_path / "site" / f"salon-{FAKE_VERSION}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: salon\nVersion: {FAKE_VERSION}\n"
    )
    sys.path.insert(0, str(dist_info.parent))
    try:
        assert importlib.metadata.version("salon") == FAKE_VERSION
        importlib.reload(salon)
        yield FAKE_VERSION
    finally:
        sys.path.remove(str(dist_info.parent))
        importlib.reload(salon)


async def test_version_reply_is_the_package_version(server: RunningServer) -> None:
    assert await _software_version(server) == ("Salon", importlib.metadata.version("salon"))


async def test_version_reply_follows_the_package_metadata(
    server_factory: ServerFactory, other_release: str
) -> None:
    srv = await server_factory()
    assert await _software_version(srv) == ("Salon", other_release)


def test_cli_version_is_the_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"salon, version {importlib.metadata.version('salon')}\n"


def test_cli_version_follows_the_package_metadata(other_release: str) -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert other_release in result.output.split()
