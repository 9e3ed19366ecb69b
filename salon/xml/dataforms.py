"""XEP-0004 data forms: a typed view of ``<x xmlns='jabber:x:data'/>``, parsed and built.

Generic: MAM query filters, PubSub node configuration and publish options, and any module's
forms use it. Pure; no stanza routing here. A form that breaks XEP-0004's rules raises
:class:`FormError` (a ``ValueError``); the caller answers with the error its XEP names
(usually bad-request).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from salon.namespaces import NS_DATA_FORMS
from salon.xml.element import Element

__all__ = [
    "DataForm",
    "Field",
    "FormError",
    "build_form",
    "find_form",
    "form_element",
    "parse_boolean",
    "parse_form",
]

FORM_TYPES = frozenset(("form", "submit", "cancel", "result"))
FIELD_TYPES = frozenset(
    (
        "boolean",
        "fixed",
        "hidden",
        "jid-multi",
        "jid-single",
        "list-multi",
        "list-single",
        "text-multi",
        "text-private",
        "text-single",
    )
)
_MULTI = frozenset(("jid-multi", "list-multi", "text-multi"))


class FormError(ValueError):
    """The element is not a valid data form (XEP-0004 §3)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field: ``values`` in order; ``options`` are a list field's choices."""

    var: str | None
    type: str | None = None
    values: tuple[str, ...] = ()
    label: str | None = None
    options: tuple[str, ...] = ()
    extra: tuple[Element, ...] = field(default=(), compare=False)
    """Further children to emit as they are (e.g. an XEP-0122 ``<validate/>``)."""

    @property
    def value(self) -> str | None:
        """The first value, or None."""
        return self.values[0] if self.values else None


@dataclass(frozen=True, slots=True)
class DataForm:
    type: str
    fields: tuple[Field, ...] = ()
    title: str | None = None
    instructions: str | None = None

    def get(self, var: str) -> Field | None:
        for f in self.fields:
            if f.var == var:
                return f
        return None

    def value(self, var: str) -> str | None:
        f = self.get(var)
        return None if f is None else f.value

    @property
    def form_type(self) -> str | None:
        """The value of the hidden FORM_TYPE field (XEP-0068), if any."""
        return self.value("FORM_TYPE")

    def values_by_var(self) -> dict[str, list[str]]:
        """Every field's values by ``var``, FORM_TYPE (and var-less fixed fields) left out."""
        return {f.var: list(f.values) for f in self.fields if f.var and f.var != "FORM_TYPE"}


def parse_boolean(text: str) -> bool:
    """An XEP-0004 §3.3 boolean ("0", "1", "false", "true"); FormError otherwise."""
    value = text.strip()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise FormError(f"not a boolean: {text!r}")


def parse_form(element: Element) -> DataForm:
    """Read a ``<x xmlns='jabber:x:data'/>``. Checks the form type, field types, that every
    field but a fixed one has a ``var``, that no ``var`` repeats and that single-value fields
    have at most one value."""
    if element.tag != "x" or element.ns != NS_DATA_FORMS:
        raise FormError("not a data form")
    form_type = element.get("type")
    if form_type not in FORM_TYPES:
        raise FormError(f"invalid form type {form_type!r}")
    fields: list[Field] = []
    seen: set[str] = set()
    for child in element.find_all("field", NS_DATA_FORMS):
        var = child.get("var")
        ftype = child.get("type")
        if ftype is not None and ftype not in FIELD_TYPES:
            raise FormError(f"invalid field type {ftype!r}")
        if var is None:
            if ftype != "fixed":
                raise FormError("a field without var")
        elif var in seen:
            raise FormError(f"field {var!r} given twice")
        else:
            seen.add(var)
        values = tuple(v.text for v in child.find_all("value", NS_DATA_FORMS))
        if len(values) > 1 and ftype is not None and ftype not in _MULTI:
            raise FormError(f"field {var!r} of type {ftype} has several values")
        options = tuple(
            option.find_text("value", NS_DATA_FORMS) or ""
            for option in child.find_all("option", NS_DATA_FORMS)
        )
        fields.append(Field(var, ftype, values, child.get("label"), options))
    return DataForm(
        form_type,
        tuple(fields),
        element.find_text("title", NS_DATA_FORMS),
        element.find_text("instructions", NS_DATA_FORMS),
    )


def find_form(parent: Element, form_type: str | None = None) -> Element | None:
    """The first data form child of ``parent`` (with that FORM_TYPE when given; a child that
    is no valid form does not match a FORM_TYPE)."""
    for x in parent.find_all("x", NS_DATA_FORMS):
        if form_type is None:
            return x
        try:
            if parse_form(x).form_type == form_type:
                return x
        except FormError:
            continue
    return None


def form_element(form: DataForm) -> Element:
    """The ``<x xmlns='jabber:x:data'/>`` for ``form``."""
    x = Element("x", NS_DATA_FORMS, {"type": form.type})
    if form.title is not None:
        x.add("title", text=form.title)
    if form.instructions is not None:
        x.add("instructions", text=form.instructions)
    for f in form.fields:
        attrs: dict[str, str] = {}
        if f.var is not None:
            attrs["var"] = f.var
        if f.type is not None:
            attrs["type"] = f.type
        if f.label is not None:
            attrs["label"] = f.label
        el = x.add("field", attrs=attrs)
        for extra in f.extra:
            el.append(extra.copy())
        for option in f.options:
            el.add("option").add("value", text=option)
        for value in f.values:
            el.add("value", text=value)
    return x


def build_form(form_type: str | None, fields: Sequence[Field], type_: str = "form") -> Element:
    """A data form of ``type_`` ('form', 'result', 'submit') whose first field is the hidden
    FORM_TYPE (XEP-0068), when ``form_type`` is given."""
    hidden = () if form_type is None else (Field("FORM_TYPE", "hidden", (form_type,)),)
    return form_element(DataForm(type_, (*hidden, *fields)))
