"""XEP-0157: Contact Addresses for XMPP Services.

The addresses configured under ``[modules.contact]`` (``admin = ["mailto:…", "xmpp:…"]``,
``abuse``, ``feedback``, ``sales``, ``security``, ``status``, ``support``) are published in
the server's disco#info as a XEP-0128 data form with FORM_TYPE
'http://jabber.org/network/serverinfo'. Only roles with addresses appear.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from salon.core.items import DISCO_EXTENSION
from salon.core.module import Module, ModuleOptions, Spec
from salon.namespaces import NS_DATA_FORMS, NS_SERVERINFO
from salon.xml.element import Element

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")  # RFC 3986 §3.1: scheme ":" ...
ROLES = ("abuse", "admin", "feedback", "sales", "security", "status", "support")


def serverinfo_form(addresses: dict[str, list[str]]) -> Element:
    """The serverinfo form with one list-multi field per role that has addresses."""
    form = Element("x", NS_DATA_FORMS, {"type": "result"})
    form_type = form.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
    form_type.add("value", text=NS_SERVERINFO)
    for role, uris in addresses.items():
        if uris:
            field = form.add("field", attrs={"var": f"{role}-addresses", "type": "list-multi"})
            for uri in uris:
                field.add("value", text=uri)
    return form


class ContactAddressesOptions(ModuleOptions):
    abuse: list[str] = Field(default_factory=list, description="URIs to report abuse")
    admin: list[str] = Field(default_factory=list, description="URIs of the administrators")
    feedback: list[str] = Field(default_factory=list, description="URIs for feedback")
    sales: list[str] = Field(default_factory=list, description="URIs for sales inquiries")
    security: list[str] = Field(default_factory=list, description="URIs for security issues")
    status: list[str] = Field(default_factory=list, description="URIs for service status")
    support: list[str] = Field(default_factory=list, description="URIs for user support")

    @field_validator(*ROLES)
    @classmethod
    def _uris(cls, uris: list[str]) -> list[str]:
        for uri in uris:
            if not _URI.fullmatch(uri):
                raise ValueError(f"{uri!r} is not a URI such as 'mailto:admin@example.org'")
        return uris


class ContactAddresses(Module[ContactAddressesOptions]):
    name = "contact"
    specs = (Spec("XEP-0157", "1.1"),)
    depends = ("disco",)

    def setup(self) -> None:
        addresses = {role: getattr(self.options, role) for role in ROLES}
        if any(addresses.values()):
            self.add_item(DISCO_EXTENSION, serverinfo_form(addresses))
