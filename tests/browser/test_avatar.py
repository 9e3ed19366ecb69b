"""A contact's avatar in the browser: bob (slixmpp) publishes a User Avatar (XEP-0084) over
PEP; Salon copies it into his vCard (XEP-0398); alice, in Converse.js served by Salon at
/chat/, sees it on bob's roster entry (Converse reads avatars from vCards).

Runs on ephemeral ports (no lock needed). Skipped, like the other browser test, only
locally with SALON_SKIP_BROWSER=1.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import slixmpp

from tests.browser.test_chat_page import (
    CHROMIUM,
    CLIENT_DIR,
    FLAGS,
    OUTPUT,
    STEP_TIMEOUT_MS,
    _log_in,
    _online,
    playwright_api,
)
from tests.integration.harness import RunningServer, connect_slixmpp
from tests.integration.im_helpers import befriend, presence

pytestmark = pytest.mark.browser
__all__ = ["playwright_api"]  # the fixture, used by name


def red_square_png(size: int = 24) -> bytes:
    """A real PNG (RGB, no filter) of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + b"\xd0\x30\x30" * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )


async def test_contact_avatar_published_over_pep_shows_in_converse(
    server_factory: Callable[..., Awaitable[RunningServer]],
    playwright_api: Any,
    tmp_path: Path,
) -> None:
    srv = await server_factory(http={"web_client_dir": str(CLIENT_DIR)})
    alice, bob = await srv.add_user(), await srv.add_user()
    await befriend(srv, alice, bob)

    def configure(xmpp: slixmpp.ClientXMPP) -> None:
        for plugin in ("xep_0030", "xep_0060", "xep_0163", "xep_0084"):
            xmpp.register_plugin(plugin)

    bob_client = await connect_slixmpp(srv, bob, configure=configure)
    image = red_square_png()
    digest = hashlib.sha1(image).hexdigest()
    avatars = bob_client.xmpp.plugin["xep_0084"]
    await avatars.publish_avatar(image)
    await avatars.publish_avatar_metadata(
        [{"id": digest, "type": "image/png", "bytes": len(image), "width": "24", "height": "24"}]
    )
    bob_client.xmpp.send_presence()
    await bob_client.expect(presence(sender=bob_client.jid))

    url = f"http://localhost:{srv.http_port}/chat/"
    href = "data:image/png;base64," + base64.b64encode(image).decode()
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            context = await browser.new_context(viewport={"width": 1000, "height": 640})
            page = await context.new_page()
            await _log_in(page, url, alice)
            await _online(srv, alice)
            entry = page.locator(f"a.open-chat[data-jid='{bob}']")
            await entry.wait_for(timeout=STEP_TIMEOUT_MS)
            avatar = entry.locator(f"converse-avatar svg image[href='{href}']")
            await avatar.wait_for(timeout=STEP_TIMEOUT_MS)
            OUTPUT.mkdir(exist_ok=True)
            await page.screenshot(path=str(tmp_path / "avatar.png"))
            shutil.copyfile(tmp_path / "avatar.png", OUTPUT / "avatar.png")
        finally:
            await browser.close()
    await bob_client.disconnect()
