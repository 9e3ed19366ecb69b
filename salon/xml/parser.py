"""Incremental, hardened, sans-IO parser for XMPP streams (RFC 6120 §4 and §11).

Bytes go in with :meth:`XmlStreamParser.feed`; events come out: a :class:`StreamOpened` for the
root ``<stream:stream>`` start tag, one :class:`~salon.xml.element.Element` tree per complete
top-level child (a stanza, ``<stream:features/>``, ``<auth/>`` …) and a :class:`StreamClosed`
for ``</stream:stream>``.

It runs on the standard library's expat with namespace processing. Whatever RFC 6120 §11 calls
"restricted XML" (comments, processing instructions, DTDs, entity declarations and references
to undeclared entities) ends the stream, as do malformed XML, encodings other than UTF-8,
unbound prefixes, oversized stanzas and deep nesting. Any failure surfaces as a
:class:`~salon.errors.StreamError` naming the RFC 6120 §4.9.3 condition, and leaves the parser
dead. No other exception type ever leaves :meth:`XmlStreamParser.feed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NoReturn
from xml.parsers import expat

from salon.errors import StreamError, StreamErrorCondition
from salon.xml.element import Element
from salon.xml.serializer import escape_attr

__all__ = ["ParserEvent", "StreamClosed", "StreamOpened", "XmlStreamParser"]

# Expat reports a namespaced name as ``uri}local``: with "}" as the separator an attribute's
# Clark key is just "{" + name. Expat itself rejects a namespace URI containing the separator
# (a syntax error), so the split is never ambiguous.
_SEP: Final = "}"
_XML_WHITESPACE: Final = " \t\r\n"
# Name caches (ours and expat's intern dict) are emptied at a stanza boundary past this size, so
# a long-lived stream full of made-up names cannot grow them without bound.
_MAX_CACHED_NAMES: Final = 4096
# First two bytes of a stream that is certainly not UTF-8: UTF-16/32 byte order marks and the
# NUL bytes of unmarked UTF-16/32 ("<" is 0x3C 0x00 or 0x00 0x3C).
_NOT_UTF8_HEADS: Final = (b"\xfe\xff", b"\xff\xfe", b"\x00")
# expat keeps every element and attribute name it meets in tables of its own, for the life of
# the expat parser: a busy stream that keeps inventing names would grow them without bound. A
# parser that has read this many bytes is replaced at the next stanza boundary (as an idle one
# is by hibernate()), so those tables stay in proportion to this, not to the stream's length.
_RENEW_AFTER_BYTES: Final = 1 << 20

_Condition = StreamErrorCondition


def _expat_codes(*names: str) -> list[int]:
    """Numeric expat error codes for the named ``XML_ERROR_*`` constants this expat knows."""
    errors = expat.errors
    return [errors.codes[getattr(errors, name)] for name in names if hasattr(errors, name)]


_CONDITION_BY_EXPAT_CODE: Final[dict[int, StreamErrorCondition]] = {
    **dict.fromkeys(
        _expat_codes(
            "XML_ERROR_UNDEFINED_ENTITY",
            "XML_ERROR_PARAM_ENTITY_REF",
            "XML_ERROR_RECURSIVE_ENTITY_REF",
            "XML_ERROR_ASYNC_ENTITY",
            "XML_ERROR_BINARY_ENTITY_REF",
            "XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF",
            "XML_ERROR_EXTERNAL_ENTITY_HANDLING",
            "XML_ERROR_ENTITY_DECLARED_IN_PE",
            "XML_ERROR_NOT_STANDALONE",
            "XML_ERROR_AMPLIFICATION_LIMIT_BREACH",
        ),
        _Condition.RESTRICTED_XML,
    ),
    **dict.fromkeys(
        _expat_codes(
            "XML_ERROR_UNBOUND_PREFIX",
            "XML_ERROR_UNDECLARING_PREFIX",
            "XML_ERROR_RESERVED_PREFIX_XML",
            "XML_ERROR_RESERVED_PREFIX_XMLNS",
            "XML_ERROR_RESERVED_NAMESPACE_URI",
        ),
        _Condition.BAD_NAMESPACE_PREFIX,
    ),
    **dict.fromkeys(
        _expat_codes("XML_ERROR_UNKNOWN_ENCODING", "XML_ERROR_INCORRECT_ENCODING"),
        _Condition.UNSUPPORTED_ENCODING,
    ),
}


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The root element's start tag arrived."""

    tag: str
    """Local name of the root element, normally ``stream``."""
    ns: str
    """Namespace of the root element, normally ``http://etherx.jabber.org/streams``."""
    attrs: dict[str, str]
    """Attributes; namespaced ones (``xml:lang``) in Clark notation. No ``xmlns`` entries."""
    default_ns: str
    """The default namespace declared on the root (``jabber:client`` …), or ``""``."""


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The root element's end tag (``</stream:stream>``) arrived."""


