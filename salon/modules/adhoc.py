"""XEP-0050: Ad-Hoc Commands, the framework other modules add commands to.

A module that offers commands (``admin`` for XEP-0133) depends on this one, asks for the
:class:`Commands` service and adds :class:`Command` objects. A command is one form and its
handling: ``execute`` answers with the form (status ``executing``, the only action being
``complete``), the submitted form (action ``complete``, ``next`` or ``execute``) runs it and
ends the session (status ``completed``, a note and maybe a result form); ``cancel`` ends it
(``canceled``). A command without a form runs at once. Sessions are kept per requester, are
bounded in number and expire (the host's clock), so a client that walks away costs nothing.

The command list is the disco#items of node ``http://jabber.org/protocol/commands``, and
shows each requester only the commands it may run (§2.2); running one it may not gives
``forbidden`` (§4.4).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import Field

from salon.core.iq import IqRequest, Target
from salon.core.items import DISCO_NODE, DiscoItem, DiscoNode
from salon.core.module import Module, ModuleOptions, Spec
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.namespaces import NS_COMMANDS, NS_DATA_FORMS, NS_DISCO_INFO
from salon.xml.dataforms import DataForm, FormError, form_element, parse_form
from salon.xml.element import Element
from salon.xml.stanza import error_reply


@dataclass(slots=True)
class Outcome:
    """What a finished command tells its requester."""

    note: str | None = None
    note_type: str = "info"  # info, warn or error (§3.4)
    form: DataForm | None = None  # a result form (type "result")
    payload: tuple[Element, ...] = ()  # further elements inside <command/>


FormMaker = Callable[[JID], Awaitable[DataForm]]
Runner = Callable[[JID, DataForm], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Command:
    node: str
    name: str
    run: Runner
    form: FormMaker | None = None  # None: the command runs when executed
    allowed: Callable[[JID], bool] = field(default=lambda _jid: True)


@dataclass(slots=True)
class _Session:
    command: Command
    requester: JID  # the full JID that started it (§4.3: only it may continue)
    expires: float


class Commands:
    """The commands of one host (the service ``admin`` and others add to)."""

    def __init__(self) -> None:
        self.by_node: dict[str, Command] = {}

    def add(self, command: Command) -> Callable[[], None]:
        self.by_node[command.node] = command

        def remove() -> None:
            if self.by_node.get(command.node) is command:
                del self.by_node[command.node]

        return remove


class AdHocOptions(ModuleOptions):
    session_timeout: float = Field(
        600.0, gt=0, description="Seconds a command session waits for the next step."
    )
    max_sessions: int = Field(
        1000, ge=1, description="Command sessions kept at once; the oldest go first."
    )


def _command_error(
    request: IqRequest, condition: StanzaErrorCondition, specific: str | None
) -> Element:
    """An error reply with XEP-0050's application condition (§4.6) beside the RFC one."""
    reply = error_reply(request.stanza, condition)
    if specific is not None:
        error = reply.find("error", request.stanza.ns)
        if error is not None:
            error.add(specific, NS_COMMANDS)
    return reply


