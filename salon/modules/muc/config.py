"""A room's configuration and its XEP-0004 forms: muc#roomconfig (§10.2, §15.5.3) to read
and change it, muc#roominfo (§15.5.4) for disco#info.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from salon.errors import StanzaError, StanzaErrorCondition
from salon.namespaces import NS_DATA_FORMS, NS_MUC_ROOMCONFIG, NS_MUC_ROOMINFO
from salon.xml.element import Element

__all__ = ["PM_LEVELS", "WHOIS", "RoomConfig", "config_form", "parse_config_form"]

WHOIS = ("moderators", "anyone")  # semi-anonymous, non-anonymous
PM_LEVELS = ("anyone", "participants", "moderators", "none")


@dataclass(frozen=True, slots=True)
class RoomConfig:
    name: str = ""
    description: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    moderated: bool = False
    password: str = ""
    whois: str = "moderators"
    max_users: int = 0  # 0: the service's limit only
    history_length: int = 20
    change_subject: bool = False
    allow_invites: bool = False
    allow_pm: str = "anyone"
    archiving: bool = True  # XEP-0313 room archive, for persistent rooms

    @property
    def archived(self) -> bool:
        """Whether the room's messages go into its archive: persistent rooms that did not
        turn archiving off (temporary rooms keep their in-memory history only)."""
        return self.persistent and self.archiving

    @property
    def non_anonymous(self) -> bool:
        return self.whois == "anyone"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoomConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# var -> (attribute, field type, label)
_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("muc#roomconfig_roomname", "name", "text-single", "Name"),
    ("muc#roomconfig_roomdesc", "description", "text-single", "Description"),
    ("muc#roomconfig_persistentroom", "persistent", "boolean", "Persistent room"),
    ("muc#roomconfig_publicroom", "public", "boolean", "Listed in the directory"),
    ("muc#roomconfig_membersonly", "members_only", "boolean", "Members only"),
    ("muc#roomconfig_moderatedroom", "moderated", "boolean", "Moderated"),
    ("muc#roomconfig_passwordprotectedroom", "", "boolean", "Password protected"),
    ("muc#roomconfig_roomsecret", "password", "text-private", "Password"),
    ("muc#roomconfig_whois", "whois", "list-single", "Who may discover real JIDs"),
    ("muc#roomconfig_maxusers", "max_users", "list-single", "Maximum occupants"),
    ("muc#roomconfig_historylength", "history_length", "text-single", "History length"),
    ("muc#roomconfig_changesubject", "change_subject", "boolean", "Occupants may set the subject"),
    ("muc#roomconfig_allowinvites", "allow_invites", "boolean", "Occupants may invite"),
    ("muc#roomconfig_allowpm", "allow_pm", "list-single", "Who may send private messages"),
    ("muc#roomconfig_enablearchiving", "archiving", "boolean", "Archive messages"),
)
_BY_VAR = {var: (attr, ftype) for var, attr, ftype, _ in _FIELDS}
_MAX_USERS_OPTIONS = ("10", "20", "30", "50", "100", "200", "500", "1000")


def _field(form: Element, var: str, ftype: str, label: str, values: list[str]) -> Element:
    field = form.add("field", attrs={"var": var, "type": ftype, "label": label})
    for value in values:
        field.add("value", text=value)
    return field


def config_form(config: RoomConfig, max_history: int, max_users: int) -> Element:
    """The form an owner fills in (§10.2), holding the current values."""
    form = Element("x", NS_DATA_FORMS, {"type": "form"})
    form.add("title", text="Room configuration")
    _field(form, "FORM_TYPE", "hidden", "", [NS_MUC_ROOMCONFIG])
    for var, attr, ftype, label in _FIELDS:
        if var == "muc#roomconfig_passwordprotectedroom":
            values = [_bool(bool(config.password))]
        else:
            values = [_text(getattr(config, attr))]
        field = _field(form, var, ftype, label, values)
        if var == "muc#roomconfig_whois":
            for option in WHOIS:
                field.add("option").add("value", text=option)
        elif var == "muc#roomconfig_allowpm":
            for option in PM_LEVELS:
                field.add("option").add("value", text=option)
        elif var == "muc#roomconfig_maxusers":
            for option in _MAX_USERS_OPTIONS:
                if int(option) <= max_users:
                    field.add("option", attrs={"label": option}).add("value", text=option)
            field.add("option", attrs={"label": "No limit"}).add("value", text="0")
        elif var == "muc#roomconfig_historylength":
            field.add("desc", text=f"At most {max_history}")
    return form


def _bool(value: bool) -> str:
    return "1" if value else "0"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return _bool(value)
    return str(value)


def _parse_bool(text: str) -> bool:
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, f"{text!r} is not a boolean")


def parse_config_form(
    form: Element, current: RoomConfig, max_history: int, max_users: int
) -> RoomConfig:
    """Apply a submitted muc#roomconfig form to ``current``; fields not in the form keep
    their value (an empty form makes an instant room, §10.1.2). A bad value is
    ``not-acceptable`` (§10.2)."""
    changes: dict[str, Any] = {}
    password_protected: bool | None = None
    for field in form.find_all("field", NS_DATA_FORMS):
        var = field.get("var") or ""
        values = [v.text for v in field.find_all("value", NS_DATA_FORMS)]
        value = values[0] if values else ""
        if var == "FORM_TYPE":
            if value and value != NS_MUC_ROOMCONFIG:
                raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "not a room config form")
            continue
        if var == "muc#roomconfig_passwordprotectedroom":
            password_protected = _parse_bool(value) if value else None
            continue
        if var not in _BY_VAR:
            continue  # unknown fields are ignored (XEP-0004 §3.2)
        attr, ftype = _BY_VAR[var]
        if ftype == "boolean":
            changes[attr] = _parse_bool(value)
        elif attr == "whois":
            if value not in WHOIS:
                raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "unknown whois value")
            changes[attr] = value
        elif attr == "allow_pm":
            if value not in PM_LEVELS:
                raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "unknown allowpm value")
            changes[attr] = value
        elif attr in ("max_users", "history_length"):
            try:
                number = int(value) if value else 0
            except ValueError:
                raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, f"{var}: a number") from None
            limit = max_users if attr == "max_users" else max_history
            if number < 0 or number > limit:
                raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, f"{var}: 0 to {limit}")
            changes[attr] = number
        else:
            changes[attr] = value
    if password_protected is False:
        changes["password"] = ""
    return replace(current, **changes)


def roominfo_form(config: RoomConfig, occupants: int, subject: str) -> Element:
    """The muc#roominfo extension of a room's disco#info (§6.4, XEP-0128)."""
    form = Element("x", NS_DATA_FORMS, {"type": "result"})
    _field(form, "FORM_TYPE", "hidden", "", [NS_MUC_ROOMINFO])
    _field(form, "muc#roominfo_description", "text-single", "Description", [config.description])
    _field(form, "muc#roominfo_occupants", "text-single", "Occupants", [str(occupants)])
    _field(form, "muc#roominfo_subject", "text-single", "Subject", [subject])
    _field(form, "muc#roomconfig_roomname", "text-single", "Name", [config.name])
    changesubject = _bool(config.change_subject)
    _field(
        form,
        "muc#roominfo_changesubject",
        "boolean",
        "Occupants may set the subject",
        [changesubject],
    )
    if config.max_users:
        _field(
            form,
            "muc#roomconfig_maxusers",
            "text-single",
            "Maximum occupants",
            [str(config.max_users)],
        )
    return form