ParserEvent = StreamOpened | Element | StreamClosed


class _RootClosed(Exception):
    """Raised from the root's end handler to make expat drop the rest of the chunk."""


def _restricted(construct: str) -> Callable[..., NoReturn]:
    """An expat handler that rejects ``construct`` as restricted XML (RFC 6120 §11.1)."""

    def reject(*_args: object) -> NoReturn:
        raise StreamError(_Condition.RESTRICTED_XML, f"{construct} are not allowed")

    return reject


def _clark_attrs(attrs: dict[str, str]) -> dict[str, str]:
    """``attrs`` with expat's ``uri}local`` keys rewritten to Clark ``{uri}local``."""
    for key in attrs:
        if _SEP in key:
            return {("{" + k if _SEP in k else k): v for k, v in attrs.items()}
    return attrs


def _on_xml_decl(_version: str, encoding: str | None, _standalone: int) -> None:
    if encoding is not None and encoding.lower() != "utf-8":
        raise StreamError(_Condition.UNSUPPORTED_ENCODING, f"encoding {encoding!r} is not UTF-8")


_SHARED_INTERNED: dict[str, str] = {}
_SHARED_NAMES: dict[str, tuple[str, str]] = {}
_TEXT_BUFFER_CHARS = 1024


def _resume_header(declarations: dict[str, str], ns: str, tag: str) -> bytes | None:
    """A start tag equal to the stream root for what follows: same qualified name (so the
    closing tag matches) and the same namespace declarations. None when the root's prefix is
    ambiguous (then the stream never hibernates)."""
    prefixes = [p for p, uri in declarations.items() if uri == ns]
    if len(prefixes) != 1:
        return None
    qname = f"{prefixes[0]}:{tag}" if prefixes[0] else tag
    parts = [f"<{qname}"]
    for prefix, uri in declarations.items():
        name = f"xmlns:{prefix}" if prefix else "xmlns"
        parts.append(f" {name}='{escape_attr(uri)}'")
    parts.append(">")
    return "".join(parts).encode()


def _ends_root(data: bytes, resume_header: bytes | None) -> bool:
    """Whether ``data`` is only the end tag of the root whose start tag ``resume_header``
    repeats (whitespace around it allowed); anything else is left to expat."""
    if resume_header is None or not data.lstrip(b" \t\r\n").startswith(b"</"):
        return False
    qname = resume_header[1:].split(b" ", 1)[0].rstrip(b">")
    return data.strip(b" \t\r\n") == b"</" + qname + b">"


