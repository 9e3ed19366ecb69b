"""XEP-0115 §5.1 verification strings, checked against the examples of §5.2 and §5.3."""

from __future__ import annotations

from salon.modules.caps import verification_string
from salon.namespaces import NS_DATA_FORMS, NS_DISCO_INFO
from salon.xml.element import Element
from salon.xml.stanza import XML_LANG

FEATURES = (
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/muc",
)


def add_form(query: Element, fields: dict[str, list[str]], form_type_hidden: bool = True) -> None:
    form = query.add("x", NS_DATA_FORMS, {"type": "result"})
    for var, values in fields.items():
        attrs = {"var": var}
        if var == "FORM_TYPE" and form_type_hidden:
            attrs["type"] = "hidden"
        field = form.add("field", attrs=attrs)
        for value in values:
            field.add("value", text=value)


def test_simple_generation_example() -> None:
    query = Element("query", NS_DISCO_INFO)
    query.add("identity", attrs={"category": "client", "type": "pc", "name": "Exodus 0.9.1"})
    for feature in reversed(FEATURES):  # order of the input does not matter
        query.add("feature", attrs={"var": feature})
    assert verification_string(query) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def complex_example() -> Element:
    query = Element("query", NS_DISCO_INFO)
    for lang, name in (("en", "Psi 0.11"), ("el", "Ψ 0.11")):
        attrs = {"category": "client", "type": "pc", XML_LANG: lang, "name": name}
        query.add("identity", attrs=attrs)
    for feature in FEATURES:
        query.add("feature", attrs={"var": feature})
    add_form(
        query,
        {
            "FORM_TYPE": ["urn:xmpp:dataforms:softwareinfo"],
            "ip_version": ["ipv6", "ipv4"],
            "os": ["Mac"],
            "os_version": ["10.5.1"],
            "software": ["Psi"],
            "software_version": ["0.11"],
        },
    )
    return query


def test_complex_generation_example() -> None:
    assert verification_string(complex_example()) == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_form_without_hidden_form_type_is_ignored() -> None:
    # §5.4 step 3.6: such a form is left out, processing continues.
    query = complex_example()
    add_form(query, {"FORM_TYPE": ["urn:example:other"], "x": ["1"]}, form_type_hidden=False)
    add_form(query, {"y": ["2"]})
    assert verification_string(query) == "q07IKJEyjvHSyhy//CH0CxmKi8w="
