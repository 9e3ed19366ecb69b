"""HTTP File Upload (XEP-0363) in the browser: alice, in Converse.js served by Salon at
/chat/ over HTTPS, picks a file in the chat with bob; Converse finds upload.localhost in the
server's disco items, asks it for a slot, PUTs the file to Salon's web server and sends the
GET URL; bob, in another browser context, sees a message linking to that URL, and the URL
serves the very bytes alice picked.

Runs on ephemeral ports (no lock needed). Skipped, like the other browser tests, only
locally with SALON_SKIP_BROWSER=1.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser.test_chat_page import (
    CHROMIUM,
    CLIENT_DIR,
    FLAGS,
    OUTPUT,
    STEP_TIMEOUT_MS,
    _log_in,
    _online,
    _open_chat,
    playwright_api,
)
from tests.integration.harness import RunningServer
from tests.integration.im_helpers import befriend

pytestmark = pytest.mark.browser
__all__ = ["playwright_api"]  # the fixture, used by name

SERVICE = "upload.localhost"
FILENAME = "salon-notes.txt"
CONTENT = b"Minutes of the salon, 6 December: the upload works in the browser.\n" * 20


async def test_file_uploaded_in_converse_reaches_the_other_user_as_a_link(
    server_factory: Callable[..., Awaitable[RunningServer]],
    playwright_api: Any,
    tmp_path: Path,
) -> None:
    srv = await server_factory(http={"web_client_dir": str(CLIENT_DIR)})
    alice, bob = await srv.add_user(), await srv.add_user()
    await befriend(srv, alice, bob)
    url = f"https://localhost:{srv.https_port}/chat/"
    prefix = f"https://localhost:{srv.https_port}/upload/{SERVICE}/"
    link = f"a[href^='{prefix}'][href$='/{FILENAME}']"

    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            pages = {}
            for user in (alice, bob):
                context = await browser.new_context(
                    ignore_https_errors=True, viewport={"width": 1000, "height": 640}
                )
                pages[user] = await context.new_page()
                await _log_in(pages[user], url, user)
            for user in (alice, bob):
                await _online(srv, user)
            await _open_chat(pages[alice], bob)
            await _open_chat(pages[bob], alice)

            # Converse offers the upload only once it found the service through disco.
            picker = pages[alice].locator("input.fileupload").last
            await picker.wait_for(state="attached", timeout=STEP_TIMEOUT_MS)
            await picker.set_input_files(
                files=[{"name": FILENAME, "mimeType": "text/plain", "buffer": CONTENT}]
            )

            received = pages[bob].locator(link).first
            await received.wait_for(timeout=STEP_TIMEOUT_MS)
            get_url = await received.get_attribute("href")
            await pages[alice].locator(link).first.wait_for(timeout=STEP_TIMEOUT_MS)

            OUTPUT.mkdir(exist_ok=True)
            for name, page in (("upload-sent.png", pages[alice]), ("upload.png", pages[bob])):
                await page.screenshot(path=str(tmp_path / name))
                shutil.copyfile(tmp_path / name, OUTPUT / name)
        finally:
            await browser.close()

    assert get_url is not None and get_url.startswith(prefix)
    connector = aiohttp.TCPConnector(ssl=srv.client_ssl_context())
    async with aiohttp.ClientSession(connector=connector) as http, http.get(get_url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert await resp.read() == CONTENT
    # The server kept exactly that one file, owned by alice.
    folders = list((srv.data_dir / "upload" / SERVICE).iterdir())
    assert len(folders) == 1 and (folders[0] / "data").read_bytes() == CONTENT
    meta = json.loads((folders[0] / "meta.json").read_text())
    assert (meta["owner"], meta["filename"], meta["size"]) == (alice, FILENAME, len(CONTENT))