class AdHoc(Module[AdHocOptions]):
    name = "adhoc"
    specs = (Spec("XEP-0050", "1.3.0"),)
    depends = ("disco",)

    def setup(self) -> None:
        self.commands = Commands()
        self.sessions_by_id: OrderedDict[str, _Session] = OrderedDict()
        self.provide(Commands, self.commands)
        self.add_feature(NS_COMMANDS)
        self.add_item(DISCO_NODE, DiscoNode(NS_COMMANDS, self.list_commands, self.node_info))
        self.on_iq("set", NS_COMMANDS, "command", self.command, to=Target.HOST)

    # ------------------------------------------------------------------ discovery
    async def list_commands(self, request: IqRequest) -> list[DiscoItem]:
        return [
            DiscoItem(self.domain, cmd.name, cmd.node)
            for cmd in self.commands.by_node.values()
            if cmd.allowed(request.sender)
        ]

    async def node_info(self, request: IqRequest) -> Element | None:
        """disco#info of the command list itself (§2.3)."""
        query = Element("query", NS_DISCO_INFO, {"node": NS_COMMANDS})
        query.add("identity", attrs={"category": "automation", "type": "command-list"})
        return query

    # ------------------------------------------------------------------ execution
    async def command(self, request: IqRequest) -> Element:
        payload = request.payload
        node = payload.get("node") or ""
        action = payload.get("action") or "execute"
        session_id = payload.get("sessionid")
        if action not in ("execute", "next", "complete", "cancel", "prev"):
            return _command_error(request, StanzaErrorCondition.BAD_REQUEST, "malformed-action")
        cmd = self.commands.by_node.get(node)
        if cmd is None:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such command")
        if not cmd.allowed(request.sender):
            raise StanzaError(StanzaErrorCondition.FORBIDDEN)
        self._expire()
        if session_id is None:
            if action != "execute":
                return _command_error(request, StanzaErrorCondition.BAD_REQUEST, "bad-action")
            submitted = self._submitted(payload)
            if cmd.form is None or submitted is not None:  # runs at once (or a one-shot form)
                return await self._run(request, cmd, secrets.token_hex(8), submitted)
            return await self._start(request, cmd)
        session = self.sessions_by_id.get(session_id)
        if session is None or session.command is not cmd:
            return _command_error(request, StanzaErrorCondition.BAD_REQUEST, "bad-sessionid")
        if session.requester != request.sender:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "another entity's session")
        if action == "cancel":
            del self.sessions_by_id[session_id]
            return self._reply(request, cmd, session_id, "canceled")
        if action == "prev":  # one-stage commands have no previous stage
            return _command_error(request, StanzaErrorCondition.BAD_REQUEST, "bad-action")
        form = self._submitted(payload)
        if form is None:
            return _command_error(request, StanzaErrorCondition.BAD_REQUEST, "bad-payload")
        del self.sessions_by_id[session_id]
        return await self._run(request, cmd, session_id, form)

    def _submitted(self, payload: Element) -> DataForm | None:
        x = payload.find("x", NS_DATA_FORMS)
        if x is None:
            return None
        try:
            form = parse_form(x)
        except FormError as exc:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, str(exc)) from None
        if form.type == "cancel":
            return None
        if form.type != "submit":
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "submit a form of type 'submit'")
        return form

    async def _start(self, request: IqRequest, cmd: Command) -> Element:
        assert cmd.form is not None
        form = await cmd.form(request.sender)
        session_id = secrets.token_hex(8)
        self.sessions_by_id[session_id] = _Session(
            cmd, request.sender, self.clock.monotonic() + self.options.session_timeout
        )
        while len(self.sessions_by_id) > self.options.max_sessions:
            self.sessions_by_id.popitem(last=False)
        reply = self._reply(request, cmd, session_id, "executing")
        command = reply.find("command", NS_COMMANDS)
        assert command is not None
        actions = command.add("actions", attrs={"execute": "complete"})
        actions.add("complete")
        command.append(form_element(form))
        return reply

    async def _run(
        self, request: IqRequest, cmd: Command, session_id: str, form: DataForm | None
    ) -> Element:
        outcome = await cmd.run(request.sender, form or DataForm("submit"))
        self.log.info("%s ran %s: %s", request.sender, cmd.node, outcome.note or "done")
        reply = self._reply(request, cmd, session_id, "completed")
        command = reply.find("command", NS_COMMANDS)
        assert command is not None
        if outcome.note:
            command.add("note", attrs={"type": outcome.note_type}, text=outcome.note)
        if outcome.form is not None:
            command.append(form_element(outcome.form))
        for element in outcome.payload:
            command.append(element)
        return reply

    def _reply(self, request: IqRequest, cmd: Command, session_id: str, status: str) -> Element:
        command = Element(
            "command",
            NS_COMMANDS,
            {"node": cmd.node, "sessionid": session_id, "status": status},
        )
        return request.result(command)

    def _expire(self) -> None:
        now = self.clock.monotonic()
        for session_id in [s for s, v in self.sessions_by_id.items() if v.expires <= now]:
            del self.sessions_by_id[session_id]
