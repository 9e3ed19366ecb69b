"""A hosted domain: its own hook bus, IQ table, item registries and module set."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

import salon.modules
from salon.core.hooks import HookBus
from salon.core.iq import IqHandlers
from salon.core.module import Module

if TYPE_CHECKING:
    from salon.core.server import Server

log = logging.getLogger(__name__)


class ModuleError(Exception):
    """A module cannot be loaded: unknown name, bad options, missing dependency."""


def module_class(name: str) -> type[Module]:
    """Find the Module subclass whose ``name`` is ``name`` in ``salon.modules.<name>``."""
    try:
        mod = importlib.import_module(f"salon.modules.{name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"salon.modules.{name}"):
            known = ", ".join(available_modules())
            raise ModuleError(f"there is no module named '{name}' (known: {known})") from exc
        raise
    for value in vars(mod).values():
        if isinstance(value, type) and issubclass(value, Module) and value.name == name:
            return value
    raise ModuleError(f"salon.modules.{name} defines no module named '{name}'")


def available_modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.iter_modules(salon.modules.__path__) if info.name[0] != "_"
    )


def _load_order(names: list[str]) -> list[type[Module]]:
    classes: dict[str, type[Module]] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in classes:
            continue
        cls = module_class(name)
        classes[name] = cls
        pending.extend(cls.depends)
    ordered: list[type[Module]] = []
    seen: set[str] = set()

    def visit(cls: type[Module], stack: tuple[str, ...]) -> None:
        if cls.name in seen:
            return
        if cls.name in stack:
            raise ModuleError(f"modules depend on each other in a cycle: {' → '.join(stack)}")
        for dep in cls.depends:
            visit(classes[dep], (*stack, cls.name))
        seen.add(cls.name)
        ordered.append(cls)

    for name in names:
        visit(classes[name], ())
    for cls in classes.values():
        visit(cls, ())
    return ordered


class VirtualHost:
    def __init__(self, server: Server, domain: str) -> None:
        self.server = server
        self.domain = domain
        self.hooks = HookBus()
        self.iq_handlers = IqHandlers()
        self.modules: dict[str, Module] = {}
        self._items: dict[str, list[Any]] = {}

    # ------------------------------------------------------------------ items
    def add_item(self, kind: str, value: Any) -> Callable[[], None]:
        items = self._items.setdefault(kind, [])
        items.append(value)

        def remove() -> None:
            if value in items:
                items.remove(value)

        return remove

    def items(self, kind: str) -> list[Any]:
        return list(self._items.get(kind, ()))

    # ------------------------------------------------------------------ modules
    def load_modules(self, names: list[str], options: dict[str, dict[str, Any]]) -> None:
        for cls in _load_order(names):
            try:
                opts = cls.Options.model_validate(options.get(cls.name, {}))
            except ValidationError as exc:
                raise ModuleError(f"options of module '{cls.name}': {exc}") from exc
            module = cls(self, opts)
            module.setup()
            self.modules[cls.name] = module
            log.debug("loaded module %s on %s", cls.name, self.domain)

    def unload_modules(self) -> None:
        for module in reversed(list(self.modules.values())):
            module.unload()
        self.modules.clear()
