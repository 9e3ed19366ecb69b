"""The base class of every feature module and its registration API.

A module declares what it is (``name``, ``specs``, ``Options``) and registers everything in
``setup()``: hooks, IQ handlers, disco features. The host records each registration and
removes it when the module is unloaded; modules write no cleanup code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from salon.core.hooks import Event
from salon.core.iq import IqHandler, Target

if TYPE_CHECKING:
    from salon.core.hosts import VirtualHost
    from salon.core.server import Server
    from salon.storage.interfaces import Storage


@dataclass(frozen=True, slots=True)
class Spec:
    """A specification a module implements, for the README feature table and disco docs."""

    name: str  # "XEP-0199", "RFC 6121 §2"
    version: str = ""
    status: str = "complete"


@dataclass(frozen=True, slots=True)
class Identity:
    category: str
    type: str
    name: str | None = None


class ModuleOptions(BaseModel):
    """Base of a module's typed options (``[modules.<name>]`` in the config)."""

    model_config = ConfigDict(extra="forbid")


class Module:
    name: ClassVar[str] = ""
    specs: ClassVar[tuple[Spec, ...]] = ()
    depends: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type[ModuleOptions]] = ModuleOptions

    def __init__(self, host: VirtualHost, options: ModuleOptions) -> None:
        self.host = host
        self.options = options
        self.log = logging.getLogger(f"salon.modules.{self.name}")
        self._undo: list[Callable[[], None]] = []
        self._tasks: list[asyncio.TimerHandle | asyncio.Task[Any]] = []

    # ------------------------------------------------------------------ context
    @property
    def server(self) -> Server:
        return self.host.server

    @property
    def storage(self) -> Storage:
        return self.host.server.storage

    @property
    def domain(self) -> str:
        return self.host.domain

    # ------------------------------------------------------------------ lifecycle
    def setup(self) -> None:
        """Register hooks, handlers and features. Override."""

    async def start(self) -> None:
        """Called once the server listens; override for async start-up work."""

    async def stop(self) -> None:
        """Called on a graceful stop while storage is still open (flush buffers here)."""

    def unload(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    # ------------------------------------------------------------------ registration
    def hook(self, event_type: type[Event], handler: Callable[..., Any], priority: int = 0) -> None:
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

    def add_feature(self, feature: str) -> None:
        self._undo.append(self.host.add_item("disco_feature", feature))

    def add_account_feature(self, feature: str) -> None:
        self._undo.append(self.host.add_item("account_feature", feature))

    def add_identity(self, category: str, type_: str, name: str | None = None) -> None:
        self._undo.append(self.host.add_item("disco_identity", Identity(category, type_, name)))

    def add_item(self, kind: str, value: Any) -> None:
        self._undo.append(self.host.add_item(kind, value))

    def every(self, seconds: float, fn: Callable[[], Any]) -> None:
        """Run ``fn`` (sync or async) every ``seconds`` while the module is loaded."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    result = fn()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    self.log.exception("timer of %s failed", self.name)

        self._tasks.append(asyncio.get_running_loop().create_task(loop()))
