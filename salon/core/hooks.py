"""The event bus modules cooperate through: typed events, priorities, fault isolation.

Three kinds of event, fixed by the event's base class:

* ``Notification``: every handler runs, results are ignored.
* ``Dispatch``: handlers run in priority order until one returns ``HANDLED``.
* ``Fold``: each handler receives the accumulator and returns the new one.

Handlers may be plain functions or coroutine functions; which one is decided once at
registration so a sync handler costs no coroutine on the hot path. A plain function may also
return a coroutine when, this time, it has to wait (a cache miss): the bus awaits it. So a
check that is usually answered from memory (a blocklist, a roster item) costs no coroutine
for each of the thousands of presences a login storm routes. A handler that raises is
logged with its owner's name and the chain goes on: one module's bug stays local.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from types import CoroutineType
from typing import Any, Generic, TypeVar

from salon.errors import StanzaError, StanzaErrorCondition

log = logging.getLogger(__name__)

HANDLED = True


class Priority(IntEnum):
    GUARD = 100  # blocking, policy
    ARCHIVE = 50
    COPY = 25  # carbons
    DELIVER = 0
    FALLBACK = -100


class Event:
    """Base of every hook event."""

    __slots__ = ()


class Notification(Event):
    __slots__ = ()


class Dispatch(Event):
    __slots__ = ()


class Guard(Dispatch):
    """A Dispatch whose handlers decide whether a stanza may pass (blocking, privacy, rate
    limits). It fails closed: a handler that fails with anything but a ``StanzaError``
    stops the stanza with ``internal-server-error`` instead of letting it through unchecked."""

    __slots__ = ()


A = TypeVar("A")


class Fold(Event, Generic[A]):
    __slots__ = ()


E = TypeVar("E", bound=Event)
Handler = Callable[..., Any]


@dataclass(slots=True)
class _Registration:
    handler: Handler
    priority: int
    owner: str
    is_async: bool
    order: int


class HookBus:
    """Handlers per event class, kept sorted: higher priority first, ties in registration order."""

    def __init__(self) -> None:
        self._handlers: dict[type[Event], list[_Registration]] = {}
        # What fire() needs per event class, made when the handlers change (not per event):
        # the handlers in order, and whether the class is a Dispatch and a Guard.
        self._chains: dict[type[Event], tuple[tuple[_Registration, ...], bool, bool]] = {}
        self._counter = 0

    def _rebuild(self, event_type: type[Event]) -> None:
        regs = self._handlers.get(event_type)
        if not regs:
            self._chains.pop(event_type, None)
            return
        dispatch, guard = issubclass(event_type, Dispatch), issubclass(event_type, Guard)
        self._chains[event_type] = (tuple(regs), dispatch, guard)

    def add(
        self,
        event_type: type[Event],
        handler: Handler,
        priority: int = 0,
        owner: str = "core",
    ) -> Callable[[], None]:
        """Register ``handler``; returns a function that removes it again."""
        self._counter += 1
        reg = _Registration(
            handler, int(priority), owner, inspect.iscoroutinefunction(handler), self._counter
        )
        regs = self._handlers.setdefault(event_type, [])
        regs.append(reg)
        regs.sort(key=lambda r: (-r.priority, r.order))
        self._rebuild(event_type)

        def remove() -> None:
            current = self._handlers.get(event_type, [])
            if reg in current:
                current.remove(reg)
                self._rebuild(event_type)

        return remove

    def has_handlers(self, event_type: type[Event]) -> bool:
        return bool(self._handlers.get(event_type))

    async def fire(self, event: Event) -> bool:
        """Run the handlers of ``event``; returns True when a Dispatch handler handled it.

        ``StanzaError`` raised by a Dispatch handler propagates (the caller turns it into an
        error reply); any other exception is logged and the chain continues, except on a
        ``Guard`` event, where it becomes ``internal-server-error`` (fail closed).
        """
        chain = self._chains.get(type(event))
        if chain is None:
            return False
        regs, is_dispatch, is_guard = chain
        for reg in regs:  # a snapshot: handlers added or removed meanwhile count next time
            try:
                result = reg.handler(event)
                if reg.is_async or result.__class__ is CoroutineType:
                    result = await result
            except StanzaError:
                if is_dispatch:
                    raise
                log.exception("hook %s of %s raised", type(event).__name__, reg.owner)
                continue
            except Exception as exc:
                log.exception("hook %s of %s failed", type(event).__name__, reg.owner)
                if is_guard:
                    raise StanzaError(
                        StanzaErrorCondition.INTERNAL_SERVER_ERROR, "a policy check failed"
                    ) from exc
                continue
            if is_dispatch and result is HANDLED:
                return True
        return False

    async def fold(self, event: Fold[A], value: A) -> A:
        """Pass ``value`` through every handler of ``event`` in priority order."""
        for reg in tuple(self._handlers.get(type(event), ())):
            try:
                result = reg.handler(event, value)
                if reg.is_async:
                    result = await result
                value = result
            except Exception:
                log.exception("fold %s of %s failed", type(event).__name__, reg.owner)
        return value
