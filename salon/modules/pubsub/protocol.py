"""Stanzas <-> pubsub service calls (XEP-0060 §§5-8): read a <pubsub/> request, call the
service, write the result; write event notifications (§7.1.2.1, §7.2.2.1, §8.4.2, §8.5.2)
and error replies with their pubsub#errors condition."""

from __future__ import annotations

from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID, parse_jid
from salon.modules.pubsub.service import NodeEvent, PubSubError, PubSubService
from salon.namespaces import (
    NS_CLIENT,
    NS_PUBSUB,
    NS_PUBSUB_ERRORS,
    NS_PUBSUB_EVENT,
    NS_PUBSUB_NODE_CONFIG,
    NS_PUBSUB_OWNER,
    NS_PUBSUB_PUBLISH_OPTIONS,
)
from salon.storage.interfaces import PubSubItem
from salon.xml.dataforms import FormError, find_form, parse_form
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.stanza import error_reply, iq_result

C = StanzaErrorCondition

# Features a service announces (XEP-0060 §10: http://jabber.org/protocol/pubsub#<name>).
FEATURES = (
    "access-authorize",
    "access-open",
    "access-presence",
    "access-roster",
    "access-whitelist",
    "auto-create",
    "config-node",
    "create-and-configure",
    "create-nodes",
    "delete-items",
    "delete-nodes",
    "filtered-notifications",
    "get-pending",
    "instant-nodes",
    "item-ids",
    "last-published",
    "manage-subscriptions",
    "member-affiliation",
    "modify-affiliations",
    "outcast-affiliation",
    "persistent-items",
    "presence-notifications",
    "publish",
    "publish-only-affiliation",
    "publish-options",
    "publisher-affiliation",
    "purge-nodes",
    "retract-items",
    "retrieve-affiliations",
    "retrieve-default",
    "retrieve-items",
    "retrieve-subscriptions",
    "subscribe",
)


def features(*, pep: bool) -> list[str]:
    names = [f for f in FEATURES if not (pep and f == "instant-nodes")]
    return [NS_PUBSUB, *(f"{NS_PUBSUB}#{name}" for name in names)]


def error_stanza(request: Element, err: StanzaError) -> Element:
    """The error reply to ``request``, with the application condition of a PubSubError."""
    reply = error_reply(request, err)
    if isinstance(err, PubSubError):
        error = reply.find("error", request.ns)
        if error is not None:
            if err.app is not None:
                error.add(err.app, NS_PUBSUB_ERRORS)
            if err.feature is not None:
                error.add("unsupported", NS_PUBSUB_ERRORS, {"feature": err.feature})
    return reply


def _required(element: Element, name: str, app: str) -> str:
    value = element.get(name)
    if not value:
        raise PubSubError(C.BAD_REQUEST, app)
    return value


def _form_values(parent: Element | None, form_type: str) -> dict[str, list[str]] | None:
    if parent is None:
        return None
    x = find_form(parent)
    if x is None:
        return None
    try:
        form = parse_form(x)
    except FormError as err:
        raise PubSubError(C.BAD_REQUEST, text=str(err)) from None
    if form.form_type not in (None, form_type):
        raise PubSubError(C.BAD_REQUEST, text=f"expected a {form_type} form")
    if form.type == "cancel":
        return None
    return form.values_by_var()


def item_element(item: PubSubItem, ns: str) -> Element:
    element = Element("item", ns, {"id": item.id})
    if item.payload:
        element.append(parse_element(item.payload))
    return element


async def handle(service: PubSubService, request: Element, actor: JID) -> Element:
    """Answer an iq get/set carrying <pubsub/> (either namespace): the result, or the error
    reply the service raised."""
    try:
        payload = request.first_child
        assert payload is not None
        if payload.ns == NS_PUBSUB_OWNER:
            result = await _owner(service, request.get("type") or "", payload, actor)
        else:
            result = await _user(service, request.get("type") or "", payload, actor)
    except StanzaError as err:
        return error_stanza(request, err)
    return iq_result(request, result)


def _verb(payload: Element) -> Element:
    children = list(payload.elements())
    if not children:
        raise PubSubError(C.BAD_REQUEST, text="empty pubsub request")
    return children[0]


