"""The pure rules of HTTP File Upload: what a filename and a content type may be, the HMAC
that authorises a PUT, which part of a file a Range header asks for, and how a download is
presented to a browser. No IO here; everything is unit-tested without sockets."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

MAX_FILENAME_BYTES = 255
SLOT_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
CONTENT_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=({_TOKEN}|\"[^\"\\\r\n]*\"))*", re.ASCII
)
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Shown in the browser; everything else downloads (text/html from our origin could run script).
INLINE_TYPES = ("image/", "audio/", "video/", "text/plain")
INLINE_EXCLUDED = ("image/svg+xml",)  # SVG carries script


def check_filename(name: str) -> str | None:
    """Why ``name`` cannot be an upload's file name, or None when it can: not empty, no path
    separators, no control characters, not '.' or '..', at most 255 UTF-8 bytes."""
    if not name.strip():
        return "the file name is empty"
    if "/" in name or "\\" in name:
        return "the file name contains a path separator"
    if name in (".", ".."):
        return "the file name is not a name"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return "the file name contains control characters"
    if len(name.encode()) > MAX_FILENAME_BYTES:
        return "the file name is longer than 255 bytes"
    return None


def normalise_content_type(value: str | None) -> str | None:
    """The content type to bind to a slot (lowercase type/subtype), or None when malformed."""
    if value is None or not value.strip():
        return DEFAULT_CONTENT_TYPE
    value = value.strip()
    if not CONTENT_TYPE.fullmatch(value) or len(value) > 255:
        return None
    kind, sep, params = value.partition(";")
    return kind.lower() + sep + params


def slot_mac(
    secret: bytes, slot: str, filename: str, size: int, content_type: str, expires: int
) -> str:
    """The HMAC-SHA256 that binds a PUT URL to its slot: id, name, size, type and expiry."""
    message = "\0".join((slot, filename, str(size), content_type, str(expires)))
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def mac_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class RangeNotSatisfiable(Exception):
    """The Range header names no byte of the file (RFC 9110 §15.5.17: 416)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range a ``Range`` header asks for (RFC 9110 §14.2), or None to send
    the whole file (no header, another unit, several ranges, or a malformed one: a server
    may ignore Range). Raises :class:`RangeNotSatisfiable` for a range outside the file."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not spec.isascii() or not dash:
        return None
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(size - suffix, 0), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid: ignored (RFC 9110 §14.1.1)
    if start >= size:
        raise RangeNotSatisfiable
    return ByteRange(start, min(end, size - 1))


def content_disposition(filename: str, content_type: str) -> str:
    """``inline`` for media a browser shows safely, ``attachment`` for the rest; the name in
    RFC 6266 / RFC 8187 form plus an ASCII fallback."""
    kind = content_type.split(";", 1)[0].strip().lower()
    inline = kind.startswith(INLINE_TYPES) and kind not in INLINE_EXCLUDED
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    disposition = "inline" if inline else "attachment"
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def safe_headers(filename: str, content_type: str) -> dict[str, str]:
    """What every download carries: no sniffing, no script, shown or saved by its type."""
    return {
        "Content-Type": content_type,
        "Content-Disposition": content_disposition(filename, content_type),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
        "Accept-Ranges": "bytes",
    }
