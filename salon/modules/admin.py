"""XEP-0133: Service Administration, as XEP-0050 commands for the configured admins.

Admins are the bare JIDs in ``server.admins`` and the host's own ``admins``; anyone else
sees no command and gets ``forbidden`` when trying one. The commands: add, delete,
disable and re-enable a user, change a password, the count and list of online users, end
a user's sessions, announce to every online user, set and delete the message of the day
(sent once per session at its initial presence), a user's roster and last login. Besides
XEP-0133, ``urn:xmpp:invite#create-account`` (XEP-0401) makes a single-use registration token
for invite-only registration (the ``register`` module keeps the tokens). It runs at once; a
form submitted with the execute request may name the ``username`` the invitation is for
(XEP-0445 §2.1): registering another username with that token is then ``forbidden``.

A disabled account keeps its data; its sessions end and it cannot authenticate (the mark
is a key-value document, ``disabled``, that the client shell checks at login). Login
times are kept in memory and written in batches (``lastlogin``), as ``last`` does with
logouts, so logging in costs no SQL write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from salon.auth.credentials import prepare_username
from salon.core.events import AccountDeleted, AvailablePresence, ResourceBound
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.roster_cache import RosterCache
from salon.core.session import SessionSlot
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID, JIDError
from salon.modules.adhoc import Command, Commands, Outcome
from salon.modules.register import Invites
from salon.namespaces import NS_ADMIN, NS_CLIENT, NS_INVITE_CREATE_ACCOUNT, NS_ROSTER
from salon.storage.interfaces import AccountExists, AccountNotFound
from salon.xml.dataforms import DataForm, Field
from salon.xml.element import Element

MOTD_SENT = SessionSlot[bool]("admin.motd_sent")
DISABLED_STORE = "disabled"  # the client shell reads this store at login too
LOGIN_FLUSH_INTERVAL = 5.0


def _form(title: str, *fields: Field, instructions: str | None = None) -> DataForm:
    hidden = Field("FORM_TYPE", "hidden", (NS_ADMIN,))
    return DataForm("form", (hidden, *fields), title, instructions)


def _result(*fields: Field) -> DataForm:
    return DataForm("result", (Field("FORM_TYPE", "hidden", (NS_ADMIN,)), *fields))


def _one_jid(label: str = "The Jabber ID") -> Field:
    return Field("accountjid", "jid-single", label=label)


def _many_jids(label: str = "The Jabber ID(s)") -> Field:
    return Field("accountjids", "jid-multi", label=label)


class Admin(Module[ModuleOptions]):
    name = "admin"
    specs = (Spec("XEP-0133", "1.3.1", "partial: the commands listed in the README"),)
    depends = ("adhoc",)

    def setup(self) -> None:
        self.commands = self.require(Commands)
        self.rosters = self.require(RosterCache)
        self.disabled = self.storage.keyvalue(DISABLED_STORE)
        self.motd_store = self.storage.keyvalue("motd")
        self.logins_store = self.storage.keyvalue("lastlogin")
        self.logins: dict[str, float] = {}  # logins not yet written
        self.motd: tuple[str | None, str] | None = None  # (subject, body), loaded at start
        for node, name, form, run in self._table():
            self._command(node, name, form, run)
        invite = Command(
            NS_INVITE_CREATE_ACCOUNT,
            "Create new account invite",
            self.create_invite,
            None,
            self.is_admin,
        )
        self._undo.append(self.commands.add(invite))
        self.hook(ResourceBound, self.logged_in)
        self.hook(AvailablePresence, self.send_motd)
        self.hook(AccountDeleted, self.forget)
        self.every(LOGIN_FLUSH_INTERVAL, self.flush_logins)

    async def start(self) -> None:
        stored = await self.motd_store.get(self.domain, "")
        if stored:
            record = json.loads(stored)
            self.motd = (record.get("subject"), record["body"])

    async def stop(self) -> None:
        await self.flush_logins()

    def is_admin(self, jid: JID) -> bool:
        return str(jid.bare).lower() in self.host.admins()

    def _command(
        self,
        node: str,
        name: str,
        form: DataForm | None,
        run: Callable[[JID, DataForm], object],
    ) -> None:
        async def make_form(_requester: JID) -> DataForm:
            assert form is not None
            return form

        command = Command(
            f"{NS_ADMIN}#{node}",
            name,
            run,  # type: ignore[arg-type]
            None if form is None else make_form,
            self.is_admin,
        )
        self._undo.append(self.commands.add(command))

    def _table(
        self,
    ) -> list[tuple[str, str, DataForm | None, Callable[[JID, DataForm], object]]]:
        password = Field("password", "text-private", label="The password for this account")
        verify = Field("password-verify", "text-private", label="Retype password")
        subject = Field("subject", "text-single", label="Subject")
        return [
            ("add-user", "Add a User", _form("Adding a User", _one_jid(), password, verify),
             self.add_user),
            ("delete-user", "Delete a User", _form("Deleting a User", _many_jids()),
             self.delete_users),
            ("disable-user", "Disable a User", _form("Disabling a User", _many_jids()),
             self.disable_users),
            ("reenable-user", "Re-Enable a User", _form("Re-Enabling a User", _many_jids()),
             self.reenable_users),
            ("change-user-password", "Change User Password",
             _form("Changing a User Password", _one_jid(), password), self.change_password),
            ("get-user-roster", "Get User Roster", _form("Getting a User's Roster", _one_jid()),
             self.user_roster),
            ("get-user-lastlogin", "Get User Last Login Time",
             _form("Getting a User's Last Login Time", _one_jid()), self.last_login),
            ("get-online-users-num", "Get Number of Online Users", None, self.online_count),
            ("get-online-users-list", "Get List of Online Users", None, self.online_list),
            ("end-user-session", "End User Session", _form("Ending a User Session",
             _many_jids()), self.end_sessions),
            ("announce", "Send Announcement to Online Users", _form(
                "Making an Announcement", subject,
                Field("announcement", "text-multi", label="Announcement")), self.announce),
            ("set-motd", "Set Message of the Day", _form(
                "Setting the Message of the Day", subject,
                Field("motd", "text-multi", label="Message of the day")), self.set_motd),
            ("delete-motd", "Delete Message of the Day", None, self.delete_motd),
        ]  # fmt: skip

    # ------------------------------------------------------------------ form values
    def _accounts(self, form: DataForm, var: str) -> list[JID]:
        """The local accounts named in field ``var`` (bad-request for anything else)."""
        field = form.get(var)
        values = [v for v in (field.values if field else ()) if v and v.strip()]
        if not values:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, f"'{var}' is required")
        jids: list[JID] = []
        for text in values:
            try:
                jid = JID.parse(text.strip())
            except JIDError:
                raise StanzaError(StanzaErrorCondition.JID_MALFORMED, text) from None
            if jid.local is None or jid.domain != self.domain:
                raise StanzaError(
                    StanzaErrorCondition.NOT_ACCEPTABLE,
                    f"{text} is not an account of {self.domain}",
                )
            jids.append(jid)
        return jids

    def _account(self, form: DataForm) -> JID:
        return self._accounts(form, "accountjid")[0].bare

    async def _existing(self, jid: JID) -> None:
        if await self.storage.accounts.get(self.domain, jid.local or "") is None:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, f"{jid.bare} does not exist")

    def _password(self, form: DataForm, *, verify: bool) -> str:
        password = form.value("password") or ""
        if not password:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "the password is empty")
        if (
            verify
            and form.get("password-verify") is not None
            and form.value("password-verify") != password
        ):
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "the passwords differ")
        return password

    def _end(self, jids: Iterable[JID], condition: StreamErrorCondition, text: str) -> int:
        """Close the sessions of ``jids`` (a full JID: that one only); how many ended."""
        ended = 0
        for jid in jids:
            sessions = self.sessions.resources(jid.bare)
            for session in sessions:
                if jid.resource is None or session.jid == jid:
                    session.close(condition, text)
                    self.spawn(self.host.unbind(session, text))  # no XEP-0198 hibernation
                    ended += 1
        return ended

    # ------------------------------------------------------------------ accounts
    async def add_user(self, admin: JID, form: DataForm) -> Outcome:
        jid = self._account(form)
        credentials = await self.host.passwords.make_credentials(self._password(form, verify=True))
        try:
            await self.storage.accounts.create(self.domain, jid.local or "", credentials)
        except AccountExists:
            raise StanzaError(StanzaErrorCondition.CONFLICT, f"{jid} already exists") from None
        return Outcome(f"Created {jid}.")

    async def delete_users(self, admin: JID, form: DataForm) -> Outcome:
        jids = [jid.bare for jid in self._accounts(form, "accountjids")]
        deleted = []
        for jid in jids:
            if await self.storage.accounts.delete(self.domain, jid.local or ""):
                self.host.peers.changed("account", jid)
                deleted.append(str(jid))
                self._end([jid], StreamErrorCondition.NOT_AUTHORIZED, "the account was removed")
                await self.host.hooks.fire(AccountDeleted(jid))
        missing = sorted({str(j) for j in jids} - set(deleted))
        note = f"Deleted: {', '.join(deleted) or 'none'}."
        if missing:
            return Outcome(note + f" Not found: {', '.join(missing)}.", "warn")
        return Outcome(note)

    async def disable_users(self, admin: JID, form: DataForm) -> Outcome:
        jids = [jid.bare for jid in self._accounts(form, "accountjids")]
        for jid in jids:
            await self._existing(jid)
        record = json.dumps({"at": self.clock.time(), "by": str(admin.bare)})
        for jid in jids:
            await self.disabled.set(self.domain, jid.local or "", record)
            self.storage.accounts.forget(self.domain, jid.local or "")  # no cached login
            self.host.peers.changed("account", jid)  # nor on another cluster node
            self._end([jid], StreamErrorCondition.POLICY_VIOLATION, "the account was disabled")
        return Outcome(f"Disabled: {', '.join(map(str, jids))}.")

    async def reenable_users(self, admin: JID, form: DataForm) -> Outcome:
        jids = [jid.bare for jid in self._accounts(form, "accountjids")]
        for jid in jids:
            await self._existing(jid)
        for jid in jids:
            await self.disabled.set(self.domain, jid.local or "", None)
        return Outcome(f"Re-enabled: {', '.join(map(str, jids))}.")

    async def change_password(self, admin: JID, form: DataForm) -> Outcome:
        jid = self._account(form)
        credentials = await self.host.passwords.make_credentials(self._password(form, verify=False))
        try:
            await self.storage.accounts.set_credentials(self.domain, jid.local or "", credentials)
            self.host.peers.changed("account", jid)
        except AccountNotFound:
            raise StanzaError(
                StanzaErrorCondition.ITEM_NOT_FOUND, f"{jid} does not exist"
            ) from None
        return Outcome(f"Changed the password of {jid}.")

    async def user_roster(self, admin: JID, form: DataForm) -> Outcome:
        jid = self._account(form)
        await self._existing(jid)
        roster = await self.rosters.roster(jid)
        query = Element("query", NS_ROSTER)
        for item in roster.items.values():
            attrs = {"jid": item.jid, "subscription": item.subscription}
            if item.name:
                attrs["name"] = item.name
            el = query.add("item", attrs=attrs)
            for group in item.groups:
                el.add("group", text=group)
        result = _result(Field("accountjid", "jid-single", (str(jid),)))
        return Outcome(form=result, payload=(query,))

    async def last_login(self, admin: JID, form: DataForm) -> Outcome:
        jid = self._account(form)
        await self._existing(jid)
        at = self.logins.get(jid.local or "")
        if at is None:
            stored = await self.logins_store.get(self.domain, jid.local or "")
            at = json.loads(stored)["at"] if stored else None
        text = "never" if at is None else datetime.fromtimestamp(at, UTC).isoformat()
        text = text.replace("+00:00", "Z")
        return Outcome(
            form=_result(
                Field("accountjid", "jid-single", (str(jid),)),
                Field("lastlogin", "text-single", (text,), "Last login time"),
            )
        )

    async def create_invite(self, admin: JID, form: DataForm) -> Outcome:
        """XEP-0401: a registration token; its URI, the token and the expiry come back."""
        invites = self.host.services.find(Invites)
        if invites is None:
            raise StanzaError(
                StanzaErrorCondition.SERVICE_UNAVAILABLE, "in-band registration is not loaded"
            )
        username = await self._invited_username(form)
        token, expires = await invites.create(admin, username=username)
        when = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
        self.log.info(
            "%s created an invitation%s expiring %s",
            admin.bare,
            "" if username is None else f" for {username}@{self.domain}",
            when,
        )
        result = DataForm(
            "result",
            (
                Field("uri", "text-single", (invites.uri(token, username),), "Invite URI"),
                Field("token", "text-single", (token,), "Invitation token"),
                Field("expire", "text-single", (when,), "Invite valid until"),
            ),
            "New invite",
        )
        return Outcome(form=result)

    async def _invited_username(self, form: DataForm) -> str | None:
        """The optional ``username`` of a create-account invitation (a one-shot form
        submitted with the execute request): a valid localpart not yet taken."""
        text = (form.value("username") or "").strip()
        if not text:
            return None
        username = prepare_username(text.split("@", 1)[0] if "@" in text else text)
        if username is None:
            raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, f"{text!r} is no username")
        if "@" in text and text.split("@", 1)[1].lower() != self.domain:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE, f"{text} is not an account of {self.domain}"
            )
        if await self.storage.accounts.get(self.domain, username) is not None:
            raise StanzaError(StanzaErrorCondition.CONFLICT, f"{username} is already taken")
        return username

    # ------------------------------------------------------------------ sessions
    def _online(self) -> list[str]:
        return sorted(
            {str(s.jid.bare) for s in self.sessions.all_sessions() if s.host == self.domain}
        )

    async def online_count(self, admin: JID, form: DataForm) -> Outcome:
        count = str(len(self._online()))
        return Outcome(form=_result(Field("onlineusersnum", "text-single", (count,))))

    async def online_list(self, admin: JID, form: DataForm) -> Outcome:
        jids = tuple(self._online())
        return Outcome(form=_result(Field("onlineuserjids", "jid-multi", jids)))

    async def end_sessions(self, admin: JID, form: DataForm) -> Outcome:
        jids = self._accounts(form, "accountjids")
        ended = self._end(jids, StreamErrorCondition.POLICY_VIOLATION, "ended by an administrator")
        return Outcome(f"Ended {ended} session(s).")

    # ------------------------------------------------------------------ messages
    def _message(self, to: JID, subject: str | None, body: str, mtype: str) -> Element:
        msg = Element("message", NS_CLIENT, {"type": mtype, "from": self.domain, "to": str(to)})
        if subject:
            msg.add("subject", text=subject)
        msg.add("body", text=body)
        return msg

    def _text(self, form: DataForm, var: str) -> str:
        field = form.get(var)
        text = "\n".join(v for v in (field.values if field else ()) if v is not None)
        if not text.strip():
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, f"'{var}' is required")
        return text

    async def announce(self, admin: JID, form: DataForm) -> Outcome:
        body = self._text(form, "announcement")
        subject = form.value("subject")
        sent = 0
        for session in self.sessions.all_sessions():
            if session.host == self.domain and session.is_available:
                session.send(self._message(session.jid, subject, body, "headline"))
                sent += 1
        return Outcome(f"Announced to {sent} session(s).")

    async def set_motd(self, admin: JID, form: DataForm) -> Outcome:
        body = self._text(form, "motd")
        subject = form.value("subject")
        await self.motd_store.set(self.domain, "", json.dumps({"subject": subject, "body": body}))
        self.motd = (subject, body)
        return Outcome("The message of the day is set.")

    async def delete_motd(self, admin: JID, form: DataForm) -> Outcome:
        await self.motd_store.set(self.domain, "", None)
        self.motd = None
        return Outcome("The message of the day is deleted.")

    def send_motd(self, event: AvailablePresence) -> None:
        session = event.session
        if self.motd is None or session.get(MOTD_SENT):
            return
        session.set(MOTD_SENT, True)
        subject, body = self.motd
        session.send(self._message(session.jid, subject, body, "headline"))

    # ------------------------------------------------------------------ last login
    def logged_in(self, event: ResourceBound) -> None:
        self.logins[event.session.jid.local or ""] = self.clock.time()

    async def flush_logins(self) -> None:
        batch, self.logins = self.logins, {}
        if not batch:
            return
        # One transaction for the lot: a login storm must not become a storm of writes.
        documents = {username: json.dumps({"at": at}) for username, at in batch.items()}
        try:
            await self.logins_store.set_many(self.domain, documents)
        except Exception:
            self.log.exception("could not record the last login of %d users", len(batch))
            for username, at in batch.items():
                self.logins.setdefault(username, at)

    def forget(self, event: AccountDeleted) -> None:
        self.logins.pop(event.jid.local or "", None)
