"""XEP-0363: HTTP File Upload, at ``upload.<domain>``.

A user asks the service for a slot (file name, size, content type); the service answers
with a PUT URL and a GET URL on Salon's own web server (both the HTTP and HTTPS ports serve
them; the URL names the HTTPS port, or ``http.public_url``). The PUT URL carries an expiry
and an HMAC over the slot's id, name, size, type and expiry (``rules.slot_mac``); the web
server refuses any PUT whose URL, length or type does not match (403, 413, 400). Files stream
to disk under ``<data_dir>/<path>/<service domain>/`` and expire after ``expire_after``
seconds of the host's clock. Each user has a ``quota`` of bytes stored plus bytes promised
to open slots; past it a slot request gets ``resource-constraint`` (type wait) with a
``<retry stamp=.../>`` naming when bytes come back (XEP-0363 §4). Each user may also be
granted at most ``daily_quota`` bytes of slots per UTC day of the host's clock; past it the
retry stamp names the next midnight.

The module serves HTTP through the ``HTTP_ROUTE`` item (``salon.core.web``): it never
imports the web server, and the web server publishes its base URL as ``HTTP_BASE_URL``.
"""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import quote

from pydantic import Field, field_validator

from salon.core.items import DISCO_ITEM, HTTP_BASE_URL, HTTP_ROUTE, DiscoItem, Identity
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.session import C2SSession
from salon.core.web import HttpRoute
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.modules.disco import info_query
from salon.modules.upload.files import FileStore, PendingSlot
from salon.modules.upload.quota import next_day, xep0082_stamp
from salon.modules.upload.rules import check_filename, normalise_content_type, slot_mac
from salon.namespaces import NS_DATA_FORMS, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_HTTP_UPLOAD
from salon.xml.element import Element
from salon.xml.stanza import error_reply, iq_result

MAX_PENDING_SLOTS = 32  # open slots per user


class QuotaReached(Exception):
    """A quota refuses the slot; ``retry_at`` is the clock time it may allow it again."""

    def __init__(self, text: str, retry_at: float | None) -> None:
        super().__init__(text)
        self.text = text
        self.retry_at = retry_at


class UploadOptions(ModuleOptions):
    domain: str = Field(
        "", description="The service's domain (empty: 'upload.' followed by the host's domain)."
    )
    path: str = Field(
        "upload",
        min_length=1,
        description="Folder for uploaded files, relative to server.data_dir.",
    )
    url_path: str = Field(
        "/upload", description="Where the web server serves uploads (a URL path)."
    )
    max_file_size: int = Field(
        104857600, ge=1, description="Largest file a user may upload, in bytes."
    )
    quota: int = Field(
        1073741824,
        ge=1,
        description="Bytes each user may have stored at once (files not yet expired).",
    )
    daily_quota: int = Field(
        524288000,
        ge=0,
        description="Bytes each user may be granted slots for per day (UTC); 0: no daily limit.",
    )
    expire_after: float = Field(
        604800.0, gt=0, description="Seconds an uploaded file is kept (default one week)."
    )
    slot_lifetime: float = Field(
        300.0, gt=0, description="Seconds a PUT URL stays valid after the slot is given."
    )

    @field_validator("url_path")
    @classmethod
    def _check_url_path(cls, value: str) -> str:
        path = value.rstrip("/")
        if not value.startswith("/") or not path or any(c in value for c in " ?#%"):
            raise ValueError(f"{value!r} is not a URL path such as '/upload'")
        return path