async def _user(
    service: PubSubService, iq_type: str, payload: Element, actor: JID
) -> Element | None:
    verb = _verb(payload)
    name = verb.tag
    if iq_type == "set" and name == "create":
        config = payload.find("configure", NS_PUBSUB)
        node = await service.create(
            actor, verb.get("node") or None, _form_values(config, NS_PUBSUB_NODE_CONFIG)
        )
        if verb.get("node"):
            return None
        result = Element("pubsub", NS_PUBSUB)
        result.add("create", attrs={"node": node})
        return result
    if iq_type == "set" and name == "publish":
        node = _required(verb, "node", "nodeid-required")
        items = verb.find_all("item", NS_PUBSUB)
        if len(items) > 1:
            raise PubSubError(C.BAD_REQUEST, "invalid-payload", "one item per publish")
        item = items[0] if items else None
        content = [] if item is None else list(item.elements())
        if len(content) > 1:
            raise PubSubError(C.BAD_REQUEST, "invalid-payload", "one payload per item")
        options = _form_values(
            payload.find("publish-options", NS_PUBSUB), NS_PUBSUB_PUBLISH_OPTIONS
        )
        if item is None:
            raise PubSubError(C.BAD_REQUEST, "item-required")
        item_id = await service.publish(
            actor, node, item.get("id") or None, content[0] if content else None, options
        )
        result = Element("pubsub", NS_PUBSUB)
        result.add("publish", attrs={"node": node}).add("item", attrs={"id": item_id})
        return result
    if iq_type == "set" and name == "retract":
        node = _required(verb, "node", "nodeid-required")
        items = verb.find_all("item", NS_PUBSUB)
        if not items or not items[0].get("id"):
            raise PubSubError(C.BAD_REQUEST, "item-required")
        notify_text = verb.get("notify")
        notify = None if notify_text is None else notify_text in ("1", "true")
        for item in items:
            await service.retract(actor, node, item.get("id") or "", notify)
        return None
    if iq_type == "set" and name == "subscribe":
        node = _required(verb, "node", "nodeid-required")
        jid = parse_jid(_required(verb, "jid", "invalid-jid"))
        if jid is None:
            raise PubSubError(C.BAD_REQUEST, "invalid-jid")
        sub = await service.subscribe(actor, node, jid)
        result = Element("pubsub", NS_PUBSUB)
        attrs = {"node": node, "jid": sub.jid, "subid": sub.subid, "subscription": sub.state}
        result.add("subscription", attrs=attrs)
        return result
    if iq_type == "set" and name == "unsubscribe":
        node = _required(verb, "node", "nodeid-required")
        jid = parse_jid(_required(verb, "jid", "invalid-jid"))
        if jid is None:
            raise PubSubError(C.BAD_REQUEST, "invalid-jid")
        await service.unsubscribe(actor, node, jid, verb.get("subid"))
        return None
    if iq_type == "get" and name == "items":
        node = _required(verb, "node", "nodeid-required")
        ids = [i.get("id") or "" for i in verb.find_all("item", NS_PUBSUB)]
        max_text = verb.get("max_items")
        max_items = None
        if max_text is not None:
            try:
                max_items = int(max_text)
            except ValueError:
                raise PubSubError(C.BAD_REQUEST, text="max_items is not a number") from None
        found = await service.items(actor, node, max_items=max_items, ids=[i for i in ids if i])
        result = Element("pubsub", NS_PUBSUB)
        listed = result.add("items", attrs={"node": node})
        for stored in found:
            listed.append(item_element(stored, NS_PUBSUB))
        return result
    if iq_type == "get" and name == "subscriptions":
        subs = await service.subscriptions_of(actor, verb.get("node"))
        result = Element("pubsub", NS_PUBSUB)
        listing = result.add("subscriptions")
        for node, sub in subs:
            attrs = {"node": node, "jid": sub.jid, "subid": sub.subid, "subscription": sub.state}
            listing.add("subscription", attrs=attrs)
        return result
    if iq_type == "get" and name == "affiliations":
        affs = await service.affiliations_of(actor, verb.get("node"))
        result = Element("pubsub", NS_PUBSUB)
        listing = result.add("affiliations")
        for node, affiliation in sorted(affs.items()):
            listing.add("affiliation", attrs={"node": node, "affiliation": affiliation})
        return result
    if name in ("options", "default"):
        raise PubSubError(C.FEATURE_NOT_IMPLEMENTED, "unsupported", feature="subscription-options")
    raise PubSubError(C.FEATURE_NOT_IMPLEMENTED, text=f"{iq_type} {name} is not supported")


