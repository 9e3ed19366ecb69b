"""A hosted domain: its own hook bus, IQ table, item registries and module set."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

import salon.modules
from salon.core import roster_cache
from salon.core.clock import Clock
from salon.core.hooks import HookBus
from salon.core.iq import IqHandlers, PendingIqs
from salon.core.module import Module, ModuleOptions
from salon.core.pacing import FanOut
from salon.core.registry import Items, Services
from salon.core.roster_cache import RosterCache

if TYPE_CHECKING:
    from salon.core.domains import DomainService
    from salon.core.metrics import CoreMetrics
    from salon.core.passwords import PasswordPool
    from salon.core.ports import PeerNotifier
    from salon.core.router import Router
    from salon.core.server import Server
    from salon.core.session import C2SSession
    from salon.core.sessions import SessionDirectory
    from salon.storage.interfaces import Storage

log = logging.getLogger(__name__)


class ModuleError(Exception):
    """A module cannot be loaded: unknown name, bad options, missing dependency."""


def module_class(name: str) -> type[Module[Any]]:
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


def _load_order(names: list[str]) -> list[type[Module[Any]]]:
    classes: dict[str, type[Module[Any]]] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in classes:
            continue
        cls = module_class(name)
        classes[name] = cls
        pending.extend(cls.depends)
    ordered: list[type[Module[Any]]] = []
    seen: set[str] = set()

    def visit(cls: type[Module[Any]], stack: tuple[str, ...]) -> None:
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
    """One hosted domain as its modules see it: its hook bus, IQ table, item registries and
    services, and the parts of the core a feature needs (sessions, router, storage, clock)."""

    def __init__(self, core: Server, domain: str) -> None:
        self._core = core
        self.domain = domain
        self.hooks = HookBus()
        self.iq_handlers = IqHandlers()
        self.items = Items()
        self.services = Services()
        self.modules: dict[str, Module[Any]] = {}
        # Rosters are RFC 6121 core: every module reads and writes them through this cache.
        self.services.provide(RosterCache, roster_cache.attach(self))

    # ------------------------------------------------------------------ the core, narrowed
    @property
    def storage(self) -> Storage:
        return self._core.storage

    @property
    def sessions(self) -> SessionDirectory:
        return self._core.sessions

    @property
    def peers(self) -> PeerNotifier:
        """The other nodes of a cluster (a no-op in a single process): tell them when a
        user's cached data changed here."""
        return self._core.peers

    @property
    def router(self) -> Router:
        return self._core.router

    @property
    def pending_iqs(self) -> PendingIqs:
        return self._core.pending_iqs

    @property
    def passwords(self) -> PasswordPool:
        """Where password hashing runs (a bounded pool, never the event loop)."""
        return self._core.passwords

    @property
    def clock(self) -> Clock:
        return self._core.clock

    @property
    def fanout(self) -> FanOut:
        """Turns for loops that route a stanza to many (salon.core.pacing)."""
        return self._core.fanout

    @property
    def metrics(self) -> CoreMetrics:
        """The server's counters (salon.core.metrics): limits and reports count here."""
        return self._core.metrics

    def admins(self) -> frozenset[str]:
        """Bare JIDs (lowercased) of this domain's administrators (server.admins and
        the host's own admins)."""
        return self._core.settings.admins_of(self.domain)

    @property
    def data_path(self) -> Path:
        """The server's data folder (``server.data_dir``), for files modules keep."""
        return self._core.settings.data_path()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._core.spawn(coro)

    def is_local(self, domain: str) -> bool:
        """Whether ``domain`` is one of this server's hosted domains."""
        return domain in self._core.hosts

    def host(self, domain: str) -> VirtualHost | None:
        """Another hosted domain (events about its users fire on its own bus)."""
        return self._core.hosts.get(domain)

    def serve_domain(self, domain: str, service: DomainService) -> Callable[[], None]:
        return self._core.serve_domain(domain, service)

    async def unbind(self, session: C2SSession, reason: str | None) -> None:
        """End a session a module kept without a connection (XEP-0198 hibernation)."""
        await self._core.unbind(session, reason)

    # ------------------------------------------------------------------ modules
    def load_modules(self, names: list[str], options: dict[str, dict[str, Any]]) -> None:
        for cls, opts in plan_modules(names, options):
            self._load(cls, opts)

    def _load(self, cls: type[Module[Any]], opts: ModuleOptions) -> Module[Any]:
        module = cls(self, opts)
        try:
            module.setup()
        except Exception:
            module.unload()  # what it registered before failing goes again
            raise
        self.modules[cls.name] = module
        log.debug("loaded module %s on %s", cls.name, self.domain)
        return module

    def unload_modules(self) -> list[asyncio.Task[Any]]:
        """Unload every module; returns their cancelled timer tasks."""
        cancelled: list[asyncio.Task[Any]] = []
        for module in reversed(list(self.modules.values())):
            cancelled.extend(module.unload())
        self.modules.clear()
        return cancelled

    async def reconfigure(self, plan: ModulePlan) -> ModuleChanges:
        """Bring the running modules to ``plan`` (from :func:`plan_modules`) without touching
        sessions: a module no longer listed stops and unloads; one whose options changed
        stops and starts again with the new options, and so does every module that depends
        on a module that stops (it took that module's services in ``setup``); a newly
        listed module loads and starts. Modules left alone keep their state."""
        wanted = {cls.name: (cls, opts) for cls, opts in plan}
        going = {
            name
            for name, module in self.modules.items()
            if name not in wanted or wanted[name][1] != module.options
        }
        grew = True
        while grew:  # dependents of a module that goes, go too (and come back if wanted)
            grew = False
            for name, module in self.modules.items():
                if name not in going and going.intersection(type(module).depends):
                    going.add(name)
                    grew = True
        for name in reversed(list(self.modules)):
            if name not in going:
                continue
            module = self.modules.pop(name)
            try:
                await module.stop()
            except Exception:
                log.exception("stopping module %s failed", name)
            cancelled = module.unload()
            if cancelled:
                await asyncio.wait(cancelled, timeout=RELOAD_GRACE)
            log.info("stopped module %s on %s", name, self.domain)
        changes = ModuleChanges(
            stopped=sorted(going - wanted.keys()),
            restarted=sorted(going & wanted.keys()),
            started=sorted(wanted.keys() - self.modules.keys() - going),
        )
        # Reorder: the kept modules stay loaded; the dict follows the plan's order so that
        # a later graceful stop unloads dependents first.
        kept = self.modules
        self.modules = {}
        for cls, opts in plan:
            if cls.name in kept:
                self.modules[cls.name] = kept[cls.name]
                continue
            try:
                module = self._load(cls, opts)
            except Exception:
                log.exception("loading module %s on %s failed", cls.name, self.domain)
                continue
            try:
                await module.start()
            except Exception:
                log.exception("starting module %s failed", cls.name)
            log.info("started module %s on %s", cls.name, self.domain)
        return changes


RELOAD_GRACE = 5.0  # seconds a reload waits for a stopped module's timers to finish

ModulePlan = list[tuple[type[Module[Any]], ModuleOptions]]


@dataclass(frozen=True, slots=True)
class ModuleChanges:
    """What a reload did to one host's modules (names, sorted)."""

    started: list[str]
    stopped: list[str]
    restarted: list[str]

    def __bool__(self) -> bool:
        return bool(self.started or self.stopped or self.restarted)


def plan_modules(names: list[str], options: dict[str, dict[str, Any]]) -> ModulePlan:
    """The classes to load, dependencies first, each with its validated options; raises
    :class:`ModuleError` (unknown module, bad options, a dependency cycle) before anything
    is loaded, so a reload with a mistake changes nothing."""
    plan: ModulePlan = []
    for cls in _load_order(names):
        try:
            opts = cls.Options.model_validate(options.get(cls.name, {}))
        except ValidationError as exc:
            raise ModuleError(f"options of module '{cls.name}': {exc}") from exc
        plan.append((cls, opts))
    return plan
