"""salon.xml.dataforms: the one XEP-0004 helper (PubSub, MAM, ...): building with FORM_TYPE
and options, reading a submitted form's values, finding a form by FORM_TYPE."""

from __future__ import annotations

import pytest

from salon.xml.dataforms import (
    DataForm,
    Field,
    FormError,
    build_form,
    find_form,
    form_element,
    parse_form,
)
from salon.xml.fragment import parse_element

XDATA = "jabber:x:data"


def test_build_form_puts_the_hidden_form_type_first_and_lists_options() -> None:
    colour_field = Field("colour", "list-single", ("red",), "Colour", ("red", "green"))
    x = build_form("urn:example:config", [colour_field])
    assert x.get("type") == "form"
    first, colour = x.find_all("field", XDATA)
    assert (first.get("var"), first.get("type")) == ("FORM_TYPE", "hidden")
    assert first.find_text("value", XDATA) == "urn:example:config"
    assert [o.find_text("value", XDATA) for o in colour.find_all("option", XDATA)] == [
        "red",
        "green",
    ]
    parsed = parse_form(x)
    assert parsed.form_type == "urn:example:config"
    assert parsed.get("colour") == Field(
        "colour", "list-single", ("red",), "Colour", ("red", "green")
    )


def test_submitted_values_leave_out_form_type() -> None:
    x = parse_element(
        f"<x xmlns='{XDATA}' type='submit'>"
        "<field var='FORM_TYPE' type='hidden'><value>urn:example</value></field>"
        "<field var='a'><value>1</value></field>"
        "<field var='groups'><value>x</value><value>y</value></field>"
        "<field var='empty'/></x>"
    )
    form = parse_form(x)
    assert form.values_by_var() == {"a": ["1"], "groups": ["x", "y"], "empty": []}
    assert form_element(form).get("type") == "submit"


def test_find_form_by_form_type_skips_invalid_and_other_forms() -> None:
    parent = parse_element(
        f"<options xmlns='urn:example'><x xmlns='{XDATA}' type='bogus'/>"
        f"<x xmlns='{XDATA}' type='submit'><field var='FORM_TYPE'><value>other</value></field></x>"
        f"<x xmlns='{XDATA}' type='submit'><field var='FORM_TYPE'><value>mine</value></field></x>"
        "</options>"
    )
    found = find_form(parent, "mine")
    assert found is not None and parse_form(found).form_type == "mine"
    assert find_form(parent, "none") is None
    assert find_form(parent) is parent.find_all("x", XDATA)[0]


@pytest.mark.parametrize(
    "x",
    [
        f"<x xmlns='{XDATA}'/>",  # no type
        f"<x xmlns='{XDATA}' type='submit'><field><value>v</value></field></x>",  # no var
        f"<x xmlns='{XDATA}' type='submit'><field var='a'/><field var='a'/></x>",  # twice
    ],
)
def test_forms_breaking_xep_0004_are_form_errors(x: str) -> None:
    with pytest.raises(FormError):
        parse_form(parse_element(x))
    assert issubclass(FormError, ValueError)


def test_data_form_lookups() -> None:
    form = DataForm("result", (Field("a", values=("1", "2")), Field("b")))
    assert form.value("a") == "1" and form.value("b") is None and form.value("c") is None
