"""XEP-0004 data forms, the small part most modules need: read the values of a submitted form
and build a form of fields. Pure; no stanza routing here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from salon.namespaces import NS_DATA_FORMS
from salon.xml.element import Element


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a form to send: ``values`` holds its value(s) in order."""

    var: str
    values: tuple[str, ...] = ()
    type: str | None = None
    label: str | None = None
    options: tuple[str, ...] = ()


@dataclass(slots=True)
class SubmittedForm:
    """The values of a form an entity sent, by field var (FORM_TYPE kept apart)."""

    form_type: str | None
    type: str
    values: dict[str, list[str]] = field(default_factory=dict)


def parse_form(x: Element) -> SubmittedForm:
    """Read ``<x xmlns='jabber:x:data'/>``: its type, FORM_TYPE and every field's values.
    Raises ValueError on a field without 'var' (XEP-0004 §3.2: required when submitting)."""
    form_type: str | None = None
    values: dict[str, list[str]] = {}
    for element in x.find_all("field", NS_DATA_FORMS):
        var = element.get("var")
        if not var:
            raise ValueError("a submitted field has no var")
        texts = [value.text for value in element.find_all("value", NS_DATA_FORMS)]
        if var == "FORM_TYPE":
            form_type = texts[0] if texts else ""
        else:
            values[var] = texts
    return SubmittedForm(form_type, x.get("type") or "form", values)


def find_form(parent: Element, form_type: str | None = None) -> Element | None:
    """The first data form child of ``parent`` (with that FORM_TYPE when given)."""
    for x in parent.find_all("x", NS_DATA_FORMS):
        if form_type is None:
            return x
        try:
            if parse_form(x).form_type == form_type:
                return x
        except ValueError:
            continue
    return None


def build_form(form_type: str | None, fields: Sequence[Field], type_: str = "form") -> Element:
    """A data form of ``type_`` ('form', 'result', 'submit') with a hidden FORM_TYPE."""
    x = Element("x", NS_DATA_FORMS, {"type": type_})
    if form_type is not None:
        hidden = x.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
        hidden.add("value", text=form_type)
    for f in fields:
        attrs = {"var": f.var}
        if f.type:
            attrs["type"] = f.type
        if f.label:
            attrs["label"] = f.label
        element = x.add("field", attrs=attrs)
        for option in f.options:
            element.add("option").add("value", text=option)
        for value in f.values:
            element.add("value", text=value)
    return x


def parse_bool(value: str) -> bool:
    """XEP-0004 §3.3 boolean: '1'/'true' or '0'/'false'; ValueError otherwise."""
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ValueError(f"not a boolean: {value!r}")
