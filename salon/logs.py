"""Salon's log lines: one line per record, key=value (or JSON), with a connection id.

A record logged with ``extra={"conn": ...}`` (the network side passes the peer's
``ip:port``, unique per open connection) carries ``conn=``; ``server.log_levels`` sets a
level per logger name ("salon.net.s2s", "salon.modules.muc").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping

__all__ = ["OneLineFormatter", "configure"]


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
        conn = getattr(record, "conn", None)
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
