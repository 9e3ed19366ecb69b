"""End to end in a real browser, as a newcomer: Debian's headless Chromium opens the chat URLs
that the README and `make run` print (Converse.js served by Salon, on the default ports 5280
and 5281), logs in there over WebSocket and over BOSH, and two of the users exchange a message
each way. Screenshots go to the test's tmp_path and to test-output/ (gitignored).

The default ports are shared by everyone on the machine: the test holds a lock file while it
uses them and fails with a clear message when something else (a `make run`) has them.

Never skipped in CI: a missing Chromium, Playwright or Converse.js fails the test, since
.ci/run and ``make test`` install them. Locally, SALON_SKIP_BROWSER=1 skips it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import shutil
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from salon.jid import JID
from salon.net.bosh import BoshSession
from salon.net.websocket import WebSocketConnection
from tests.integration.harness import PASSWORD, RunningServer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CLIENT_DIR = ROOT / "var" / "web" / "node_modules" / "converse.js" / "dist"
OUTPUT = ROOT / "test-output"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
STEP_TIMEOUT_MS = 20_000


def _need(is_there: bool, what: str) -> None:
    if is_there:
        return
    pytest.fail(f"{what}; `bash .ci/run` installs it (Chromium by apt, Converse.js by make)")


@pytest.fixture
def playwright_api() -> Any:
    if os.environ.get("SALON_SKIP_BROWSER") == "1" and not os.environ.get("CI"):
        pytest.skip("SALON_SKIP_BROWSER=1: browser tests skipped on request")
    _need(CHROMIUM.exists(), f"Chromium is not installed at {CHROMIUM}")
    converse = CLIENT_DIR / "converse.min.js"
    _need(converse.is_file(), f"Converse.js is not installed in {CLIENT_DIR}")
    try:
        from playwright import async_api
    except ImportError:
        pytest.fail("the playwright package is missing (pip install -e '.[test]')")
    return async_api


async def _online(srv: RunningServer, bare: str, timeout: float = 20.0) -> Any:
    """The server-side session of ``bare`` once the browser has logged in and sent its
    initial presence (before that, messages to the user go to offline storage)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for session in srv.server.core.sessions.resources(JID.parse(bare)):
            if session.is_available:
                return session
        await asyncio.sleep(0.1)
    raise AssertionError(f"{bare} never came online")


async def _log_in(page: Any, url: str, jid: str) -> None:
    await page.goto(url)
    await page.fill("#converse-login-jid", jid)
    await page.fill("#converse-login-password", PASSWORD)
    await page.click("#converse-login button[type=submit]")


async def _open_chat(page: Any, jid: str) -> None:
    """What a link to ``#converse/chat?jid=…`` does."""
    await page.evaluate("jid => { location.hash = 'converse/chat?jid=' + jid; }", jid)
    await page.wait_for_selector("textarea.chat-textarea", timeout=STEP_TIMEOUT_MS)


async def _say(page: Any, text: str) -> None:
    textarea = page.locator("textarea.chat-textarea").last
    await textarea.fill(text)
    await textarea.press("Enter")


async def _sees(page: Any, text: str) -> None:
    await page.locator(".chat-msg__text", has_text=text).first.wait_for(timeout=STEP_TIMEOUT_MS)


CHAT_URL = re.compile(r"https?://localhost:\d+/chat/")
PORT_LOCK = Path("/tmp/salon-browser-default-ports.lock")


def printed_chat_urls() -> tuple[set[str], set[str]]:
    """The chat URLs a newcomer is shown: in the README, and by the Makefile's ``run``."""
    readme = set(CHAT_URL.findall((ROOT / "README.md").read_text()))
    makefile = (ROOT / "Makefile").read_text()
    run = makefile[makefile.index("\nrun:") :]
    run = run[: run.index("\n\n")]
    return readme, set(CHAT_URL.findall(run))


@pytest.fixture
def default_ports() -> Iterator[dict[str, int]]:
    """The ports of the printed URLs by scheme, held under a machine-wide lock (taken
    before the server starts, released after it stopped) and checked to be free."""
    readme, make_run = printed_chat_urls()
    ports: dict[str, int] = {}
    for url in readme | make_run:
        parts = urlsplit(url)
        assert parts.port is not None, url
        ports[parts.scheme] = parts.port
    assert set(ports) == {"http", "https"}, ports
    with PORT_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for port in ports.values():
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    pytest.fail(f"port {port} is taken (a `make run`?): stop it and rerun")
        yield ports


def test_readme_and_make_run_print_chat_urls() -> None:
    readme, make_run = printed_chat_urls()
    assert make_run, "make run prints no chat URL"
    assert readme, "the README shows no chat URL"
    assert make_run <= readme, "the README should show the URL make run prints"


async def test_newcomer_logs_in_at_every_printed_chat_url(
    default_ports: dict[str, int],  # first: its lock outlives the server
    server_factory: Callable[..., Awaitable[RunningServer]],
    playwright_api: Any,
    tmp_path: Path,
) -> None:
    readme, make_run = printed_chat_urls()
    urls = sorted(readme | make_run)  # http://localhost:5280/chat/, https://localhost:5281/chat/
    options = {"port": default_ports["http"], "tls_port": default_ports["https"]}
    srv = await server_factory(http={"web_client_dir": str(CLIENT_DIR), **options})
    # (page URL, user): each printed URL over WebSocket and over BOSH.
    logins = [
        (url + query, await srv.add_user()) for url in urls for query in ("", "?transport=bosh")
    ]
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            pages = []
            for url, user in logins:
                context = await browser.new_context(
                    ignore_https_errors=True, viewport={"width": 1000, "height": 640}
                )
                page = await context.new_page()
                await _log_in(page, url, user)
                pages.append(page)
            sessions = [await _online(srv, user) for _, user in logins]
            for (url, user), session in zip(logins, sessions, strict=True):
                kind = BoshSession if "transport=bosh" in url else WebSocketConnection
                assert isinstance(session.connection, kind), (url, user)

            # alice: the README's plain-HTTP URL over WebSocket; bob: make run's HTTPS URL
            # over BOSH.
            (alice_url, alice), (bob_url, bob) = logins[0], logins[-1]
            alice_page, bob_page = pages[0], pages[-1]
            assert alice_url.startswith("http://") and bob_url.startswith("https://")
            for page, other in ((alice_page, bob), (bob_page, alice)):
                await page.get_by_text("I am online").wait_for(timeout=STEP_TIMEOUT_MS)
                await _open_chat(page, other)
            await _say(alice_page, "Hello Bob, this is Alice over WebSocket")
            await _sees(bob_page, "Hello Bob, this is Alice over WebSocket")
            await _say(bob_page, "Hi Alice, Bob here over BOSH")
            await _sees(alice_page, "Hi Alice, Bob here over BOSH")
            await _sees(alice_page, "Hello Bob, this is Alice over WebSocket")

            shots = {"chat.png": alice_page, "chat-bosh.png": bob_page}
            OUTPUT.mkdir(exist_ok=True)
            for name, page in shots.items():
                await page.screenshot(path=str(tmp_path / name))
                shutil.copyfile(tmp_path / name, OUTPUT / name)
        finally:
            await browser.close()