class XmlStreamParser:
    """Turns the bytes of one XMPP stream into :data:`ParserEvent` objects.

    Depth counts from the stream root (depth 0): a stanza is at depth 1, its children at depth
    2, and an element deeper than ``max_depth`` is a policy violation. A top-level element is a
    policy violation once more than ``max_stanza_bytes`` bytes have arrived since its start tag
    began, checked when it ends and after every :meth:`feed` (its own end tag is not counted).
    Bytes that have not yet formed any event count too, so a start tag or text that never ends
    is cut off as well; within a single ``feed`` the overshoot is bounded by the chunk size.
    """

    __slots__ = (
        "_closed",
        "_default_ns",
        "_error",
        "_events",
        "_fed",
        "_head",
        "_interned",
        "_mark",
        "_max_depth",
        "_max_stanza_bytes",
        "_names",
        "_parser",
        "_resume_header",
        "_root_ns",
        "_stack",
        "_text",
    )

    def __init__(self, *, max_stanza_bytes: int = 262144, max_depth: int = 32) -> None:
        if max_stanza_bytes < 1 or max_depth < 1:
            raise ValueError("max_stanza_bytes and max_depth must be positive")
        self._max_stanza_bytes = max_stanza_bytes
        self._max_depth = max_depth
        self.reset()

    # public -----------------------------------------------------------------
    def reset(self) -> None:
        """Start over with a fresh expat parser, as a stream restart requires (RFC 6120 §4.3.3).

        Everything is forgotten, including a previous error.
        """
        # expat interns every element and attribute name it reports in _interned; _names maps
        # an element's expat name to its (ns, tag). Both are shared by every parser of the
        # process (names repeat across streams; per-connection copies cost memory per session)
        # and emptied when they grow past _MAX_CACHED_NAMES.
        self._interned: dict[str, str] = _SHARED_INTERNED
        self._names: dict[str, tuple[str, str]] = _SHARED_NAMES
        self._parser: expat.XMLParserType | None = self._new_expat_parser()
        self._root_ns: dict[str, str] = {}  # namespace declarations of the stream root
        self._resume_header: bytes | None = None  # set once the root is open
        self._events: list[ParserEvent] = []
        self._stack: list[Element] = []  # the open stanza and its open descendants
        self._text: list[str] = []  # text for _stack[-1] not yet appended to its children
        self._default_ns = ""
        self._fed = 0  # bytes given to this expat parser so far
        self._mark = 0  # byte offset where the current top-level item began
        self._head = b""  # the stream's first bytes, kept until two have arrived
        self._closed = False
        self._error: StreamError | None = None

    def feed(self, data: bytes) -> list[ParserEvent]:
        """Parse the next chunk of the stream and return the events it completed.

        Raises :class:`StreamError` on any violation, and again on every later call.
        """
        if self._error is not None:
            raise self._error.with_traceback(None)
        if self._closed:
            return []
        if len(self._head) < 2:
            self._check_head(data)
        parser = self._parser
        if parser is None:
            if _ends_root(data, self._resume_header):
                # A hibernated stream that is closing: no parser is woken only to be freed
                # (after a mass disconnect that churned the allocator, and the process kept it)
                self._closed = True
                return [StreamClosed()]
            parser = self._wake()
        self._fed += len(data)
        try:
            parser.Parse(data, False)
        except _RootClosed:
            pass
        except StreamError as exc:
            self._fail(exc)
        except expat.ExpatError as exc:
            condition = _CONDITION_BY_EXPAT_CODE.get(exc.code, _Condition.NOT_WELL_FORMED)
            self._fail(StreamError(condition, str(exc)))
        except Exception as exc:  # a bug: still honour "only StreamError ever leaves feed()"
            self._fail(StreamError(_Condition.INTERNAL_SERVER_ERROR, repr(exc)))
        if not self._closed:
            self._check_size()
            if self._fed > _RENEW_AFTER_BYTES:
                self.hibernate()  # the next feed wakes a fresh expat parser
        events = self._events
        self._events = []
        return events

    def hibernate(self) -> bool:
        """Free the expat parser of an idle stream, between stanzas (True when done).

        An expat parser costs about 10 KiB; most sessions are silent most of the time. Between
        stanzas the only state a stream has is the root's namespace declarations, so the next
        :meth:`feed` primes a new parser with an equivalent synthetic root and goes on.
        """
        parser = self._parser
        if parser is None:
            return True
        if (
            self._resume_header is None
            or self._stack
            or self._closed
            or self._error is not None
            or parser.CurrentByteIndex != self._fed  # an incomplete token is buffered
        ):
            return False
        self._parser = None
        return True

    def _wake(self) -> expat.XMLParserType:
        assert self._resume_header is not None
        self._parser = parser = self._new_expat_parser()
        parser.StartNamespaceDeclHandler = None
        parser.StartElementHandler = self._on_resumed_root
        parser.EndElementHandler = self._on_end
        parser.CharacterDataHandler = self._on_text
        parser.Parse(self._resume_header, False)
        self._fed = self._mark = len(self._resume_header)
        return parser

    def _on_resumed_root(self, _name: str, _attrs: dict[str, str]) -> None:
        # The synthetic root of a woken parser is not reported; stanzas follow.
        assert self._parser is not None
        self._parser.StartElementHandler = self._on_start

    # setup ------------------------------------------------------------------
    def _new_expat_parser(self) -> expat.XMLParserType:
        parser = expat.ParserCreate(
            encoding="UTF-8", namespace_separator=_SEP, intern=self._interned
        )
        # expat >= 2.6 may hold back a complete final token until more data arrives; a stream
        # must deliver every stanza as soon as its last byte is in.
        set_deferral = getattr(parser, "SetReparseDeferralEnabled", None)
        if set_deferral is not None:
            set_deferral(False)
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        # Text arrives in pieces of at most buffer_size characters and is joined in _text; a
        # small buffer keeps the per-connection memory down (expat's default is 8 KiB).
        parser.buffer_size = _TEXT_BUFFER_CHARS
        parser.buffer_text = True
        parser.XmlDeclHandler = _on_xml_decl
        parser.CommentHandler = _restricted("comments")
        parser.ProcessingInstructionHandler = _restricted("processing instructions")
        parser.StartDoctypeDeclHandler = _restricted("document type declarations")
        parser.EntityDeclHandler = _restricted("entity declarations")
        parser.StartNamespaceDeclHandler = self._on_root_ns_decl
        parser.StartElementHandler = self._on_root_start
        return parser

    # expat handlers -----------------------------------------------------------
    def _on_root_ns_decl(self, prefix: str | None, uri: str | None) -> None:
        if prefix is None:
            self._default_ns = uri or ""
        self._root_ns[prefix or ""] = uri or ""

    def _on_root_start(self, name: str, attrs: dict[str, str]) -> None:
        ns, _, tag = name.rpartition(_SEP)
        parser = self._parser
        assert parser is not None
        parser.StartNamespaceDeclHandler = None
        parser.StartElementHandler = self._on_start
        parser.EndElementHandler = self._on_end
        parser.CharacterDataHandler = self._on_text
        self._resume_header = _resume_header(self._root_ns, ns, tag)
        self._events.append(StreamOpened(tag, ns, _clark_attrs(attrs), self._default_ns))

    def _on_start(self, name: str, attrs: dict[str, str]) -> None:
        stack = self._stack
        if stack:
            if len(stack) >= self._max_depth:
                raise StreamError(
                    _Condition.POLICY_VIOLATION, f"elements nested deeper than {self._max_depth}"
                )
            if self._text:
                stack[-1].children.append("".join(self._text))
                self._text.clear()
        else:
            self._mark = self._byte_index()
        split = self._names.get(name)
        if split is None:
            ns, _, tag = name.rpartition(_SEP)
            split = self._names[name] = (ns, tag)
        element = Element(split[1], split[0], _clark_attrs(attrs) if attrs else attrs)
        if stack:
            stack[-1].children.append(element)
        stack.append(element)

    def _on_end(self, _name: str) -> None:
        stack = self._stack
        if not stack:
            self._closed = True
            self._events.append(StreamClosed())
            raise _RootClosed
        element = stack.pop()
        if self._text:
            element.children.append("".join(self._text))
            self._text.clear()
        if not stack:
            self._stanza_done(element)

    def _on_text(self, data: str) -> None:
        if self._stack:
            self._text.append(data)
        elif data.strip(_XML_WHITESPACE):
            raise StreamError(_Condition.BAD_FORMAT, "text outside of any stanza")

    # helpers ----------------------------------------------------------------
    def _byte_index(self) -> int:
        """Where expat is in the input (only asked while a parser exists)."""
        parser = self._parser
        assert parser is not None
        return parser.CurrentByteIndex

    def _stanza_done(self, stanza: Element) -> None:
        if self._byte_index() - self._mark > self._max_stanza_bytes:
            raise self._too_big()
        self._events.append(stanza)
        if len(self._interned) > _MAX_CACHED_NAMES:
            self._interned.clear()
            self._names.clear()

    def _check_size(self) -> None:
        """After a feed: fail if the open stanza, or the unparsed tail, is already too big."""
        if not self._stack:
            # Between stanzas expat has consumed everything but an incomplete token; after
            # Parse() returns, CurrentByteIndex is where that token (or the data) begins.
            self._mark = max(self._mark, self._byte_index())
        if self._fed - self._mark > self._max_stanza_bytes:
            self._fail(self._too_big())

    def _check_head(self, data: bytes) -> None:
        self._head = head = (self._head + data[:2])[:2]
        if head.startswith(_NOT_UTF8_HEADS) or head[1:] == b"\x00":
            self._fail(StreamError(_Condition.UNSUPPORTED_ENCODING, "the stream is not UTF-8"))

    def _too_big(self) -> StreamError:
        return StreamError(
            _Condition.POLICY_VIOLATION, f"stanza larger than {self._max_stanza_bytes} bytes"
        )

    def _fail(self, error: StreamError) -> NoReturn:
        self._error = error
        self._events = []
        self._stack = []
        self._text = []
        raise error
