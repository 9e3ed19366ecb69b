"""End to end in a real browser: Debian's headless Chromium opens /chat (Converse.js served by
Salon), logs in two users, alice over WebSocket and bob over BOSH, and they exchange a message
each way. Screenshots go to the test's tmp_path and to test-output/ (gitignored).

Never skipped in CI: a missing Chromium, Playwright or Converse.js fails the test, since
.ci/run and ``make test`` install them. Locally, SALON_SKIP_BROWSER=1 skips it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

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


async def test_websocket_and_bosh_users_chat_in_converse(
    server_factory: Callable[..., Awaitable[RunningServer]],
    playwright_api: Any,
    tmp_path: Path,
) -> None:
    srv = await server_factory(http={"web_client_dir": str(CLIENT_DIR)})
    alice = await srv.add_user("alice")
    bob = await srv.add_user("bob")
    page_url = srv.http_url("/chat/")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            pages = []
            for _ in range(2):
                context = await browser.new_context(
                    ignore_https_errors=True, viewport={"width": 1000, "height": 640}
                )
                pages.append(await context.new_page())
            alice_page, bob_page = pages

            await _log_in(alice_page, page_url, alice)
            await _log_in(bob_page, page_url + "?transport=bosh", bob)
            alice_session = await _online(srv, alice)
            bob_session = await _online(srv, bob)
            # Two transports, one kind of session.
            assert isinstance(alice_session.connection, WebSocketConnection)
            assert isinstance(bob_session.connection, BoshSession)

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
