"""XEP-0065: SOCKS5 Bytestreams proxy, at ``proxy.<domain>``.

Users discover the service (disco identity proxy/bytestreams), ask it for its network
address (``<streamhost jid host port/>``), both parties connect to the SOCKS5 relay naming
the same destination hash, and the requester activates the stream with ``<activate/>``. The
relay (``salon.net.socks5``, reached through the ``BYTESTREAM_RELAY`` item) pairs and pipes
the connections with bounded buffers, a byte cap and timeouts; this module answers the XMPP
side. Only users of this server's domains may use the proxy.
"""

from __future__ import annotations

from pydantic import Field

from salon.core.bytestreams import BYTESTREAM_RELAY, Activation, BytestreamRelay, dst_addr
from salon.core.items import DISCO_ITEM, DiscoItem, Identity
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.session import C2SSession
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID, JIDError
from salon.modules.disco import info_query
from salon.namespaces import NS_BYTESTREAMS, NS_DISCO_INFO, NS_DISCO_ITEMS
from salon.xml.element import Element
from salon.xml.stanza import iq_result


class Proxy65Options(ModuleOptions):
    domain: str = Field(
        "", description="The proxy's domain (empty: 'proxy.' followed by the host's domain)."
    )
    name: str = Field("SOCKS5 Bytestreams", description="The name shown in service discovery.")


class Proxy65(Module[Proxy65Options]):
    name = "proxy65"
    specs = (Spec("XEP-0065", "1.8.2"),)
    depends = ("disco",)

    def setup(self) -> None:
        self.service = self.options.domain or f"proxy.{self.domain}"
        self.serve_domain(self.service, self)
        self.add_item(DISCO_ITEM, DiscoItem(jid=self.service, name=self.options.name))

    def _relay(self) -> BytestreamRelay:
        relays = self.host.items.get(BYTESTREAM_RELAY)
        if not relays:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE, "the relay is not running")
        return relays[0]

    async def receive(
        self, stanza: Element, origin: C2SSession | None, sender: JID, to: JID
    ) -> None:
        if stanza.tag != "iq":
            if stanza.tag == "message" and stanza.get("type") != "error":
                raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return
        iq_type = stanza.get("type")
        if iq_type in ("result", "error"):
            return
        payload = stanza.first_child
        if to.local is not None or to.resource is not None or payload is None:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        key = (iq_type, payload.ns, payload.tag)
        if key == ("get", NS_DISCO_INFO, "query"):
            if payload.get("node") is not None:
                raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)
            identity = Identity("proxy", "bytestreams", self.options.name)
            query = info_query([identity], [NS_DISCO_INFO, NS_DISCO_ITEMS, NS_BYTESTREAMS])
            reply = iq_result(stanza, query)
        elif key == ("get", NS_DISCO_ITEMS, "query"):
            reply = iq_result(stanza, Element("query", NS_DISCO_ITEMS))
        elif key == ("get", NS_BYTESTREAMS, "query"):
            reply = iq_result(stanza, self._streamhosts(sender))
        elif key == ("set", NS_BYTESTREAMS, "query"):
            self._activate(payload, sender)
            reply = iq_result(stanza)
        else:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        self.router.deliver_reply(origin, reply)

    def _check_user(self, sender: JID) -> None:
        if sender.local is None or not self.host.is_local(sender.domain):
            # XEP-0065 §6.3.1, example 20: a proxy that will not serve this entity
            raise StanzaError(
                StanzaErrorCondition.FORBIDDEN, "only users of this server may use the proxy"
            )

    def _streamhosts(self, sender: JID) -> Element:
        """XEP-0065 §4: the proxy's network address."""
        self._check_user(sender)
        query = Element("query", NS_BYTESTREAMS)
        for host in self._relay().streamhosts():
            attrs = {"jid": self.service, "host": host.host, "port": str(host.port)}
            query.add("streamhost", attrs=attrs)
        return query

    def _activate(self, payload: Element, sender: JID) -> None:
        """XEP-0065 §6.3.5: the requester (the ``from`` of this iq) activates the stream."""
        self._check_user(sender)
        sid = payload.get("sid") or ""
        activate = payload.find("activate", NS_BYTESTREAMS)
        if not sid or activate is None or not (activate.text or "").strip():
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "sid and <activate/> are needed")
        try:
            target = JID.parse((activate.text or "").strip())
        except JIDError:
            target = None
        if target is None or target.resource is None:
            raise StanzaError(StanzaErrorCondition.JID_MALFORMED, "the target is not a full JID")
        result = self._relay().activate(dst_addr(sid, str(sender), str(target)))
        if result is Activation.UNKNOWN:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such bytestream")
        if result is Activation.ONE_SIDE:
            raise StanzaError(
                StanzaErrorCondition.NOT_ALLOWED, "only one party is connected to the proxy"
            )
        if result is Activation.ALREADY_ACTIVE:
            raise StanzaError(StanzaErrorCondition.NOT_ALLOWED, "the bytestream is already active")
