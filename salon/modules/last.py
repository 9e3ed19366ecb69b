"""XEP-0012: Last Activity.

To the server: its uptime. To an account's bare JID: 0 while the account has an available
resource, otherwise the seconds since its last logout with the status text of its last
unavailable presence. Only the account itself and entities it lets see its presence (a
roster item with subscription "from" or "both") may ask; anyone else gets <forbidden/>
(XEP-0012 §3, §8). Queries to a full JID go to that client through the router.
"""

from __future__ import annotations

import asyncio
import json
import time

from salon.core.events import PresenceBroadcast, ResourceUnbound
from salon.core.hooks import Priority
from salon.core.iq import IqRequest, Target
from salon.core.module import Module, Spec
from salon.errors import StanzaError, StanzaErrorCondition
from salon.modules._roster_cache import roster_cache
from salon.namespaces import NS_CLIENT, NS_LAST
from salon.xml.element import Element

STATUS_KEY = "last.status"  # session.extras: status text of the session's unavailable presence


def last_element(seconds: int, status: str | None = None) -> Element:
    query = Element("query", NS_LAST, {"seconds": str(max(seconds, 0))})
    if status:
        query.text = status
    return query


class LastActivity(Module):
    name = "last"
    specs = (Spec("XEP-0012", "2.0"),)

    def setup(self) -> None:
        self.started = asyncio.get_running_loop().time()
        self.store = self.storage.keyvalue("last")
        self.rosters = roster_cache(self)
        self.add_feature(NS_LAST)
        self.on_iq("get", NS_LAST, "query", self.uptime, to=Target.HOST)
        self.on_iq("get", NS_LAST, "query", self.last_logout, to=Target.ACCOUNT)
        self.hook(PresenceBroadcast, self.remember_status, Priority.ARCHIVE)
        self.hook(ResourceUnbound, self.logged_out)

    # ------------------------------------------------------------------ queries
    def uptime(self, request: IqRequest) -> Element:
        seconds = int(asyncio.get_running_loop().time() - self.started)
        return request.result(last_element(seconds))

    async def last_logout(self, request: IqRequest) -> Element:
        user = request.to
        if request.target is Target.BARE and not await self._may_see_presence(request):
            raise StanzaError(StanzaErrorCondition.FORBIDDEN)
        if self.server.sessions.available(user):
            return request.result(last_element(0))
        stored = await self.store.get(self.domain, user.local or "")
        if stored is None:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no logout recorded")
        record = json.loads(stored)
        seconds = int(time.time() - record["at"])
        return request.result(last_element(seconds, record.get("status")))

    async def _may_see_presence(self, request: IqRequest) -> bool:
        """The requester has a presence subscription to the user (XEP-0012 §8)."""
        user, requester = request.to, request.sender.bare
        item = await self.rosters.item(user.bare, str(requester))
        return item is not None and item.subscription in ("from", "both")

    # ------------------------------------------------------------------ recording
    def remember_status(self, event: PresenceBroadcast) -> None:
        """Keep the status text of an unavailable broadcast for the logout record."""
        stanza, extras = event.stanza, event.origin.extras
        stype = stanza.get("type")
        if stype == "unavailable":
            extras[STATUS_KEY] = stanza.find_text("status", NS_CLIENT)
        elif stype is None:
            extras.pop(STATUS_KEY, None)

    async def logged_out(self, event: ResourceUnbound) -> None:
        session = event.session
        record = {"at": time.time(), "status": session.extras.get(STATUS_KEY)}
        await self.store.set(self.domain, session.jid.local or "", json.dumps(record))