async def _owner(
    service: PubSubService, iq_type: str, payload: Element, actor: JID
) -> Element | None:
    verb = _verb(payload)
    name = verb.tag
    limit = service.limits.max_items
    if iq_type == "get" and name == "default":
        result = Element("pubsub", NS_PUBSUB_OWNER)
        result.add("default").append(service.policy.defaults.form(limit))
        return result
    node = _required(verb, "node", "nodeid-required")
    if iq_type == "get" and name == "configure":
        config = await service.get_config(actor, node)
        result = Element("pubsub", NS_PUBSUB_OWNER)
        result.add("configure", attrs={"node": node}).append(config.form(limit))
        return result
    if iq_type == "set" and name == "configure":
        values = _form_values(verb, NS_PUBSUB_NODE_CONFIG)
        if values is None:
            raise PubSubError(C.BAD_REQUEST, text="a configuration form is required")
        await service.configure(actor, node, values)
        return None
    if iq_type == "set" and name == "delete":
        await service.delete(actor, node)
        return None
    if iq_type == "set" and name == "purge":
        await service.purge(actor, node)
        return None
    if name == "subscriptions":
        if iq_type == "get":
            subs = await service.owner_subscriptions(actor, node)
            result = Element("pubsub", NS_PUBSUB_OWNER)
            listing = result.add("subscriptions", attrs={"node": node})
            for sub in subs:
                attrs = {"jid": sub.jid, "subscription": sub.state, "subid": sub.subid}
                listing.add("subscription", attrs=attrs)
            return result
        changes = []
        for element in verb.find_all("subscription", NS_PUBSUB_OWNER):
            jid = parse_jid(element.get("jid") or "")
            if jid is None:
                raise PubSubError(C.BAD_REQUEST, "invalid-jid")
            changes.append((jid, element.get("subscription") or "", element.get("subid")))
        await service.set_owner_subscriptions(actor, node, changes)
        return None
    if name == "affiliations":
        if iq_type == "get":
            affs = await service.owner_affiliations(actor, node)
            result = Element("pubsub", NS_PUBSUB_OWNER)
            listing = result.add("affiliations", attrs={"node": node})
            for member, affiliation in sorted(affs.items()):
                listing.add("affiliation", attrs={"jid": member, "affiliation": affiliation})
            return result
        aff_changes = []
        for element in verb.find_all("affiliation", NS_PUBSUB_OWNER):
            jid = parse_jid(element.get("jid") or "")
            if jid is None:
                raise PubSubError(C.BAD_REQUEST, "invalid-jid")
            aff_changes.append((jid, element.get("affiliation") or ""))
        await service.set_owner_affiliations(actor, node, aff_changes)
        return None
    raise PubSubError(C.FEATURE_NOT_IMPLEMENTED, text=f"{iq_type} {name} is not supported")


def event_message(event: NodeEvent, sender: str, to: JID | None) -> Element:
    """The notification message (type headline, XEP-0060 §12.3) for ``to``, or without
    ``to`` for a :class:`~salon.xml.broadcast.Broadcast` to many."""
    attrs = {"from": sender, "type": "headline"}
    if to is not None:
        attrs["to"] = str(to)
    message = Element("message", NS_CLIENT, attrs)
    payload = message.add("event", NS_PUBSUB_EVENT)
    if event.kind == "items":
        items = payload.add("items", attrs={"node": event.node})
        for k, item in enumerate(event.items):
            published = event.payloads[k] if k < len(event.payloads) else None
            if not event.config.deliver_payloads:
                element = Element("item", NS_PUBSUB_EVENT, {"id": item.id})
            elif published is not None:
                element = Element("item", NS_PUBSUB_EVENT, {"id": item.id})
                element.append(published)  # as published: not parsed again
            else:
                element = item_element(item, NS_PUBSUB_EVENT)
            items.append(element)
    elif event.kind == "retract":
        items = payload.add("items", attrs={"node": event.node})
        for item_id in event.retracted:
            items.add("retract", attrs={"id": item_id})
    elif event.kind == "purge":
        payload.add("purge", attrs={"node": event.node})
    elif event.kind == "delete":
        payload.add("delete", attrs={"node": event.node})
    if event.last_item:
        # XEP-0060 §6.1.7 / XEP-0203: a last published item carries its publication time.
        stamp = event.items[0].published_at.strftime("%Y-%m-%dT%H:%M:%SZ") if event.items else None
        if stamp:
            message.add("delay", "urn:xmpp:delay", {"stamp": stamp, "from": sender})
    return message


__all__ = ["FEATURES", "error_stanza", "event_message", "features", "handle"]
