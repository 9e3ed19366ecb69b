"""XEP-0092: Software Version of the server."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from pydantic import Field

import salon
from salon.core.iq import IqRequest, Target
from salon.core.module import Module, ModuleOptions, Spec
from salon.namespaces import NS_VERSION
from salon.xml.element import Element


@dataclass(frozen=True, slots=True)
class Version:
    name: str
    version: str
    os: str | None

    def to_element(self) -> Element:
        query = Element("query", NS_VERSION)
        query.add("name", text=self.name)
        query.add("version", text=self.version)
        if self.os:
            query.add("os", text=self.os)
        return query


class SoftwareVersionOptions(ModuleOptions):
    hide_os: bool = Field(False, description="Leave the operating system out of replies")


class SoftwareVersion(Module[SoftwareVersionOptions]):
    name = "version"
    specs = (Spec("XEP-0092", "1.1"),)

    def setup(self) -> None:
        os_name = None if self.options.hide_os else f"{platform.system()} {platform.release()}"
        self.reply = Version("Salon", salon.__version__, os_name)
        self.add_feature(NS_VERSION)
        self.on_iq("get", NS_VERSION, "query", self.version, to=Target.HOST)

    def version(self, request: IqRequest) -> Element:
        return request.result(self.reply.to_element())
