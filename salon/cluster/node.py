"""One node of a Salon cluster: its link to Redis and to the other nodes.

What lives in Redis (every key under ``[cluster] key_prefix``, written ``P`` here):

* ``P node:<name>``: the node's heartbeat, a key with a TTL of ``heartbeat_ttl``, renewed
  every ``heartbeat_interval``. ``P nodes`` is the set of node names that have run.
* ``P sess:<name>``: a hash per node, full JID -> the session's record (priority,
  availability, last presence, shared slots; ``directory.session_record``). Each node writes
  its own, rebuilds it at start and after a Redis restart, and reads the others' into its
  mirror.
* ``P events``: a pub/sub channel of small JSON events: the sessions that came up (bound or
  changed) or went down since a node's last flush, one event per flush; a node that said
  hello (read its hash again) or is gone; a user's cached data changed ("roster",
  "offline", ...); rooms whose owner is gone.
* ``P stream:<name>``: a Redis Stream per node, the stanzas other nodes route to it. The node
  reads it with XREADGROUP and acknowledges (XACK, then XDEL) each entry once it has handed
  the stanza to the session (or stored/bounced it). An entry nobody acknowledged survives
  the node: when the node is dead, a survivor claims the entries (pending and unread) and
  routes them again; the target session is gone, so a message goes to another resource,
  offline storage, or back to its sender as an error. Pub/sub would lose them.
* ``P reap:<name>``: the lock (SET NX with a TTL) one survivor takes to clean up after a dead
  node: remove its sessions, send their contacts unavailable presence, re-route its stream.
* ``P room:<domain>/<room>``: the node that owns a MUC room (SET NX); ``P rooms:<name>``
  the rooms a node owns, dropped with it.
* ``P dialback``: the shared server dialback secret when the config gives none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from salon.cluster.directory import ClusterDirectory, RemoteSession, session_record
from salon.core.events import MessageUndeliverable, PeerDataChanged, ResourceUnbound
from salon.core.session import C2SSession
from salon.core.sessions import delivery_targets
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID, parse_jid
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.serializer import serialize_str

if TYPE_CHECKING:
    from salon.config import ClusterSettings
    from salon.core.domains import DomainService
    from salon.core.server import Server

log = logging.getLogger(__name__)

GROUP = "salon"
MAX_HOPS = 3  # a stanza chasing a session that keeps moving stops after this many nodes
OUTBOX_LIMIT = 100_000  # stanzas waiting for Redis; beyond, new ones are bounced
BATCH = 500
RETRY = 0.5  # seconds between attempts while Redis is unreachable
STOP_WAIT = 3.0  # seconds each step of leaving the cluster may take


def default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ClusterNode:
    """Heartbeat, the session mirror, stanza forwarding and failure handling."""

    server: Server  # set by the composition root once the core exists

    def __init__(self, settings: ClusterSettings, name: str | None = None) -> None:
        assert settings.redis is not None
        self.settings = settings
        self.name = name or settings.node or default_node_name()
        self.prefix = settings.key_prefix
        self.directory = ClusterDirectory(self.name)
        self.directory.transport = self
        # Typed Any: redis-py types replies as bytes | str; these clients decode to str.
        self.redis: Any = aioredis.from_url(settings.redis, decode_responses=True)
        self._reader: Any = aioredis.from_url(settings.redis, decode_responses=True)
        self._tasks: list[asyncio.Task[Any]] = []
        self._outbox: list[tuple[str, dict[str, str]]] = []
        self._dirty: dict[JID, C2SSession | None] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._queued = 0  # items handed to _kick so far
        self._written = 0  # of those, how many Redis has taken
        self._progress = asyncio.Event()
        self._events: list[str] = []
        self._room_owners: dict[str, str] = {}
        self._dead_since: dict[str, float] = {}
        self._local_services: dict[str, DomainService] = {}
        self._stopping = False
        self._dialback: str | None = None  # the shared secret, once read from Redis
        self.connected = asyncio.Event()
        self.reaped = 0  # dead nodes cleaned up by this node (for tests and metrics)

    # ------------------------------------------------------------------ keys
    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def stream_of(self, node: str) -> str:
        return self._k("stream", node)

    @property
    def ttl_ms(self) -> int:
        return int(self.settings.heartbeat_ttl * 1000)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self._register()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._heartbeat_loop()),
            loop.create_task(self._event_loop()),
            loop.create_task(self._stream_loop()),
        ]
        log.info("cluster node %s joined (%s)", self.name, self.settings.redis)

    async def _register(self) -> None:
        """Announce this node and (re)build what Redis keeps of it and of the others: after
        a Redis restart everything is written again."""
        r = self.redis
        await r.set(self._k("node", self.name), "1", px=self.ttl_ms)
        await r.sadd(self._k("nodes"), self.name)
        if self._dialback is not None:
            # a Redis that restarted empty gets the secret back, so a node started later
            # reads the one the running nodes' dialback keys are made with
            await r.set(self._k("dialback"), self._dialback, nx=True)
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await r.xgroup_create(self.stream_of(self.name), GROUP, id="0", mkstream=True)
        key = self._k("sess", self.name)
        local = self.directory.local.all_sessions()
        async with r.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            for session in local:
                pipe.hset(key, str(session.jid), session_record(session))
            pipe.publish(self._k("events"), _event("hello", self.name))
            await pipe.execute()
        for node in await r.smembers(self._k("nodes")):
            if node != self.name and await r.exists(self._k("node", node)):
                await self._load_node(node)
        self.connected.set()

    async def _load_node(self, node: str) -> None:
        records = await self.redis.hgetall(self._k("sess", node))
        self.directory.drop_node(node)
        for jid_text, record in records.items():
            jid = parse_jid(jid_text)
            if jid is not None:
                self.directory.remote_up(node, jid, json.loads(record))

    async def stop(self) -> None:
        """Leave: the survivors re-route what is still queued for this node."""
        self._stopping = True
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._flushing), 5)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_WAIT)
            for task in stuck:
                log.warning("cluster: %r did not stop in time", task.get_coro())
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self._say_bye(), STOP_WAIT)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self.redis.aclose(), STOP_WAIT)
            await asyncio.wait_for(self._reader.aclose(), STOP_WAIT)

    async def _say_bye(self) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._k("node", self.name))
            pipe.publish(self._k("events"), _event("bye", self.name))
            await pipe.execute()

    # ------------------------------------------------------------------ publishing sessions
    def published(self, session: C2SSession) -> None:
        self._dirty[session.jid] = session
        self._kick()

    def withdrawn(self, session: C2SSession) -> None:
        self._dirty[session.jid] = None
        self._kick()

    @property
    def is_clustered(self) -> bool:
        return True

    def changed(self, kind: str, user: JID) -> None:
        """PeerNotifier: ``user``'s data of ``kind`` changed here."""
        self._events.append(_event("changed", self.name, jid=str(user), kind=kind))
        self._kick()

    def forward(self, node: str, to: JID, stanza: Element, hops: int = 0) -> None:
        if len(self._outbox) >= OUTBOX_LIMIT:
            log.error("cluster outbox full: bouncing a stanza for %s", to)
            self.server.router.reply_error(None, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return
        fields = {"k": "d", "t": str(to), "x": serialize_str(stanza)}
        if hops:
            fields["h"] = str(hops)
        self._outbox.append((node, fields))
        self._kick()

    def forward_service(self, node: str, sender: JID, to: JID, stanza: Element) -> None:
        fields = {"k": "s", "f": str(sender), "t": str(to), "x": serialize_str(stanza)}
        self._outbox.append((node, fields))
        self._kick()

    def forward_answer(self, node: str, stanza: Element) -> None:
        """An iq result or error for an id another node made (``PendingIqs.answer``)."""
        to = stanza.get("to") or ""
        self._outbox.append((node, {"k": "r", "t": to, "x": serialize_str(stanza)}))
        self._kick()

    def close_remote(
        self, node: str, to: JID, condition: StreamErrorCondition | None = None
    ) -> None:
        fields = {"k": "c", "t": str(to)}
        if condition is not None:
            fields["e"] = condition.value
        self._outbox.append((node, fields))
        self._kick()

    async def settled(self) -> None:
        """PeerNotifier: wait until what was queued until now is written to Redis."""
        target = self._queued
        while self._written < target:
            await self._progress.wait()

    def _kick(self) -> None:
        self._queued += 1
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Write what piled up since the last flush in one round trip; while Redis is away,
        keep it and try again."""
        try:
            await asyncio.sleep(0)  # gather what this loop iteration produces
            while self._outbox or self._dirty or self._events:
                upto = self._queued
                outbox, self._outbox = self._outbox, []
                dirty, self._dirty = self._dirty, {}
                events, self._events = self._events, []
                try:
                    await self._write(outbox, dirty, events)
                    self._written = upto
                    self._progress.set()
                    self._progress = asyncio.Event()
                except Exception as exc:
                    if not isinstance(exc, RedisError | OSError):
                        log.exception("cluster: writing to Redis failed")
                    else:
                        log.warning("cluster: Redis write failed (%s); retrying", exc)
                    self._outbox[:0] = outbox
                    self._dirty = {**dirty, **self._dirty}
                    self._events[:0] = events
                    if self._stopping:
                        return
                    await asyncio.sleep(RETRY)
        finally:
            self._flushing = None

    async def _write(
        self,
        outbox: list[tuple[str, dict[str, str]]],
        dirty: dict[JID, C2SSession | None],
        events: list[str],
    ) -> None:
        key, channel = self._k("sess", self.name), self._k("events")
        async with self.redis.pipeline(transaction=False) as pipe:
            # One event for all of this flush's session changes: each other node parses one
            # message per flush, not one per change (a login is three: bind, presence, end).
            changes: list[dict[str, str]] = []
            for jid, session in dirty.items():
                if session is None:
                    pipe.hdel(key, str(jid))
                    changes.append({"jid": str(jid)})  # gone
                else:
                    record = session_record(session)
                    pipe.hset(key, str(jid), record)
                    changes.append({"jid": str(jid), "rec": record})
            if changes:
                pipe.publish(channel, _event("sessions", self.name, changes=changes))
            for node, fields in outbox:
                pipe.xadd(self.stream_of(node), fields)
            for event in events:
                pipe.publish(channel, event)
            await pipe.execute()

    # ------------------------------------------------------------------ events
    async def _event_loop(self) -> None:
        while True:
            pubsub = self._reader.pubsub()
            try:
                await pubsub.subscribe(self._k("events"))
                if not self.connected.is_set():
                    await self._register()  # Redis came back: write and read everything again
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                    if message is not None and message.get("type") == "message":
                        await self._on_event(json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.connected.is_set():
                    log.warning("cluster: lost Redis (%s); reconnecting", exc)
                self.connected.clear()
                await asyncio.sleep(RETRY)
            except Exception:
                log.exception("cluster: event handling failed")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _on_event(self, event: dict[str, Any]) -> None:
        op, node = event.get("op"), event.get("node", "")
        if node == self.name:
            return
        jid = parse_jid(event.get("jid") or "") if "jid" in event else None
        if op == "sessions":
            for change in event.get("changes", ()):
                changed = parse_jid(change.get("jid") or "")
                if changed is None:
                    continue
                if "rec" in change:
                    self.directory.remote_up(node, changed, json.loads(change["rec"]))
                else:
                    self.directory.remote_down(node, changed)
        elif op == "hello":
            self._forget_rooms_of(node)
            await self._load_node(node)
        elif op == "gone":
            self.directory.drop_node(node)
            self._forget_rooms_of(node)
        elif op == "bye":
            self.directory.drop_node(node)
            self._forget_rooms_of(node)
            await self._reap(node)
        elif op == "changed" and jid is not None:
            if event.get("kind") == "account":  # a password, a deletion, a disabled mark
                self.server.storage.accounts.forget(jid.domain, jid.local or "")
            host = self.server.hosts.get(jid.domain)
            if host is not None:
                await host.hooks.fire(PeerDataChanged(str(event.get("kind")), jid.bare))

    # ------------------------------------------------------------------ the stream
    async def _stream_loop(self) -> None:
        stream = self.stream_of(self.name)
        start = "0"  # first what an earlier run of this node left unacknowledged
        while True:
            try:
                got = await self._reader.xreadgroup(
                    GROUP, self.name, {stream: start}, count=BATCH, block=1000
                )
                entries = got[0][1] if got else []
                if start == "0" and not entries:
                    start = ">"
                    continue
                if entries:
                    await self._handle_entries(stream, entries)
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis restarted empty
                    with contextlib.suppress(ResponseError):
                        await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
                else:
                    log.warning("cluster: reading the stream failed: %s", exc)
                    await asyncio.sleep(RETRY)
            except (RedisError, OSError):
                await asyncio.sleep(RETRY)
            except Exception:
                log.exception("cluster: stream handling failed")
                await asyncio.sleep(RETRY)

    async def _handle_entries(self, stream: str, entries: list[tuple[str, dict[str, str]]]) -> None:
        ids = []
        for entry_id, fields in entries:
            try:
                if fields:
                    await self._handle(fields)
            except Exception:
                log.exception("cluster: a routed stanza failed")
            ids.append(entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)
            await pipe.execute()

    async def _handle(self, fields: dict[str, str]) -> None:
        kind = fields.get("k")
        to = parse_jid(fields.get("t", ""))
        if to is None:
            return
        if kind == "c":
            session = self.directory.local.get(to)
            if session is not None:
                try:
                    condition = StreamErrorCondition(fields.get("e", "conflict"))
                except ValueError:
                    condition = StreamErrorCondition.CONFLICT
                text = "replaced by a new connection" if condition.value == "conflict" else None
                session.close(condition, text)
                await self.server.unbind(session, condition.value)
            return
        stanza = parse_element(fields["x"])
        if kind == "r":  # the answer to an iq this node sent
            self.server.pending_iqs.resolve(stanza)
            return
        if kind == "s":
            sender = parse_jid(fields.get("f", ""))
            service = self._local_services.get(to.domain)
            if sender is not None and service is not None:
                await self._serve(service, stanza, sender, to)
            return
        await self.deliver(to, stanza, int(fields.get("h", "0")))

    async def deliver(self, to: JID, stanza: Element, hops: int = 0) -> None:
        """A stanza routed to ``to`` on this node: to the session, to where the session
        moved, or, when it is gone, as RFC 6121 §8.5.3.2 says for an absent resource."""
        session = self.directory.local.get(to)
        if session is not None and not session.is_unbound:
            session.send(stanza)
            return
        moved = self.directory.remote_get(to)
        if moved is not None and hops < MAX_HOPS:
            self.forward(moved.node, to, stanza, hops + 1)
            return
        await self._absent(to, stanza)

    async def _absent(self, to: JID, stanza: Element) -> None:
        router, stype = self.server.router, stanza.get("type")
        if stanza.tag == "iq":
            if stype in ("get", "set"):
                router.reply_error(None, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return
        if stanza.tag != "message" or stype in ("error", "headline"):
            return  # presence to a resource that is gone is dropped (§8.5.3.2.3)
        if stype == "groupchat" or (stype or "normal") != "chat":
            router.reply_error(None, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return
        bare = to.bare
        targets = delivery_targets(self.directory.resources(bare), "chat")
        for target in targets:
            target.send(stanza)
        if targets:
            return
        host = self.server.hosts.get(to.domain)
        sender = parse_jid(stanza.get("from") or "") or bare
        if host is not None and await host.hooks.fire(
            MessageUndeliverable(None, stanza, sender, bare)
        ):
            return
        router.reply_error(None, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)

    # ------------------------------------------------------------------ heartbeat, failures
    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            try:
                if not self.connected.is_set():
                    continue
                was = await self.redis.set(
                    self._k("node", self.name), "1", px=self.ttl_ms, get=True
                )
                if was is None:
                    # Our heartbeat lapsed (cut off from Redis, or stalled): the others took
                    # this node for dead and removed its sessions. Publish them again.
                    log.warning("cluster: node %s was taken for dead; rejoining", self.name)
                    await self._register()
                await self._check_nodes()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("cluster: heartbeat failed: %s", exc)
            except Exception:
                log.exception("cluster: heartbeat failed")

    async def _check_nodes(self) -> None:
        names = [n for n in await self.redis.smembers(self._k("nodes")) if n != self.name]
        mirrored = self.directory.remote_nodes()
        names.extend(n for n in mirrored if n not in names)
        if not names:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for node in names:
                pipe.exists(self._k("node", node))
            alive = await pipe.execute()
        now = asyncio.get_running_loop().time()
        for node, is_alive in zip(names, alive, strict=True):
            if is_alive:
                self._dead_since.pop(node, None)
                continue
            self.directory.drop_node(node)  # stop routing there at once, everywhere
            self._forget_rooms_of(node)
            self._dead_since.setdefault(node, now)
            await self._reap(node)

    async def _reap(self, node: str) -> None:
        """One survivor cleans up after dead ``node``: its sessions leave the directory,
        their contacts get unavailable presence, its queued stanzas are routed again."""
        r = self.redis
        lock = self._k("reap", node)
        if not await r.set(lock, self.name, nx=True, px=self.ttl_ms):
            return
        try:
            records = await r.hgetall(self._k("sess", node))
            rooms = await r.smembers(self._k("rooms", node))
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(self._k("sess", node))
                for room in rooms:
                    pipe.delete(self._k("room", room))
                pipe.delete(self._k("rooms", node))
                pipe.publish(self._k("events"), _event("gone", node))
                await pipe.execute()
            self.directory.drop_node(node)
            self._forget_rooms_of(node)
            if records:
                log.warning("cluster: node %s is gone; %d sessions end", node, len(records))
                self.reaped += 1
            for jid_text, record in records.items():
                await self._end_remote(node, jid_text, json.loads(record))
            drained = await self._drain(node)
            now = asyncio.get_running_loop().time()
            dead_for = now - self._dead_since.get(node, now)
            if drained == 0 and dead_for > 3 * self.settings.heartbeat_ttl:
                # long dead and nothing left: forget it (a restart adds it again)
                async with r.pipeline(transaction=True) as pipe:
                    pipe.srem(self._k("nodes"), node)
                    pipe.delete(self.stream_of(node))
                    await pipe.execute()
                self._dead_since.pop(node, None)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await r.delete(lock)

    async def _end_remote(self, node: str, jid_text: str, record: dict[str, Any]) -> None:
        """The session ``jid_text`` of a dead node ended: tell the modules, as its own node
        would have (unavailable presence to contacts and the user's other resources)."""
        jid = parse_jid(jid_text)
        if jid is None or self._still_bound(jid):
            return
        host = self.server.hosts.get(jid.domain)
        if host is None:
            return
        ghost = RemoteSession(jid, node, _Dropped(node))
        ghost.update(record)
        ghost.is_closed = True
        ghost.is_unbound = True
        await host.hooks.fire(ResourceUnbound(ghost, "node down"))

    def _still_bound(self, jid: JID) -> bool:
        """Whether a live session by this full JID exists (then it is not ended)."""
        return self.directory.get(jid) is not None

    async def _drain(self, node: str) -> int:
        """Claim and route every entry of dead ``node``'s stream; how many there were."""
        stream, r, count = self.stream_of(node), self.redis, 0
        if not await r.exists(stream):
            return 0
        with contextlib.suppress(ResponseError):
            await r.xgroup_create(stream, GROUP, id="0", mkstream=True)
        cursor = "0-0"
        while True:  # entries it read and never acknowledged
            got = await r.xautoclaim(stream, GROUP, self.name, 0, cursor, count=BATCH)
            cursor, entries = got[0], got[1]
            entries = [(i, f) for i, f in entries if f is not None]
            if entries:
                count += len(entries)
                await self._handle_entries(stream, entries)
            if cursor == "0-0" or not entries:
                break
        while True:  # entries it never read
            got = await r.xreadgroup(GROUP, self.name, {stream: ">"}, count=BATCH)
            entries = got[0][1] if got else []
            if not entries:
                break
            count += len(entries)
            await self._handle_entries(stream, entries)
        if count:
            log.warning("cluster: re-routed %d stanzas queued for dead node %s", count, node)
        return count

    # ------------------------------------------------------------------ MUC rooms
    def owned_service(self, domain: str, service: DomainService) -> DomainService:
        """Wrap a service domain whose entities (MUC rooms) keep state in memory: each one
        is owned by one node, found through Redis, and its stanzas go there."""
        self._local_services[domain] = service
        return _OwnedService(self, domain, service)

    async def owner_of(self, domain: str, local: str) -> str:
        room = f"{domain}/{local}"
        owner = self._room_owners.get(room)
        if owner is not None:
            return owner
        key = self._k("room", room)
        if await self.redis.set(key, self.name, nx=True):
            await self.redis.sadd(self._k("rooms", self.name), room)
            owner = self.name
        else:
            owner = await self.redis.get(key) or self.name
            if owner != self.name and not await self.redis.exists(self._k("node", owner)):
                # its owner died and was not reaped yet: take it over
                await self.redis.set(key, self.name)
                await self.redis.sadd(self._k("rooms", self.name), room)
                owner = self.name
        self._room_owners[room] = owner
        return owner

    def _forget_rooms_of(self, node: str) -> None:
        for room in [room for room, owner in self._room_owners.items() if owner == node]:
            del self._room_owners[room]

    async def _serve(self, service: DomainService, stanza: Element, sender: JID, to: JID) -> None:
        try:
            await service.receive(stanza, None, sender, to)
        except StanzaError as exc:
            self.server.router.reply_error(None, stanza, exc)
        except Exception:
            log.exception("service %s failed on a forwarded stanza", to.domain)
            self.server.router.reply_error(None, stanza, StanzaErrorCondition.INTERNAL_SERVER_ERROR)

    # ------------------------------------------------------------------ dialback
    async def dialback_secret(self) -> bytes:
        """The server dialback secret every node shares (XEP-0185 keys made on one node
        verify on another)."""
        if self.settings.dialback_secret:
            return self.settings.dialback_secret.encode()
        key = self._k("dialback")
        await self.redis.set(key, os.urandom(32).hex(), nx=True)
        self._dialback = str(await self.redis.get(key))
        return self._dialback.encode()


class _Dropped:
    """The connection of a session whose node died: nothing reaches it any more."""

    def __init__(self, node: str) -> None:
        self.node = node

    def send_stanza(self, stanza: Element) -> None:
        return None

    def close_stream(
        self,
        condition: StreamErrorCondition | None = None,
        text: str | None = None,
        extra: Element | None = None,
    ) -> None:
        return None

    def idle_seconds(self) -> float:
        return 0.0

    @property
    def peer(self) -> str:
        return f"dead cluster node {self.node}"


class _OwnedService:
    """A service domain seen through room ownership: a room's stanzas go to its node."""

    def __init__(self, node: ClusterNode, domain: str, inner: DomainService) -> None:
        self.node = node
        self.domain = domain
        self.inner = inner

    async def receive(
        self, stanza: Element, origin: C2SSession | None, sender: JID, to: JID
    ) -> None:
        if to.local is None:
            await self.inner.receive(stanza, origin, sender, to)
            return
        owner = await self.node.owner_of(self.domain, to.local)
        if owner == self.node.name:
            await self.inner.receive(stanza, origin, sender, to)
        else:
            self.node.forward_service(owner, sender, to, stanza)


def _event(op: str, node: str, **fields: str | list[dict[str, str]]) -> str:
    return json.dumps({"op": op, "node": node, **fields}, separators=(",", ":"))
