"""Gateways shipped with Salon (e-mail, SMS), each an XEP-0114 component run as its own
process: ``salon gateway email --config email.toml``, ``salon gateway sms --config sms.toml``.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Protocol


class GatewayService(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def make_service(kind: str, config_path: Path) -> GatewayService:
    """The gateway ``kind`` ("email" or "sms") configured from ``config_path``."""
    from salon.gateways.runner import load_config

    base = config_path.resolve().parent
    if kind == "email":
        from salon.gateways.email import EmailConfig, EmailService

        return EmailService(load_config(EmailConfig, config_path), base)
    if kind == "sms":
        from salon.gateways.sms import SmsConfig, SmsService

        return SmsService(load_config(SmsConfig, config_path), base)
    raise ValueError(f"no gateway named {kind!r}")


async def serve(service: GatewayService) -> None:
    """Run ``service`` until SIGINT or SIGTERM."""
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.stop()
