"""`pip install` of a built wheel gives a working server: the wheel is built, installed in a
fresh virtual environment, and that environment's ``salon`` runs ``init``, ``adduser`` and
``serve``; a slixmpp client logs in over c2s, and ``/chat/`` says exactly how to fetch
Converse.js when it is missing (``salon serve`` prints the same command), and serves it once
its files are where the config says.

Slow-ish (about 20 s: pip installs the dependencies from the machine's package index or
cache); SALON_SKIP_WHEEL=1 skips it.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import slixmpp

from salon.net.chat_page import CONVERSE_VERSION
from tests.integration.harness import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.environ.get("SALON_SKIP_WHEEL") == "1", reason="SALON_SKIP_WHEEL=1"),
]


async def run(*args: str | Path, cwd: Path, timeout: float = 240) -> str:
    proc = await asyncio.create_subprocess_exec(
        *map(str, args), cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{args} failed:\n{text}"
    return text


async def installed(tmp: Path) -> Path:
    """A fresh venv with the wheel installed in it; its ``bin`` folder."""
    dist = tmp / "dist"
    await run(sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", dist, cwd=tmp)
    (wheel,) = dist.glob("salon-*.whl")
    venv = tmp / "venv"
    await run(sys.executable, "-m", "venv", venv, cwd=tmp)
    await run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=tmp)
    return venv / "bin"


class Served:
    def __init__(self, proc: asyncio.subprocess.Process, ports: dict[str, int], lines: list[str]):
        self.proc = proc
        self.ports = ports
        self.lines = lines


async def serve(bin_dir: Path, config: Path) -> AsyncIterator[Served]:
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "salon"), "serve", "-c", str(config), cwd=config.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    lines: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "the server exited:\n" + "".join(lines)
            lines.append(line)
            match = re.match(r"listening: (\S+) on [\d.]+:(\d+)", line)
            if match:
                ports.setdefault(match.group(1), int(match.group(2)))
            if line.startswith("web chat:"):
                break
        yield Served(proc, ports, lines)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


async def get(url: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    return await asyncio.to_thread(fetch)


async def log_in(port: int, ca: Path) -> None:
    xmpp = slixmpp.ClientXMPP("alice@localhost", PASSWORD)
    xmpp.ca_certs = str(ca)
    xmpp.enable_plaintext = False
    xmpp.enable_direct_tls = False
    xmpp.enable_starttls = True
    started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    xmpp.add_event_handler("session_start", lambda _e: started.done() or started.set_result(True))
    for failure in ("failed_all_auth", "connection_failed"):
        xmpp.add_event_handler(
            failure,
            lambda e: started.done() or started.set_exception(AssertionError(f"login: {e}")),
        )
    xmpp.connect("127.0.0.1", port)
    try:
        await asyncio.wait_for(started, 20)
    finally:
        xmpp.disconnect()


async def test_wheel_installs_a_working_server(tmp_path: Path) -> None:
    bin_dir = await installed(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    config = home / "salon.toml"
    await run(bin_dir / "salon", "init", "-c", config, cwd=home)
    # every listener on a free port (the machine is shared), s2s off
    text = re.sub(r"(?m)^(port|direct_tls_port|tls_port) = \d+$", r"\1 = 0", config.read_text())
    text = text.replace("[s2s]\nenabled = true", "[s2s]\nenabled = false")
    config.write_text(text)
    await run(bin_dir / "salon", "adduser", "-c", config, "alice@localhost",
              "--password", PASSWORD, cwd=home)  # fmt: skip
    dist = home / "web" / "node_modules" / "converse.js" / "dist"
    fetch = f"npm install --prefix {home / 'web'} converse.js@{CONVERSE_VERSION}"

    async for served in serve(bin_dir, config):
        assert served.lines[-1].strip() == (
            f"web chat: Converse.js is not in {dist}; fetch it with: {fetch}"
        )
        await log_in(served.ports["c2s"], home / "certs" / "localhost.crt")
        status, page = await get(f"http://127.0.0.1:{served.ports['http']}/chat/")
        assert status == 200 and "The web chat is not installed" in page
        assert fetch in page

    # with the files where the config says, the page runs them and they are served
    dist.mkdir(parents=True)
    (dist / "converse.min.js").write_text("export default {initialize() {}};\n")
    (dist / "converse.min.css").write_text("body {}\n")
    async for served in serve(bin_dir, config):
        assert served.lines[-1].strip() == f"web chat: Converse.js from {dist}"
        base = f"http://127.0.0.1:{served.ports['http']}/chat/"
        status, page = await get(base)
        assert status == 200 and 'import converse from "./converse.min.js"' in page
        status, script = await get(base + "converse.min.js")
        assert status == 200 and "initialize" in script
