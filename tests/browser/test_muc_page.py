"""Group chat in a real browser: two users log in on Salon's Converse.js page (/chat/), join
the same room of conference.localhost from it (the first one creates it), and exchange
messages there. Screenshots go to the test's tmp_path and to test-output/.

Like test_chat_page, never skipped in CI; SALON_SKIP_BROWSER=1 skips it locally.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from salon.jid import JID
from tests.browser.test_chat_page import (
    CHROMIUM,
    CLIENT_DIR,
    FLAGS,
    OUTPUT,
    STEP_TIMEOUT_MS,
    _log_in,
    _online,
    _say,
    _sees,
    playwright_api,
)
from tests.integration.harness import RunningServer

pytestmark = pytest.mark.browser

__all__ = ["playwright_api"]

ROOM = "tavern@conference.localhost"


async def _join_room(page: Any, room: str, nick: str) -> None:
    """What a link to ``#converse/room?jid=…`` does, then the nickname form."""
    await page.get_by_text("I am online").wait_for(timeout=STEP_TIMEOUT_MS)
    await page.evaluate("jid => { location.hash = 'converse/room?jid=' + jid; }", room)
    nick_input = page.locator("input[name=nick]").last
    await nick_input.wait_for(timeout=STEP_TIMEOUT_MS)
    await nick_input.fill(nick)
    await nick_input.press("Enter")
    await page.locator("textarea.chat-textarea").last.wait_for(timeout=STEP_TIMEOUT_MS)


async def test_two_users_chat_in_a_room_from_the_chat_page(
    server_factory: Callable[..., Awaitable[RunningServer]],
    playwright_api: Any,
    tmp_path: Path,
) -> None:
    srv = await server_factory(http={"web_client_dir": str(CLIENT_DIR)})
    url = srv.http_url("/chat/", secure=False)
    alice, bob = await srv.add_user("alice"), await srv.add_user("bob")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            pages = []
            for user in (alice, bob):
                context = await browser.new_context(viewport={"width": 1000, "height": 640})
                page = await context.new_page()
                await _log_in(page, url, user)
                pages.append(page)
            for user in (alice, bob):
                await _online(srv, user)
            alice_page, bob_page = pages
            await _join_room(alice_page, ROOM, "Alice")
            await _join_room(bob_page, ROOM, "Bob")
            muc = srv.server.core.domains.get("conference.localhost")
            assert muc is not None
            room = muc.rooms["tavern"]  # type: ignore[attr-defined]
            assert len(room) == 2
            assert room.by_nick("Alice").bare == JID.parse(alice)
            await _say(alice_page, "Welcome to the tavern, Bob")
            await _sees(bob_page, "Welcome to the tavern, Bob")
            await _say(bob_page, "A fine room, Alice")
            await _sees(alice_page, "A fine room, Alice")
            await _sees(alice_page, "Welcome to the tavern, Bob")
            OUTPUT.mkdir(exist_ok=True)
            for name, page in {"muc.png": alice_page, "muc-bob.png": bob_page}.items():
                await page.screenshot(path=str(tmp_path / name))
                shutil.copyfile(tmp_path / name, OUTPUT / name)
        finally:
            await browser.close()
