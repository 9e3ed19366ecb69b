"""Typed registries a host owns: items (disco features, stream features, ...) keyed by an
``ItemKind[T]``, and services (roster cache, per-user locks, ...) keyed by their type.

No string keys cross a module boundary: a kind or a service type is an object that
``mypy`` checks, so ``host.items(DISCO_FEATURE)`` is a ``list[str]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")

__all__ = ["ItemKind", "Items", "ServiceMissing", "Services"]


class ItemKind(Generic[T]):
    """The key of one registry of items, e.g. ``DISCO_FEATURE: ItemKind[str]``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ItemKind({self.name!r})"


class Items:
    """Registries of items per kind; each ``add`` returns its own undo."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[ItemKind[Any], list[Any]] = {}

    def add(self, kind: ItemKind[T], value: T) -> Callable[[], None]:
        items = self._items.setdefault(kind, [])
        items.append(value)

        def remove() -> None:
            if value in items:
                items.remove(value)

        return remove

    def get(self, kind: ItemKind[T]) -> list[T]:
        return list(cast("list[T]", self._items.get(kind, ())))


class ServiceMissing(LookupError):
    """Nobody provides the service asked for: a module is missing from ``depends``."""


class Services:
    """Objects one module offers to others, registered and looked up by their type."""

    __slots__ = ("_by_type",)

    def __init__(self) -> None:
        self._by_type: dict[type[Any], Any] = {}

    def provide(self, kind: type[T], service: T) -> Callable[[], None]:
        if kind in self._by_type:
            raise ValueError(f"{kind.__name__} is already provided")
        self._by_type[kind] = service

        def remove() -> None:
            if self._by_type.get(kind) is service:
                del self._by_type[kind]

        return remove

    def get(self, kind: type[T]) -> T:
        try:
            return cast("T", self._by_type[kind])
        except KeyError:
            raise ServiceMissing(f"no module provides {kind.__name__}") from None

    def find(self, kind: type[T]) -> T | None:
        return cast("T | None", self._by_type.get(kind))
