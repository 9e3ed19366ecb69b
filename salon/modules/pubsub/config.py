"""Node configuration (XEP-0060 §8.2, §16.4.4): the options Salon supports, their form,
and publish-options preconditions (§7.1.5). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

from salon.namespaces import NS_PUBSUB_NODE_CONFIG
from salon.xml.dataforms import Field, build_form, parse_boolean
from salon.xml.element import Element


class AccessModel(StrEnum):
    OPEN = "open"
    PRESENCE = "presence"
    ROSTER = "roster"
    WHITELIST = "whitelist"
    AUTHORIZE = "authorize"


class PublishModel(StrEnum):
    PUBLISHERS = "publishers"
    SUBSCRIBERS = "subscribers"
    OPEN = "open"


class SendLast(StrEnum):
    NEVER = "never"
    ON_SUB = "on_sub"
    ON_SUB_AND_PRESENCE = "on_sub_and_presence"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    access_model: AccessModel = AccessModel.PRESENCE
    publish_model: PublishModel = PublishModel.PUBLISHERS
    max_items: int | None = 1
    """None is "max": as many as the server allows."""
    persist_items: bool = True
    send_last_published_item: SendLast = SendLast.ON_SUB_AND_PRESENCE
    notify_retract: bool = True
    notify_delete: bool = True
    deliver_notifications: bool = True
    deliver_payloads: bool = True
    title: str = ""
    roster_groups_allowed: tuple[str, ...] = ()

    def effective_max_items(self, limit: int) -> int:
        return limit if self.max_items is None else min(self.max_items, limit)

    # ------------------------------------------------------------------ storage form
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], defaults: NodeConfig | None = None) -> NodeConfig:
        """Read a stored config; unknown keys are ignored, missing ones take ``defaults``."""
        base = defaults or cls()
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "roster_groups_allowed":
                values[key] = tuple(value)
            elif key in _FIELDS_BY_NAME:
                values[key] = value
        config = replace(base, **values)
        return replace(
            config,
            access_model=AccessModel(config.access_model),
            publish_model=PublishModel(config.publish_model),
            send_last_published_item=SendLast(config.send_last_published_item),
        )

    # ------------------------------------------------------------------ data forms
    def apply(self, values: Mapping[str, list[str]], limit: int) -> NodeConfig:
        """This config changed by a submitted node_config form's values. Unknown fields
        are ignored; a bad value raises ValueError (answered not-acceptable)."""
        changes: dict[str, Any] = {}
        for var, given in values.items():
            name = var.removeprefix("pubsub#")
            if name not in _FIELDS_BY_NAME or name == var:
                continue
            changes[name] = _parse(name, given, limit)
        return replace(self, **changes)

    def form(self, limit: int, type_: str = "form") -> Element:
        """The configuration form (§8.2.1) with this config's values."""
        max_items = "max" if self.max_items is None else str(self.max_items)
        return build_form(
            NS_PUBSUB_NODE_CONFIG,
            [
                Field("pubsub#title", "text-single", (self.title,), "Title"),
                Field(
                    "pubsub#access_model",
                    "list-single",
                    (self.access_model.value,),
                    "Who may subscribe and retrieve items",
                    tuple(m.value for m in AccessModel),
                ),
                Field(
                    "pubsub#publish_model",
                    "list-single",
                    (self.publish_model.value,),
                    "Who may publish",
                    tuple(m.value for m in PublishModel),
                ),
                Field(
                    "pubsub#max_items",
                    "text-single",
                    (max_items,),
                    f"Most items kept (at most {limit}, or 'max')",
                ),
                Field("pubsub#persist_items", "boolean", (_b(self.persist_items),), "Keep items"),
                Field(
                    "pubsub#send_last_published_item",
                    "list-single",
                    (self.send_last_published_item.value,),
                    "When to send the last published item",
                    tuple(m.value for m in SendLast),
                ),
                Field("pubsub#notify_retract", "boolean", (_b(self.notify_retract),)),
                Field("pubsub#notify_delete", "boolean", (_b(self.notify_delete),)),
                Field("pubsub#deliver_notifications", "boolean", (_b(self.deliver_notifications),)),
                Field("pubsub#deliver_payloads", "boolean", (_b(self.deliver_payloads),)),
                Field(
                    "pubsub#roster_groups_allowed",
                    "list-multi",
                    self.roster_groups_allowed,
                    "Roster groups allowed (roster access model)",
                ),
            ],
            type_,
        )

    def unmet_preconditions(self, values: Mapping[str, list[str]], limit: int) -> list[str]:
        """The publish-options fields (§7.1.5) this config does not match. A field Salon
        does not know, or a value it cannot read, cannot be met."""
        unmet = []
        for var, given in values.items():
            name = var.removeprefix("pubsub#")
            if name not in _FIELDS_BY_NAME or name == var:
                unmet.append(var)
                continue
            try:
                wanted = _parse(name, given, limit)
            except ValueError:
                unmet.append(var)
                continue
            have = getattr(self, name)
            if name == "max_items":
                have, wanted = (
                    self.effective_max_items(limit),
                    (limit if wanted is None else wanted),
                )
            elif name == "roster_groups_allowed":
                have, wanted = set(have), set(wanted)
            if have != wanted:
                unmet.append(var)
        return unmet


_FIELDS_BY_NAME = {f.name for f in fields(NodeConfig)}
_BOOLS = frozenset(
    (
        "persist_items",
        "notify_retract",
        "notify_delete",
        "deliver_notifications",
        "deliver_payloads",
    )
)


def _b(value: bool) -> str:
    return "true" if value else "false"


def _parse(name: str, given: list[str], limit: int) -> Any:
    if name == "roster_groups_allowed":
        return tuple(given)
    if len(given) != 1:
        raise ValueError(f"{name} takes one value")
    value = given[0].strip()
    if name in _BOOLS:
        return parse_boolean(value)
    if name == "access_model":
        return AccessModel(value)
    if name == "publish_model":
        return PublishModel(value)
    if name == "send_last_published_item":
        return SendLast(value)
    if name == "max_items":
        if value == "max":
            return None
        number = int(value)
        if number < 1 or number > limit:
            raise ValueError(f"max_items must be 1..{limit} or 'max'")
        return number
    return value  # title
