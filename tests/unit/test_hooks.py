"""Tests for salon.core.hooks: priorities, the three event kinds, fault isolation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from salon.core.hooks import HANDLED, Dispatch, Fold, Guard, HookBus, Notification, Priority
from salon.errors import StanzaError, StanzaErrorCondition


@dataclass(slots=True)
class Noticed(Notification):
    calls: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Asked(Dispatch):
    calls: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Collected(Fold[list[str]]):
    prefix: str = ""


def recorder(name: str, result: Any = None) -> Callable[[Any], Any]:
    """A sync handler that appends ``name`` to the event's calls and returns ``result``."""

    def handler(event: Any) -> Any:
        event.calls.append(name)
        return result

    return handler


def async_recorder(name: str, result: Any = None) -> Callable[[Any], Any]:
    async def handler(event: Any) -> Any:
        event.calls.append(name)
        return result

    return handler


def failing(exc: Exception) -> Callable[[Any], Any]:
    def handler(event: Any, *_: Any) -> Any:
        raise exc

    return handler


# ------------------------------------------------------------------ ordering
async def test_higher_priority_runs_first() -> None:
    bus = HookBus()
    bus.add(Noticed, recorder("deliver"), Priority.DELIVER)
    bus.add(Noticed, recorder("fallback"), Priority.FALLBACK)
    bus.add(Noticed, recorder("guard"), Priority.GUARD)
    bus.add(Noticed, recorder("archive"), Priority.ARCHIVE)
    bus.add(Noticed, recorder("custom"), 60)
    event = Noticed()
    await bus.fire(event)
    assert event.calls == ["guard", "custom", "archive", "deliver", "fallback"]


async def test_equal_priorities_run_in_registration_order() -> None:
    bus = HookBus()
    for name in ("first", "second", "third"):
        bus.add(Noticed, recorder(name), 10)
    bus.add(Noticed, recorder("late-but-high"), 11)
    bus.add(Noticed, recorder("fourth"), 10)
    event = Noticed()
    await bus.fire(event)
    assert event.calls == ["late-but-high", "first", "second", "third", "fourth"]


async def test_handlers_are_kept_per_event_type() -> None:
    bus = HookBus()
    bus.add(Noticed, recorder("noticed"))
    asked = Asked()
    assert await bus.fire(asked) is False
    assert asked.calls == []
    assert bus.has_handlers(Noticed)
    assert not bus.has_handlers(Asked)


# ------------------------------------------------------------------ kinds
async def test_dispatch_stops_at_the_first_handled() -> None:
    bus = HookBus()
    bus.add(Asked, recorder("declines"), 10)
    bus.add(Asked, recorder("takes it", HANDLED), 5)
    bus.add(Asked, recorder("never runs", HANDLED), 0)
    event = Asked()
    assert await bus.fire(event) is True
    assert event.calls == ["declines", "takes it"]


async def test_dispatch_nobody_handles_returns_false() -> None:
    bus = HookBus()
    bus.add(Asked, recorder("a"))
    bus.add(Asked, recorder("b", "truthy but not HANDLED"))
    event = Asked()
    assert await bus.fire(event) is False
    assert event.calls == ["a", "b"]


async def test_fire_without_handlers_returns_false() -> None:
    assert await HookBus().fire(Asked()) is False


async def test_notification_runs_every_handler_whatever_they_return() -> None:
    bus = HookBus()
    bus.add(Noticed, recorder("a", HANDLED), 2)
    bus.add(Noticed, recorder("b", HANDLED), 1)
    bus.add(Noticed, recorder("c"), 0)
    event = Noticed()
    assert await bus.fire(event) is False
    assert event.calls == ["a", "b", "c"]


async def test_fold_threads_the_value_in_priority_order() -> None:
    bus = HookBus()
    bus.add(Collected, lambda e, acc: [*acc, "low"], -5)
    bus.add(Collected, lambda e, acc: [*acc, e.prefix + "high"], 5)

    async def middle(event: Collected, acc: list[str]) -> list[str]:
        return [*acc, "middle"]

    bus.add(Collected, middle, 0)
    assert await bus.fold(Collected("x-"), ["start"]) == ["start", "x-high", "middle", "low"]


