"""XEP-0202: Entity Time. The server tells its UTC time and its local offset from UTC.

Requests to a user's full JID reach that client through the router; only the server's own
time is answered here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from salon.core.iq import IqRequest, Target
from salon.core.module import Module, ModuleOptions, Spec
from salon.namespaces import NS_TIME
from salon.xml.element import Element


def format_offset(offset: timedelta) -> str:
    """A XEP-0082 time zone offset: ``+hh:mm`` or ``-hh:mm`` (never ``Z``, as XEP-0202 shows)."""
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def time_element(now: datetime) -> Element:
    """The <time/> payload for the aware datetime ``now``."""
    offset = now.utcoffset() or timedelta(0)
    time = Element("time", NS_TIME)
    time.add("tzo", text=format_offset(offset))
    utc = now.astimezone(UTC).replace(tzinfo=None)
    time.add("utc", text=utc.isoformat(timespec="milliseconds") + "Z")
    return time


class EntityTime(Module[ModuleOptions]):
    name = "time"
    specs = (Spec("XEP-0202", "2.0"),)

    def setup(self) -> None:
        self.add_feature(NS_TIME)
        self.on_iq("get", NS_TIME, "time", self.answer, to=Target.HOST)

    def answer(self, request: IqRequest) -> Element:
        return request.result(time_element(datetime.now().astimezone()))
