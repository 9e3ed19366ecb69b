"""XEP-0199: XMPP Ping.

Answers pings addressed to this server or to a local account (§4.2, §4.3), and pings
clients that have sent nothing for ``interval`` seconds (§4.1, server-to-client). Any
answer, result or error, shows the connection is alive (§4.1); a client that does not
answer within ``timeout`` seconds is gone and its stream is closed with
<connection-timeout/> (§7). Idleness is checked every ``interval / 4`` seconds, so a
silent client is pinged between 1 and 1.25 times ``interval`` seconds after it went quiet.
"""

from __future__ import annotations

import asyncio

from pydantic import Field

from salon.core.clock import wait_for
from salon.core.events import ResourceUnbound
from salon.core.iq import IqRequest, Target
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.session import C2SSession
from salon.errors import StreamErrorCondition
from salon.namespaces import NS_CLIENT, NS_PING
from salon.xml.element import Element


class PingOptions(ModuleOptions):
    interval: float = Field(
        300.0, ge=0, description="Ping clients silent for this many seconds; 0: never"
    )
    timeout: float = Field(30.0, gt=0, description="Seconds a pinged client has to answer")


class Ping(Module[PingOptions]):
    name = "ping"
    specs = (Spec("XEP-0199", "2.0.1", "answers pings; pings silent clients"),)

    def setup(self) -> None:
        self.interval, self.timeout = self.options.interval, self.options.timeout
        self.pinging: dict[C2SSession, asyncio.Task[None]] = {}
        self.add_feature(NS_PING)
        self.on_iq("get", NS_PING, "ping", self.pong, to=Target.HOST | Target.ACCOUNT)
        if self.interval:
            self.every(self.interval / 4, self.ping_silent_clients)
            self.hook(ResourceUnbound, self.session_ended)

    def pong(self, request: IqRequest) -> Element | None:
        return None  # an empty result

    # ------------------------------------------------------------------ server-to-client
    def ping_silent_clients(self) -> None:
        for session in self.sessions.all_sessions():
            if (
                session.host == self.domain
                and session not in self.pinging
                and session.connection.idle_seconds() >= self.interval
            ):
                self.pinging[session] = self.spawn(self._ping(session))

    async def _ping(self, session: C2SSession) -> None:
        iq_id = self.pending_iqs.new_id()
        answer = self.pending_iqs.expect(iq_id, peer=str(session.jid))
        attrs = {"type": "get", "id": iq_id, "from": self.domain, "to": str(session.jid)}
        session.send(Element("iq", NS_CLIENT, attrs, [Element("ping", NS_PING)]))
        try:
            await wait_for(self.clock, answer, self.timeout)
        except TimeoutError:
            session.close(StreamErrorCondition.CONNECTION_TIMEOUT, "no answer to a ping")
        finally:
            self.pinging.pop(session, None)

    def session_ended(self, event: ResourceUnbound) -> None:
        task = self.pinging.pop(event.session, None)
        if task is not None:
            task.cancel()
