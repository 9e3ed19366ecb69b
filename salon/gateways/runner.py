"""Running a gateway: its config file, its component connection, reconnecting when it drops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from salon.gateways.base import Gateway
from salon.gateways.component import ComponentError, ComponentLink

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class ConfigSection(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentConfig(ConfigSection):
    """``[component]``: how the gateway reaches Salon (XEP-0114)."""

    domain: str = Field(min_length=1, description="The gateway's domain, e.g. email.example.org.")
    secret: str = Field(min_length=1, description='The secret of [components."<domain>"].')
    server: str = Field("127.0.0.1", description="Where Salon's component listener is.")
    port: int = Field(5347, ge=1, le=65535, description="Salon's component port.")
    users_domains: list[str] = Field(
        default_factory=list,
        description="Domains whose users may register (empty: the gateway's domain without "
        "its first label).",
    )
    data_dir: str = Field(".", description="Where the gateway keeps its registrations.")
    reconnect_delay: float = Field(5.0, gt=0, description="Seconds before reconnecting.")

    def user_domains(self) -> list[str]:
        return self.users_domains or [self.domain.split(".", 1)[-1]]


def load_config(model: type[M], path: Path) -> M:
    """Read and validate a gateway's TOML file; explain mistakes in one line each."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"{path}: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{path}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        ]
        raise SystemExit("\n".join(lines)) from None


class GatewayRunner:
    """Keeps ``gateway`` connected to Salon as the component ``config.domain``."""

    def __init__(self, gateway: Gateway, config: ComponentConfig) -> None:
        self.gateway = gateway
        self.config = config
        self.link: ComponentLink | None = None
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect once (errors raise), then keep the link up in the background."""
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def _connect(self) -> None:
        cfg = self.config
        link = ComponentLink(cfg.domain, cfg.secret, cfg.server, cfg.port, self.gateway.receive)
        await link.connect()
        self.link = link
        self.gateway.send = link.send
        self.connected.set()
        await self.gateway.announce()

    async def _keep(self) -> None:
        while True:
            assert self.link is not None
            await self.link.run()
            self.connected.clear()
            log.warning("gateway %s lost its connection; reconnecting", self.config.domain)
            while True:
                await asyncio.sleep(self.config.reconnect_delay)
                try:
                    await self._connect()
                    break
                except (OSError, ComponentError) as exc:
                    log.warning("gateway %s cannot connect: %s", self.config.domain, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.link is not None:
            await self.link.close()
