"""XEP-0199: XMPP Ping. Answers pings addressed to this server or to a local account."""

from __future__ import annotations

from salon.core.iq import IqRequest, Target
from salon.core.module import Module, Spec
from salon.namespaces import NS_PING
from salon.xml.element import Element


class Ping(Module):
    name = "ping"
    specs = (Spec("XEP-0199", "2.0.1", "server answers pings"),)

    def setup(self) -> None:
        self.add_feature(NS_PING)
        self.on_iq("get", NS_PING, "ping", self.pong, to=Target.HOST | Target.ACCOUNT)

    def pong(self, request: IqRequest) -> Element | None:
        return None  # an empty result
