"""Salon's log lines: one line per record, key=value (or JSON), with a connection id.

Every connection gets an id when it starts (:func:`new_connection_id`: ``c2s-17``,
``ws-18``, ``bosh-19``, ``s2sin-3``, ``s2sout-4``, ``comp-5``) and logs, once, which peer it
is. The network side sets the :data:`CONNECTION` context variable to that id whenever it
handles the connection (reading its bytes, an HTTP request of its BOSH session, its
WebSocket's task); tasks and timers started from there inherit it (asyncio copies the
context), so every record emitted on the connection's behalf, in the core and in modules
too, carries ``conn=<id>``. A record logged with ``extra={"conn": ...}`` says it
explicitly. ``server.log_levels`` sets a level per logger name ("salon.net.s2s",
"salon.modules.muc").
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

__all__ = ["CONNECTION", "OneLineFormatter", "configure", "new_connection_id"]

CONNECTION: ContextVar[str | None] = ContextVar("salon_connection", default=None)
"""The id of the connection being handled, if any."""

_ids = itertools.count(1)


def new_connection_id(kind: str) -> str:
    """A new connection's id, unique for the life of the process: ``<kind>-<n>``."""
    return f"{kind}-{next(_ids)}"


def _stamp_records() -> None:
    """Give every record the handled connection's id (``record.conn_id``), whatever
    handler formats it later (this one, pytest's, a JSON shipper's)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "salon_stamps", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.conn_id = CONNECTION.get()
        return record

    factory.salon_stamps = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_stamp_records()


class OneLineFormatter(logging.Formatter):
    def __init__(self, fmt: str = "text") -> None:
        super().__init__()
        self.kind = fmt

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        stamp += f".{int(record.msecs):03d}Z"
        fields: dict[str, str] = {
            "ts": stamp,
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        conn = getattr(record, "conn", None) or getattr(record, "conn_id", None)
        if conn is not None:
            fields["conn"] = str(conn)
        fields["msg"] = message.replace("\n", " | ")
        if self.kind == "json":
            return json.dumps(fields, ensure_ascii=False)
        return " ".join(
            f"{key}={json.dumps(value, ensure_ascii=False)}" if key == "msg" else f"{key}={value}"
            for key, value in fields.items()
        )


_configured: set[str] = set()


def configure(level: str, levels: Mapping[str, str], fmt: str = "text") -> None:
    """(Re)configure the root logger; safe to call again on reload."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "salon", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler.salon = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(OneLineFormatter(fmt))
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for name in _configured - set(levels):
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name, sub_level in levels.items():
        logging.getLogger(name).setLevel(getattr(logging, sub_level.upper(), logging.INFO))
    _configured.clear()
    _configured.update(levels)
