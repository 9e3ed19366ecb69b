"""The seam between modules that serve HTTP (file upload, later others) and Salon's web server.

A module registers an :class:`HttpRoute` as a host item (``self.add_item(HTTP_ROUTE, ...)``):
a path prefix and a handler that takes an :class:`HttpRequest` and returns an
:class:`HttpResponse`. Neither type knows aiohttp: the web server (``salon/net/http.py``)
translates, so a module never imports ``salon.net`` and its handler is tested like any other
coroutine. Bodies stream both ways as async iterables of bytes, so no upload or download has
to fit in memory.

Where the web server can be reached is published the other way, as host items of kind
``HTTP_BASE_URL`` (``https://example.org:5281``), added once it listens.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field


async def _no_body() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover  (makes this an async generator)


@dataclass(slots=True)
class HttpRequest:
    method: str  # "GET", "PUT", ... (upper case)
    path: str  # the whole path, decoded
    subpath: str  # what follows the route's prefix
    headers: Mapping[str, str]  # keys in lower case
    query: Mapping[str, str] = field(default_factory=dict)
    body: AsyncIterable[bytes] = field(default_factory=_no_body)
    content_length: int | None = None
    remote: str = ""  # the client's address
    is_secure: bool = False


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | AsyncIterable[bytes] = b""  # an iterable is streamed (Content-Length given)


HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """Requests whose path starts with ``prefix`` (which ends with '/') go to ``handler``."""

    prefix: str
    handler: HttpHandler = field(compare=False)
    name: str = ""  # who registered it, for logs
