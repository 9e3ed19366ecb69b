"""Uploaded files on disk and the HTTP side of the upload service.

Layout: ``<root>/<slot id>/data`` holds the bytes and ``<root>/<slot id>/meta.json`` what
was bound to the slot (name, size, type, owner, time). A PUT streams into ``data.part`` in
batches of at most ``WRITE_BATCH`` bytes written from a worker thread, so an upload of any
size costs a bounded amount of memory; only a complete upload is renamed into place. A GET
streams the file back the same way, in ``READ_CHUNK`` pieces, whole or one Range.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO
from urllib.parse import unquote

from salon.core.clock import Clock
from salon.core.web import HttpRequest, HttpResponse
from salon.modules.upload.quota import DailyQuota, day_of
from salon.modules.upload.rules import (
    SLOT_ID,
    RangeNotSatisfiable,
    mac_matches,
    normalise_content_type,
    parse_range,
    safe_headers,
    slot_mac,
)

log = logging.getLogger(__name__)

WRITE_BATCH = 1 << 20  # bytes gathered before one write to disk
READ_CHUNK = 1 << 18  # bytes per read when serving
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, PUT, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Content-Disposition",
    "Access-Control-Max-Age": "86400",
}


@dataclass(slots=True)
class FileMeta:
    filename: str
    size: int
    content_type: str
    owner: str  # the uploader's bare JID
    created: float  # clock time the upload completed


@dataclass(slots=True)
class PendingSlot:
    filename: str
    size: int
    content_type: str
    owner: str
    expires: int  # clock time after which the PUT URL is refused
    granted: float  # clock time the slot was given (the day it is charged to)


def _text(status: int, text: str, extra: dict[str, str] | None = None) -> HttpResponse:
    headers = {**CORS, "Content-Type": "text/plain; charset=utf-8", **(extra or {})}
    return HttpResponse(status, headers, (text + "\n").encode())


class FileStore:
    """The files of one upload service, their owners' usage, the slots given out, and the
    HTTP handler for PUT, GET, HEAD and OPTIONS under the service's path prefix."""

    def __init__(
        self, root: Path, secret: bytes, clock: Clock, expire_after: float, daily_limit: int = 0
    ) -> None:
        self.root = root
        self.secret = secret
        self.clock = clock
        self.expire_after = expire_after
        self.files: dict[str, FileMeta] = {}
        self.pending: dict[str, PendingSlot] = {}
        self.usage: dict[str, int] = {}  # owner → bytes stored or reserved by open slots
        self.daily = DailyQuota(daily_limit)  # owner → bytes granted today
        self._uploading: set[str] = set()

    # ------------------------------------------------------------------ bookkeeping
    def load(self) -> None:
        """Read what is on disk (blocking: run it in a thread); drop incomplete uploads."""
        self.root.mkdir(parents=True, exist_ok=True)
        now = self.clock.time()
        for folder in self.root.iterdir():
            meta_path = folder / "meta.json"
            try:
                meta = FileMeta(**json.loads(meta_path.read_text()))
                if not SLOT_ID.fullmatch(folder.name) or not (folder / "data").is_file():
                    raise ValueError("incomplete")
            except (OSError, ValueError, TypeError):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            self.files[folder.name] = meta
            self.usage[meta.owner] = self.usage.get(meta.owner, 0) + meta.size
            if day_of(meta.created) == day_of(now):  # uploaded today: counts for today
                self.daily.charge(meta.owner, meta.size, now)

    def reserve(self, slot: str, pending: PendingSlot) -> None:
        self.pending[slot] = pending
        self.usage[pending.owner] = self.usage.get(pending.owner, 0) + pending.size
        self.daily.charge(pending.owner, pending.size, pending.granted)

    def pending_count(self, owner: str) -> int:
        return sum(1 for p in self.pending.values() if p.owner == owner)

    def next_release(self, owner: str, *, files: bool = True) -> float | None:
        """The clock time ``owner``'s next file expires or open slot lapses (bytes come back),
        or None when the owner has neither. ``files=False``: the next slot only."""
        times = [
            m.created + self.expire_after
            for m in (self.files.values() if files else ())
            if m.owner == owner
        ]
        # A slot lapses once the clock is past its expiry (see forget_lapsed_slots).
        times += [p.expires + 1 for s, p in self.pending.items() if p.owner == owner]
        return min(times, default=None)

    def _release(self, owner: str, size: int) -> None:
        left = self.usage.get(owner, 0) - size
        if left > 0:
            self.usage[owner] = left
        else:
            self.usage.pop(owner, None)

    def is_expired(self, meta: FileMeta) -> bool:
        return self.clock.time() >= meta.created + self.expire_after

    def forget_lapsed_slots(self) -> None:
        """Forget slots whose PUT URL expired unused; give their bytes back."""
        now = self.clock.time()
        for slot, pending in list(self.pending.items()):
            if now > pending.expires and slot not in self._uploading:
                del self.pending[slot]
                self._release(pending.owner, pending.size)
                self.daily.refund(pending.owner, pending.size, pending.granted, now)

    async def sweep(self) -> None:
        """Forget slots nobody used and delete files past their time."""
        self.forget_lapsed_slots()
        for slot, meta in list(self.files.items()):
            if self.is_expired(meta):
                await self._delete(slot)

    async def _delete(self, slot: str) -> None:
        meta = self.files.pop(slot, None)
        if meta is not None:
            self._release(meta.owner, meta.size)
            await asyncio.to_thread(shutil.rmtree, self.root / slot, True)

    # ------------------------------------------------------------------ HTTP
    async def handle(self, request: HttpRequest) -> HttpResponse:
        slot, _, raw_name = request.subpath.partition("/")
        raw_name = raw_name.split("?", 1)[0]
        name = unquote(raw_name, errors="strict") if raw_name else ""
        if request.method == "OPTIONS":
            return HttpResponse(204, dict(CORS))
        if not SLOT_ID.fullmatch(slot) or not name or "/" in name:
            return _text(404, "Not found.")  # also every path-traversal attempt
        if request.method == "PUT":
            return await self._put(request, slot, name)
        if request.method in ("GET", "HEAD"):
            return await self._get(request, slot, name)
        return _text(405, "Method not allowed.", {"Allow": "GET, HEAD, PUT, OPTIONS"})

    async def _put(self, request: HttpRequest, slot: str, name: str) -> HttpResponse:
        pending = self.pending.get(slot)
        expires = request.query.get("expires", "")
        token = request.query.get("token", "")
        if (
            pending is None
            or pending.filename != name
            or not (expires.isascii() and expires.isdigit())
            or not mac_matches(
                slot_mac(self.secret, slot, name, pending.size, pending.content_type, int(expires)),
                token,
            )
        ):
            if slot in self.files:
                return _text(409, "This slot is already used.")
            return _text(403, "This upload URL is not valid.")
        if self.clock.time() > int(expires):
            return _text(403, "This upload URL has expired.")
        if slot in self._uploading:
            return _text(409, "This slot is being uploaded.")
        length = request.content_length
        if length is None:
            return _text(411, "Content-Length is required.")
        if length > pending.size:
            return _text(413, f"The slot is for {pending.size} bytes.")
        if length != pending.size:
            return _text(400, f"The slot is for {pending.size} bytes.")
        content_type = normalise_content_type(request.headers.get("content-type"))
        if content_type != pending.content_type:
            return _text(400, f"The slot is for {pending.content_type}.")
        self._uploading.add(slot)
        try:
            written = await self._receive(request, slot, pending)
        finally:
            self._uploading.discard(slot)
        if written != pending.size:
            return _text(400, "The upload ended early.")
        self.pending.pop(slot, None)
        self.files[slot] = FileMeta(
            pending.filename, pending.size, pending.content_type, pending.owner, self.clock.time()
        )
        await asyncio.to_thread(self._write_meta, slot)
        return _text(201, "Created.")

    async def _receive(self, request: HttpRequest, slot: str, pending: PendingSlot) -> int:
        """Stream the body into ``data.part``; rename it into place when complete. Returns
        the bytes received (short when the client stopped early; the part is removed)."""
        folder = self.root / slot
        await asyncio.to_thread(folder.mkdir, 0o700, True, True)
        part = folder / "data.part"
        f: IO[bytes] = await asyncio.to_thread(part.open, "wb")
        written = 0
        batch = bytearray()
        try:
            async for chunk in request.body:
                written += len(chunk)
                if written > pending.size:
                    break
                batch += chunk
                if len(batch) >= WRITE_BATCH:
                    await asyncio.to_thread(f.write, bytes(batch))
                    batch.clear()
            if batch and written <= pending.size:
                await asyncio.to_thread(f.write, bytes(batch))
        except Exception as exc:  # the client went away, or the disk failed
            log.info("upload to %s failed: %s", slot, exc)
            written = -1
        finally:
            await asyncio.to_thread(f.close)
        if written != pending.size:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            return written
        await asyncio.to_thread(part.rename, folder / "data")
        return written

    def _write_meta(self, slot: str) -> None:
        folder = self.root / slot
        tmp = folder / "meta.json.tmp"
        tmp.write_text(json.dumps(asdict(self.files[slot])))
        tmp.rename(folder / "meta.json")

    async def _get(self, request: HttpRequest, slot: str, name: str) -> HttpResponse:
        meta = self.files.get(slot)
        if meta is None or meta.filename != name:
            return _text(404, "Not found.")
        if self.is_expired(meta):
            await self._delete(slot)
            return _text(404, "Not found.")
        headers = {**CORS, **safe_headers(meta.filename, meta.content_type)}
        try:
            wanted = parse_range(request.headers.get("range"), meta.size)
        except RangeNotSatisfiable:
            headers["Content-Range"] = f"bytes */{meta.size}"
            return _text(416, "Range not satisfiable.", headers)
        status, start, length = 200, 0, meta.size
        if wanted is not None:
            status, start, length = 206, wanted.start, wanted.length
            headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{meta.size}"
        headers["Content-Length"] = str(length)
        body = b"" if request.method == "HEAD" else self._read(slot, start, length)
        return HttpResponse(status, headers, body)

    async def _read(self, slot: str, start: int, length: int) -> AsyncIterator[bytes]:
        f: IO[bytes] = await asyncio.to_thread((self.root / slot / "data").open, "rb")
        try:
            await asyncio.to_thread(f.seek, start)
            while length > 0:
                chunk = await asyncio.to_thread(f.read, min(READ_CHUNK, length))
                if not chunk:
                    break
                length -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(f.close)
