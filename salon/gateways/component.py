"""The connecting side of XEP-0114: how a gateway shipped with Salon reaches the server.

``ComponentLink`` opens a ``jabber:component:accept`` stream to its domain, proves the shared
secret with ``<handshake>`` (SHA-1 of the stream id and the secret), then hands every stanza
it receives to the gateway's handler and sends the gateway's stanzas. Handlers run as tasks,
at most ``max_in_flight`` at once: past that the link stops reading, so a slow mail server
holds the stream back instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from salon.errors import StreamError
from salon.namespaces import NS_COMPONENT, NS_STREAM
from salon.stream.component import handshake_digest
from salon.xml.element import Element
from salon.xml.parser import StreamClosed, StreamOpened, XmlStreamParser
from salon.xml.serializer import STREAM_CLOSE, serialize, stream_header

log = logging.getLogger(__name__)

Handler = Callable[[Element], Awaitable[None]]


class ComponentError(Exception):
    """The server refused the component (bad secret, unknown domain) or the stream broke."""


class ComponentLink:
    def __init__(
        self,
        domain: str,
        secret: str,
        host: str,
        port: int,
        handler: Handler,
        *,
        max_stanza_size: int = 262144,
        max_in_flight: int = 32,
    ) -> None:
        self.domain = domain
        self.secret = secret
        self.host = host
        self.port = port
        self.handler = handler
        self.parser = XmlStreamParser(max_stanza_bytes=max_stanza_size)
        self.slots = asyncio.Semaphore(max_in_flight)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()
        self.closed = asyncio.Event()
        self._early: list[object] = []  # events read along with the handshake

    async def connect(self, timeout: float = 30.0) -> None:
        """Open the stream and finish the handshake, or raise ``ComponentError``."""
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(stream_header(NS_COMPONENT, to=self.domain, version=None, lang=None))
        try:
            async with asyncio.timeout(timeout):
                stream_id = await self._opened()
                digest = handshake_digest(stream_id, self.secret)
                self.writer.write(f"<handshake>{digest}</handshake>".encode())
                await self._handshake_reply()
        except TimeoutError:
            self.writer.close()
            raise ComponentError("the server did not finish the handshake in time") from None
        except ComponentError:
            self.writer.close()
            raise
        self.ready.set()

    async def _events(self) -> list[object]:
        assert self.reader is not None
        data = await self.reader.read(65536)
        if not data:
            raise ComponentError("the server closed the connection")
        try:
            return list(self.parser.feed(data))
        except StreamError as exc:
            raise ComponentError(f"the server's stream is broken: {exc}") from exc

    async def _opened(self) -> str:
        pending: list[object] = []
        while True:
            pending += await self._events()
            while pending:
                event = pending.pop(0)
                if isinstance(event, StreamOpened):
                    self._early = pending
                    return event.attrs.get("id", "")
                self._refused(event)

    async def _handshake_reply(self) -> None:
        pending = self._early
        while True:
            while pending:
                event = pending.pop(0)
                if isinstance(event, Element) and event.tag == "handshake":
                    self._early = pending
                    return
                self._refused(event)
            pending = await self._events()

    def _refused(self, event: object) -> None:
        if isinstance(event, Element) and event.tag == "error" and event.ns == NS_STREAM:
            condition = event.first_child.tag if event.first_child is not None else "unknown"
            raise ComponentError(f"the server refused the component: {condition}")
        if isinstance(event, StreamClosed):
            raise ComponentError("the server closed the stream")

    async def run(self) -> None:
        """Read stanzas until the stream ends; each goes to the handler."""
        try:
            for event in self._early:
                await self._dispatch(event)
            while True:
                for event in await self._events():
                    await self._dispatch(event)
        except ComponentError as exc:
            log.info("component %s: %s", self.domain, exc)
        finally:
            self.closed.set()
            if self.writer is not None:
                self.writer.close()

    async def _dispatch(self, event: object) -> None:
        if isinstance(event, StreamClosed):
            raise ComponentError("the server closed the stream")
        if not isinstance(event, Element):
            return
        if event.ns == NS_STREAM:
            self._refused(event)
            return
        await self.slots.acquire()
        task = asyncio.get_running_loop().create_task(self._handle(event))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, stanza: Element) -> None:
        try:
            await self.handler(stanza)
        except Exception:
            log.exception("component %s: a handler failed", self.domain)
        finally:
            self.slots.release()

    async def send(self, stanza: Element) -> None:
        """Send a stanza (in ``jabber:component:accept``), waiting while the socket is full."""
        if self.writer is None or self.closed.is_set():
            raise ComponentError("not connected")
        self.writer.write(serialize(stanza, NS_COMPONENT))
        await self.writer.drain()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.writer is not None and not self.writer.is_closing():
            with contextlib.suppress(ConnectionError):
                self.writer.write(STREAM_CLOSE)
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.closed.set()