async def test_fold_without_handlers_returns_the_initial_value() -> None:
    initial = ["unchanged"]
    assert await HookBus().fold(Collected(), initial) is initial


async def test_sync_and_async_handlers_mix() -> None:
    bus = HookBus()
    bus.add(Noticed, async_recorder("async-high"), 2)
    bus.add(Noticed, recorder("sync"), 1)
    bus.add(Noticed, async_recorder("async-low"), 0)
    event = Noticed()
    await bus.fire(event)
    assert event.calls == ["async-high", "sync", "async-low"]


async def test_async_dispatch_handler_can_handle() -> None:
    bus = HookBus()
    bus.add(Asked, async_recorder("async", HANDLED), 1)
    bus.add(Asked, recorder("never"), 0)
    event = Asked()
    assert await bus.fire(event) is True
    assert event.calls == ["async"]


async def test_bound_method_handlers_work() -> None:
    class Module:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def on_event(self, event: Noticed) -> None:
            self.seen.append("async")

        def on_event_sync(self, event: Noticed) -> None:
            self.seen.append("sync")

    module = Module()
    bus = HookBus()
    bus.add(Noticed, module.on_event, 1)
    bus.add(Noticed, module.on_event_sync, 0)
    await bus.fire(Noticed())
    assert module.seen == ["async", "sync"]


# ------------------------------------------------------------------ faults
async def test_raising_handler_is_logged_and_the_chain_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = HookBus()
    bus.add(Noticed, recorder("before"), 2)
    bus.add(Noticed, failing(RuntimeError("boom")), 1, owner="buggy")
    bus.add(Noticed, recorder("after"), 0)
    event = Noticed()
    with caplog.at_level(logging.ERROR, logger="salon.core.hooks"):
        await bus.fire(event)
    assert event.calls == ["before", "after"]
    (record,) = caplog.records
    assert "buggy" in record.getMessage()
    assert "Noticed" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_raising_dispatch_handler_does_not_stop_dispatch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = HookBus()

    async def broken(event: Asked) -> bool:
        raise KeyError("oops")

    bus.add(Asked, broken, 1, owner="buggy")
    bus.add(Asked, recorder("fallback", HANDLED), 0)
    event = Asked()
    with caplog.at_level(logging.ERROR, logger="salon.core.hooks"):
        assert await bus.fire(event) is True
    assert event.calls == ["fallback"]
    assert any("buggy" in r.getMessage() for r in caplog.records)


async def test_stanza_error_from_a_dispatch_handler_propagates() -> None:
    bus = HookBus()
    bus.add(Asked, failing(StanzaError(StanzaErrorCondition.FORBIDDEN, "blocked")), 1)
    bus.add(Asked, recorder("never", HANDLED), 0)
    event = Asked()
    with pytest.raises(StanzaError) as info:
        await bus.fire(event)
    assert info.value.condition is StanzaErrorCondition.FORBIDDEN
    assert event.calls == []


async def test_stanza_error_from_a_notification_handler_is_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = HookBus()
    bus.add(Noticed, failing(StanzaError(StanzaErrorCondition.FORBIDDEN)), 1, owner="strict")
    bus.add(Noticed, recorder("after"), 0)
    event = Noticed()
    with caplog.at_level(logging.ERROR, logger="salon.core.hooks"):
        await bus.fire(event)
    assert event.calls == ["after"]
    assert any("strict" in r.getMessage() for r in caplog.records)