class Upload(Module[UploadOptions]):
    name = "upload"
    specs = (Spec("XEP-0363", "1.1.0"),)
    depends = ("disco",)

    def setup(self) -> None:
        self.service = self.options.domain or f"upload.{self.domain}"
        self.prefix = f"{self.options.url_path}/{self.service}/"
        root = self.host.data_path / self.options.path / self.service
        self.store = FileStore(
            root,
            secrets.token_bytes(32),
            self.clock,
            self.options.expire_after,
            self.options.daily_quota,
        )
        self.serve_domain(self.service, self)
        self.add_item(DISCO_ITEM, DiscoItem(jid=self.service, name="HTTP File Upload"))
        self.add_item(HTTP_ROUTE, HttpRoute(self.prefix, self.store.handle, self.name))
        interval = min(self.options.expire_after, self.options.slot_lifetime, 3600.0)
        self.every(interval, self.store.sweep)

    async def start(self) -> None:
        await asyncio.to_thread(self.store.load)

    # ------------------------------------------------------------------ XMPP
    async def receive(
        self, stanza: Element, origin: C2SSession | None, sender: JID, to: JID
    ) -> None:
        if stanza.tag != "iq":
            if stanza.tag == "message":
                raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return  # presence to the service: nothing to do
        iq_type = stanza.get("type")
        if iq_type in ("result", "error"):
            return
        payload = stanza.first_child
        if to.local is not None or to.resource is not None or payload is None:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        if iq_type == "get" and payload.ns == NS_DISCO_INFO and payload.tag == "query":
            reply = self._disco_info(stanza, payload)
        elif iq_type == "get" and payload.ns == NS_DISCO_ITEMS and payload.tag == "query":
            reply = iq_result(stanza, Element("query", NS_DISCO_ITEMS))
        elif iq_type == "get" and payload.ns == NS_HTTP_UPLOAD and payload.tag == "request":
            try:
                reply = self._slot(stanza, payload, sender)
            except QuotaReached as reached:
                reply = self._quota_reached(stanza, reached)
        else:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        self.router.deliver_reply(origin, reply)

    def _disco_info(self, stanza: Element, payload: Element) -> Element:
        if payload.get("node") is not None:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)
        form = Element("x", NS_DATA_FORMS, {"type": "result"})
        field = form.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
        field.add("value", text=NS_HTTP_UPLOAD)
        form.add("field", attrs={"var": "max-file-size"}).add(
            "value", text=str(self.options.max_file_size)
        )
        query = info_query(
            [Identity("store", "file", "HTTP File Upload")],
            [NS_DISCO_INFO, NS_DISCO_ITEMS, NS_HTTP_UPLOAD],
            [form],
        )
        return iq_result(stanza, query)

    def _slot(self, stanza: Element, request: Element, sender: JID) -> Element:
        """XEP-0363 §4: check the request, reserve the bytes, sign the PUT URL."""
        if sender.domain != self.domain or sender.local is None:
            raise StanzaError(
                StanzaErrorCondition.NOT_ALLOWED, f"only users of {self.domain} may upload"
            )
        filename = request.get("filename") or ""
        size_text = request.get("size") or ""
        problem = check_filename(filename)
        if problem is not None:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, problem)
        if not (size_text.isascii() and size_text.isdigit()):
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "size is not a whole number")
        size = int(size_text)
        content_type = normalise_content_type(request.get("content-type"))
        if content_type is None:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "malformed content-type")
        if size > self.options.max_file_size:
            return self._too_large(stanza)
        owner = str(sender.bare)
        now = self.clock.time()
        refusal = self._refusal(owner, size, now)
        if refusal is not None:
            self.store.forget_lapsed_slots()  # their bytes count no more, swept yet or not
            refusal = self._refusal(owner, size, now)
        if refusal is not None:
            raise refusal
        bases = self.host.items.get(HTTP_BASE_URL)
        if not bases:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE, "no web server")
        slot = secrets.token_urlsafe(24)
        expires = int(now + self.options.slot_lifetime)
        self.store.reserve(slot, PendingSlot(filename, size, content_type, owner, expires, now))
        get_url = f"{bases[0]}{self.prefix}{slot}/{quote(filename, safe='')}"
        mac = slot_mac(self.store.secret, slot, filename, size, content_type, expires)
        put_url = f"{get_url}?expires={expires}&token={mac}"
        element = Element("slot", NS_HTTP_UPLOAD)
        element.add("put", attrs={"url": put_url})
        element.add("get", attrs={"url": get_url})
        return iq_result(stanza, element)

    def _refusal(self, owner: str, size: int, now: float) -> QuotaReached | None:
        """Why ``owner`` may not have a slot of ``size`` bytes now (a quota), or None."""
        if self.store.usage.get(owner, 0) + size > self.options.quota:
            return QuotaReached(
                f"upload quota reached: {self.options.quota} bytes stored at once",
                self.store.next_release(owner),
            )
        if not self.store.daily.allows(owner, size, now):
            return QuotaReached(
                f"daily upload quota reached: {self.options.daily_quota} bytes a day",
                next_day(now),
            )
        if self.store.pending_count(owner) >= MAX_PENDING_SLOTS:
            return QuotaReached("too many open slots", self.store.next_release(owner, files=False))
        return None

    def _quota_reached(self, stanza: Element, reached: QuotaReached) -> Element:
        """XEP-0363 §4: resource-constraint (wait), with a retry stamp when the service knows
        when the quota will allow the request (a file expires, a slot lapses, a day begins)."""
        reply = error_reply(
            stanza,
            StanzaError(StanzaErrorCondition.RESOURCE_CONSTRAINT, reached.text, "wait"),
        )
        if reached.retry_at is not None:
            error = reply.find("error", stanza.ns)
            assert error is not None
            error.add("retry", NS_HTTP_UPLOAD, {"stamp": xep0082_stamp(reached.retry_at)})
        return reply

    def _too_large(self, stanza: Element) -> Element:
        reply = error_reply(
            stanza,
            StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE,
                f"the file is larger than {self.options.max_file_size} bytes",
            ),
        )
        error = reply.find("error", stanza.ns)
        assert error is not None
        too_large = error.add("file-too-large", NS_HTTP_UPLOAD)
        too_large.add("max-file-size", NS_HTTP_UPLOAD, text=str(self.options.max_file_size))
        return reply
