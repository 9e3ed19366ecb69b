"""XEP-0115: Entity Capabilities of the server.

The server's own disco#info (identities, features and XEP-0128 forms) is hashed into a
verification string (§5.1, SHA-1) once every module is loaded. Authenticated clients are
offered it as a stream feature (§6.3)::

    <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='…' ver='…'/>

and disco#info to the node ``<node>#<ver>`` answers with that same information (§6.2).

The 'http://jabber.org/protocol/caps' disco feature is not announced: it would promise the
presence traffic optimisation of §8.4, which Salon does not perform.
"""

from __future__ import annotations

import base64
import hashlib

from pydantic import Field

from salon.core.items import DISCO_INFO_NODE, STREAM_FEATURE
from salon.core.module import Module, ModuleOptions, Spec
from salon.modules.disco import server_info
from salon.namespaces import NS_CAPS, NS_DATA_FORMS
from salon.xml.element import Element
from salon.xml.stanza import XML_LANG


def _form_parts(form: Element) -> tuple[str, list[tuple[str, list[str]]]] | None:
    """(FORM_TYPE, [(var, values)]) of a data form; None without a hidden FORM_TYPE."""
    form_type: str | None = None
    fields: list[tuple[str, list[str]]] = []
    for field in form.find_all("field", NS_DATA_FORMS):
        var = field.get("var") or ""
        values = [value.text for value in field.find_all("value", NS_DATA_FORMS)]
        if var == "FORM_TYPE":
            if field.get("type") != "hidden" or not values:
                return None
            form_type = values[0]
        else:
            fields.append((var, values))
    return None if form_type is None else (form_type, fields)


#: The hash names of XEP-0115 §5.1 (IANA names) this server can check, with hashlib's names.
HASHES = {
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
}


def verification_string(info: Element, hash_name: str = "sha-1") -> str:
    """The 'ver' of a disco#info <query/> with the sha-1 hash (XEP-0115 §5.1), or another
    of ``HASHES`` (PEP checks the caps of clients, which may use any of them)."""
    identities = sorted(
        (
            identity.get("category") or "",
            identity.get("type") or "",
            identity.get(XML_LANG) or "",
            identity.get("name") or "",
        )
        for identity in info.find_all("identity")
    )
    parts = ["/".join(identity) + "<" for identity in identities]
    parts.extend(f"{var}<" for var in sorted(f.get("var") or "" for f in info.find_all("feature")))
    forms = (_form_parts(x) for x in info.find_all("x", NS_DATA_FORMS))
    for form_type, fields in sorted(form for form in forms if form is not None):
        parts.append(f"{form_type}<")
        for var, values in sorted(fields):
            parts.append(f"{var}<")
            parts.extend(f"{value}<" for value in sorted(values))
    digest = hashlib.new(HASHES[hash_name], "".join(parts).encode()).digest()
    return base64.b64encode(digest).decode()


class EntityCapabilitiesOptions(ModuleOptions):
    node: str = Field(
        "https://salon.example/caps",
        min_length=1,
        description="URI naming this server software in the caps 'node' attribute",
    )


class EntityCapabilities(Module[EntityCapabilitiesOptions]):
    name = "caps"
    specs = (Spec("XEP-0115", "1.6.0", "the server's own caps as a stream feature"),)
    depends = ("disco",)

    async def start(self) -> None:
        # After setup() of every module: the info now holds everything they registered.
        node = self.options.node
        ver = verification_string(server_info(self.host))
        feature = Element("c", NS_CAPS, {"hash": "sha-1", "node": node, "ver": ver})
        self.add_item(STREAM_FEATURE, feature)
        self.add_item(DISCO_INFO_NODE, f"{node}#{ver}")