async def test_raising_fold_handler_keeps_the_value_so_far(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = HookBus()
    bus.add(Collected, lambda e, acc: [*acc, "a"], 2)
    bus.add(Collected, failing(ValueError("bad")), 1, owner="folder")
    bus.add(Collected, lambda e, acc: [*acc, "c"], 0)
    with caplog.at_level(logging.ERROR, logger="salon.core.hooks"):
        assert await bus.fold(Collected(), []) == ["a", "c"]
    assert any("folder" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ removal
async def test_remove_function_unregisters_the_handler() -> None:
    bus = HookBus()
    remove = bus.add(Noticed, recorder("gone"))
    bus.add(Noticed, recorder("stays"))
    remove()
    event = Noticed()
    await bus.fire(event)
    assert event.calls == ["stays"]
    remove()  # a second call is harmless
    assert bus.has_handlers(Noticed)


async def test_remove_only_removes_its_own_registration() -> None:
    bus = HookBus()
    handler = recorder("twice")
    remove_first = bus.add(Noticed, handler, 1)
    bus.add(Noticed, handler, 0)
    remove_first()
    event = Noticed()
    await bus.fire(event)
    assert event.calls == ["twice"]


async def test_removing_the_last_handler_leaves_none() -> None:
    bus = HookBus()
    remove = bus.add(Asked, recorder("x", HANDLED))
    remove()
    assert not bus.has_handlers(Asked)
    assert await bus.fire(Asked()) is False


async def test_handler_removing_itself_while_firing_does_not_skip_the_next() -> None:
    bus = HookBus()
    removers: list[Callable[[], None]] = []

    def once(event: Noticed) -> None:
        event.calls.append("once")
        removers[0]()

    removers.append(bus.add(Noticed, once, 1))
    bus.add(Noticed, recorder("next"), 0)
    first, second = Noticed(), Noticed()
    await bus.fire(first)
    await bus.fire(second)
    assert first.calls == ["once", "next"]
    assert second.calls == ["next"]


@dataclass(slots=True)
class Checked(Guard):
    calls: list[str] = field(default_factory=list)


@pytest.mark.parametrize("deferred", [False, True], ids=["at-once", "after-a-read"])
async def test_guard_fails_closed_when_a_check_breaks(deferred: bool) -> None:
    """A policy check that breaks (storage down, a bug) stops the stanza with
    internal-server-error; the later handlers, which would deliver it, never run. The same
    when the check first had to wait (a plain handler returning a coroutine)."""
    bus = HookBus()

    def broken(event: Checked) -> None:
        event.calls.append("blocking")
        raise OSError("storage is gone")

    async def read_then_break(event: Checked) -> None:
        broken(event)

    def check(event: Checked) -> Any:
        return read_then_break(event) if deferred else broken(event)

    bus.add(Checked, check, Priority.GUARD)
    bus.add(Checked, recorder("deliver", HANDLED))
    event = Checked()
    with pytest.raises(StanzaError) as raised:
        await bus.fire(event)
    assert raised.value.condition is StanzaErrorCondition.INTERNAL_SERVER_ERROR
    assert event.calls == ["blocking"]


async def test_plain_dispatch_goes_on_past_a_broken_handler() -> None:
    bus = HookBus()

    def broken(event: Asked) -> None:
        event.calls.append("broken")
        raise OSError("boom")

    bus.add(Asked, broken, Priority.GUARD)
    bus.add(Asked, recorder("deliver", HANDLED))
    event = Asked()
    assert await bus.fire(event) is True
    assert event.calls == ["broken", "deliver"]


async def test_a_plain_handler_that_has_to_wait_returns_a_coroutine() -> None:
    """A plain handler may return a coroutine (a cache miss): the bus awaits it and goes on
    in priority order."""
    bus = HookBus()

    async def read_then_pass(event: Asked) -> None:
        event.calls.append("read")

    def guard(event: Asked) -> Any:
        event.calls.append("guard")
        return read_then_pass(event)

    async def deliver(event: Asked) -> bool:
        event.calls.append("deliver")
        return HANDLED

    bus.add(Asked, guard, Priority.GUARD)
    bus.add(Asked, recorder("archive"), Priority.ARCHIVE)
    bus.add(Asked, deliver)
    bus.add(Asked, recorder("fallback", HANDLED), Priority.FALLBACK)
    event = Asked()
    assert await bus.fire(event) is True
    assert event.calls == ["guard", "read", "archive", "deliver"]
