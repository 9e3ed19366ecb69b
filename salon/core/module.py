"""The base class of every feature module and its registration API.

A module declares what it is (``name``, ``specs``, its options model as the type argument)
and registers everything in ``setup()``: hooks, IQ handlers, disco features, services. The
host records each registration and removes it when the module is unloaded; modules write
no cleanup code.

A module sees its host (``self.host``, a ``VirtualHost``): the domain's hook bus and
registries plus the parts of the core a feature needs (sessions, router, storage, clock).
It never sees the network side.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict

from salon.core.clock import Clock
from salon.core.hooks import Event
from salon.core.iq import IqHandler, Target
from salon.core.items import ACCOUNT_FEATURE, DISCO_FEATURE, DISCO_IDENTITY, Identity
from salon.core.registry import ItemKind

if TYPE_CHECKING:
    from salon.core.domains import DomainService
    from salon.core.hosts import VirtualHost
    from salon.core.iq import PendingIqs
    from salon.core.router import Router
    from salon.core.sessions import SessionDirectory
    from salon.storage.interfaces import Storage


@dataclass(frozen=True, slots=True)
class Spec:
    """A specification a module implements, for the README feature table and disco docs."""

    name: str  # "XEP-0199", "RFC 6121 §2"
    version: str = ""
    status: str = "complete"


class ModuleOptions(BaseModel):
    """Base of a module's typed options (``[modules.<name>]`` in the config)."""

    model_config = ConfigDict(extra="forbid")


OptionsT = TypeVar("OptionsT", bound=ModuleOptions)
T = TypeVar("T")
E = TypeVar("E", bound=Event)


class Module(Generic[OptionsT]):
    """Subclass as ``class Ping(Module[PingOptions])``; ``self.options`` is then a
    ``PingOptions``. A module without options subclasses ``Module[ModuleOptions]``."""

    name: ClassVar[str] = ""
    specs: ClassVar[tuple[Spec, ...]] = ()
    depends: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type[ModuleOptions]] = ModuleOptions

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is Module:
                (options,) = get_args(base)
                if isinstance(options, type) and issubclass(options, ModuleOptions):
                    cls.Options = options

    def __init__(self, host: VirtualHost, options: OptionsT) -> None:
        self.host = host
        self.options = options
        self.log = logging.getLogger(f"salon.modules.{self.name}")
        self._undo: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[Any]] = []

    # ------------------------------------------------------------------ context
    @property
    def domain(self) -> str:
        return self.host.domain

    @property
    def storage(self) -> Storage:
        return self.host.storage

    @property
    def sessions(self) -> SessionDirectory:
        return self.host.sessions

    @property
    def router(self) -> Router:
        return self.host.router

    @property
    def pending_iqs(self) -> PendingIqs:
        return self.host.pending_iqs

    @property
    def clock(self) -> Clock:
        return self.host.clock

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; failures are logged."""
        return self.host.spawn(coro)

    # ------------------------------------------------------------------ lifecycle
    def setup(self) -> None:
        """Register hooks, handlers, features and services. Override."""

    async def start(self) -> None:
        """Called once the server listens; override for async start-up work."""

    async def stop(self) -> None:
        """Called on a graceful stop while storage is still open (flush buffers here)."""

    def unload(self) -> list[asyncio.Task[Any]]:
        """Undo every registration and cancel the timers; returns the cancelled timer tasks
        (the host waits for them, so none is left running when storage closes)."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        return tasks

    # ------------------------------------------------------------------ registration
    def hook(
        self,
        event_type: type[E],
        handler: Callable[[E], Awaitable[Any] | Any],
        priority: int = 0,
    ) -> None:
        self._undo.append(self.host.hooks.add(event_type, handler, priority, owner=self.name))

    def on_iq(
        self,
        iq_type: str,
        ns: str,
        tag: str,
        handler: IqHandler,
        to: Target = Target.HOST,
    ) -> None:
        self._undo.append(self.host.iq_handlers.add(iq_type, ns, tag, handler, to, self.name))

    def add_item(self, kind: ItemKind[T], value: T) -> None:
        self._undo.append(self.host.items.add(kind, value))

    def add_feature(self, feature: str) -> None:
        self.add_item(DISCO_FEATURE, feature)

    def add_account_feature(self, feature: str) -> None:
        self.add_item(ACCOUNT_FEATURE, feature)

    def add_identity(self, category: str, type_: str, name: str | None = None) -> None:
        self.add_item(DISCO_IDENTITY, Identity(category, type_, name))

    def provide(self, kind: type[T], service: T) -> None:
        """Offer ``service`` to other modules of this host, looked up by ``kind``."""
        self._undo.append(self.host.services.provide(kind, service))

    def require(self, kind: type[T]) -> T:
        """The service of type ``kind`` a module this one ``depends`` on provides."""
        return self.host.services.get(kind)

    def optional(self, kind: type[T]) -> T | None:
        """The service of type ``kind`` when a loaded module provides it, else None. Look it
        up when it is used: the providing module may load after this one, or not at all."""
        return self.host.services.find(kind)

    def serve_domain(self, domain: str, service: DomainService) -> None:
        """Take every stanza addressed to ``domain`` (a MUC, PubSub or upload service)."""
        self._undo.append(self.host.serve_domain(domain, service))

    def every(self, seconds: float, fn: Callable[[], Any]) -> None:
        """Run ``fn`` (sync or async) every ``seconds`` of the host's clock while loaded."""
        clock = self.clock

        async def loop() -> None:
            while True:
                await clock.sleep(seconds)
                try:
                    result = fn()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    self.log.exception("timer of %s failed", self.name)

        self._tasks.append(asyncio.get_running_loop().create_task(loop()))
