"""XEP-0012: Last Activity.

To the server: its uptime. To an account's bare JID: 0 while the account has an available
resource, otherwise the seconds since its last logout with the status text of its last
unavailable presence. Only the account itself and entities it lets see its presence (a
roster item with subscription "from" or "both") may ask; anyone else gets <forbidden/>
(XEP-0012 §3, §8). Queries to a full JID go to that client through the router.
"""

from __future__ import annotations

import json

from salon.core.events import AccountDeleted, PresenceBroadcast, ResourceUnbound
from salon.core.hooks import Priority
from salon.core.iq import IqRequest, Target
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.roster_cache import RosterCache
from salon.core.session import SessionSlot
from salon.errors import StanzaError, StanzaErrorCondition
from salon.namespaces import NS_CLIENT, NS_LAST
from salon.xml.element import Element

STATUS = SessionSlot[str | None]("last.status")  # status text of the unavailable presence


def last_element(seconds: int, status: str | None = None) -> Element:
    query = Element("query", NS_LAST, {"seconds": str(max(seconds, 0))})
    if status:
        query.text = status
    return query


FLUSH_INTERVAL = 1.0  # seconds between writes of logout records


class LastActivity(Module[ModuleOptions]):
    name = "last"
    specs = (Spec("XEP-0012", "2.0"),)

    def setup(self) -> None:
        self.started = self.clock.monotonic()
        self.store = self.storage.keyvalue("last")
        self.rosters = self.require(RosterCache)
        self.add_feature(NS_LAST)
        self.on_iq("get", NS_LAST, "query", self.uptime, to=Target.HOST)
        self.on_iq("get", NS_LAST, "query", self.last_logout, to=Target.ACCOUNT)
        self.hook(PresenceBroadcast, self.remember_status, Priority.ARCHIVE)
        self.hook(ResourceUnbound, self.logged_out)
        # Logout records are written in batches, off the login/logout path: one SQL write
        # (an fsync with SQLite) per logout capped the login rate. A crash loses at most
        # FLUSH_INTERVAL seconds of them; a graceful stop writes them (stop()).
        self.unwritten: dict[str, str] = {}
        self.writing: dict[str, str] = {}  # the batch being written right now
        self.every(FLUSH_INTERVAL, self.flush)
        self.hook(AccountDeleted, self.forget)

    # ------------------------------------------------------------------ queries
    def uptime(self, request: IqRequest) -> Element:
        seconds = int(self.clock.monotonic() - self.started)
        return request.result(last_element(seconds))

    async def last_logout(self, request: IqRequest) -> Element:
        user = request.to
        if request.target is Target.BARE and not await self._may_see_presence(request):
            raise StanzaError(StanzaErrorCondition.FORBIDDEN)
        if self.sessions.available(user):
            return request.result(last_element(0))
        local = user.local or ""
        stored = self.unwritten.get(local) or self.writing.get(local)
        if stored is None:
            stored = await self.store.get(self.domain, user.local or "")
        if stored is None:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no logout recorded")
        record = json.loads(stored)
        seconds = int(self.clock.time() - record["at"])
        return request.result(last_element(seconds, record.get("status")))

    async def _may_see_presence(self, request: IqRequest) -> bool:
        """The requester has a presence subscription to the user (XEP-0012 §8)."""
        user, requester = request.to, request.sender.bare
        item = await self.rosters.item(user.bare, str(requester))
        return item is not None and item.subscription in ("from", "both")

    # ------------------------------------------------------------------ recording
    def remember_status(self, event: PresenceBroadcast) -> None:
        """Keep the status text of an unavailable broadcast for the logout record."""
        stanza, session = event.stanza, event.origin
        stype = stanza.get("type")
        if stype == "unavailable":
            session.set(STATUS, stanza.find_text("status", NS_CLIENT))
        elif stype is None:
            session.pop(STATUS)

    async def logged_out(self, event: ResourceUnbound) -> None:
        session = event.session
        record = {"at": self.clock.time(), "status": session.get(STATUS)}
        self.unwritten[session.jid.local or ""] = json.dumps(record)

    async def flush(self) -> None:
        """Write the logout records gathered since the last flush."""
        batch, self.unwritten = self.unwritten, {}
        self.writing = batch
        try:
            await self.store.set_many(self.domain, batch)  # one transaction for the batch
        except Exception:
            self.log.exception("could not record the last logout of %d users", len(batch))
        finally:
            self.writing = {}

    def forget(self, event: AccountDeleted) -> None:
        self.unwritten.pop(event.jid.local or "", None)

    async def stop(self) -> None:
        await self.flush()
