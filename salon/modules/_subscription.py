"""RFC 6121 §3 and Appendix A: what the server does with a presence subscription stanza.

Pure rules, no IO. The state of one (user, contact) pair is a :class:`SubState`: the two
subscription directions, the pending requests each way and the pre-approval flag. Given the
state and a subscription stanza, :func:`outbound` (sent by the user) or :func:`inbound`
(received from the contact) returns an :class:`Outcome`: the new state and what the server
does about it. The presence module carries the outcome out; the roster item, the pending
inbound request and the pushes follow from comparing the two states.

"Pending in" is not part of the roster item: it is "a PendingSubscription exists" (RFC 6121
§3.1.3 says not to add an item for a requester the user has not approved).

Choices where the RFC leaves room, and why:

* Outbound subscribe and unsubscribe are always routed, whatever the state (Appendix A.2.1
  and A.2.3): re-sending one is how two servers whose records drifted apart resynchronise.
* Subscription pre-approval (§3.4) is supported: an outbound ``subscribed`` with nothing to
  approve sets ``approved``; a later inbound ``subscribe`` is then answered at once. An
  outbound ``unsubscribed`` with nothing to cancel clears a pre-approval.
* An inbound ``subscribe`` from a contact that already has a subscription is answered
  ``subscribed`` on the user's behalf (§3.1.3), and the user's current presence goes with it
  so that a contact whose records were lost sees the user again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from salon.storage.interfaces import RosterItem

SUBSCRIPTION_TYPES = frozenset(("subscribe", "subscribed", "unsubscribe", "unsubscribed"))

PresenceAction = Literal["available", "unavailable"]

_SUBSCRIPTION_NAMES = {
    (False, False): "none",
    (True, False): "to",
    (False, True): "from",
    (True, True): "both",
}


@dataclass(frozen=True, slots=True)
class SubState:
    """One contact as seen from the user's account (RFC 6121 Appendix A.1)."""

    to: bool = False
    """The user receives the contact's presence."""
    from_: bool = False
    """The contact receives the user's presence."""
    pending_out: bool = False
    """The user asked the contact for a subscription (the item's ``ask``)."""
    pending_in: bool = False
    """The contact asked the user for a subscription (a stored PendingSubscription)."""
    approved: bool = False
    """The user pre-approved a subscription request from the contact (§3.4)."""

    @property
    def subscription(self) -> str:
        """The roster item's ``subscription`` attribute."""
        return _SUBSCRIPTION_NAMES[(self.to, self.from_)]

    @property
    def name(self) -> str:
        """The state's name in Appendix A.1, such as ``"None + Pending Out+In"``."""
        base = self.subscription.capitalize()
        pending = ("Out" if self.pending_out else "") + (
            ("+In" if self.pending_out else "In") if self.pending_in else ""
        )
        return f"{base} + Pending {pending}" if pending else base

    @classmethod
    def named(cls, name: str, approved: bool = False) -> SubState:
        """The state called ``name`` in Appendix A.1 (``"To + Pending In"``, ...)."""
        base, _, pending = name.partition(" + Pending ")
        sub = {v: k for k, v in _SUBSCRIPTION_NAMES.items()}[base.lower()]
        return cls(
            to=sub[0],
            from_=sub[1],
            pending_out=pending.startswith("Out"),
            pending_in=pending.endswith("In"),
            approved=approved,
        )

    @classmethod
    def of(cls, item: RosterItem | None, pending_in: bool) -> SubState:
        """The state stored as a roster item (or none) and a pending request (or none)."""
        if item is None:
            return cls(pending_in=pending_in)
        return cls(
            to=item.subscription in ("to", "both"),
            from_=item.subscription in ("from", "both"),
            pending_out=item.ask,
            pending_in=pending_in,
            approved=item.approved,
        )

    def item(self, jid: str, previous: RosterItem | None) -> RosterItem:
        """The roster item recording this state, keeping ``previous``'s name and groups."""
        base = previous if previous is not None else RosterItem(jid=jid)
        return replace(
            base,
            subscription=self.subscription,
            ask=self.pending_out,
            approved=self.approved,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the server does with one subscription stanza."""

    before: SubState
    after: SubState
    forward: bool = False
    """Outbound: route the stanza to the contact. Inbound: deliver it to the user's available
    resources (and keep it for later ones while it is pending)."""
    reply: str | None = None
    """Inbound only: a presence type the server sends the contact on the user's behalf."""
    presence: PresenceAction | None = None
    """Send the contact the user's current presence ("available", from each available
    resource) or "unavailable" from each available resource (§3.1.5, §3.2.2, §3.3.3)."""

    @property
    def item_changed(self) -> bool:
        """The roster item changes (or appears): store it and push it (§2.1.6)."""
        b, a = self.before, self.after
        return (b.to, b.from_, b.pending_out, b.approved) != (
            a.to,
            a.from_,
            a.pending_out,
            a.approved,
        )

    @property
    def store_pending(self) -> bool:
        """An inbound request starts waiting for the user's answer (§3.1.3)."""
        return self.after.pending_in and not self.before.pending_in

    @property
    def drop_pending(self) -> bool:
        """The waiting inbound request was answered or withdrawn."""
        return self.before.pending_in and not self.after.pending_in


def outbound(state: SubState, stype: str) -> Outcome:
    """The user sent a presence of type ``stype`` to the contact (§3.1.2, §3.1.5, §3.2.2,
    §3.3.2, §3.4; Appendix A.2)."""
    s = state
    if stype == "subscribe":
        after = s if s.to else replace(s, pending_out=True)
        return Outcome(s, after, forward=True)
    if stype == "subscribed":
        if s.pending_in:  # approving the contact's request
            after = replace(s, from_=True, pending_in=False, approved=False)
            return Outcome(s, after, forward=True, presence="available")
        if s.from_:  # nothing to approve: silently ignored
            return Outcome(s, s)
        return Outcome(s, replace(s, approved=True))  # pre-approval, never routed
    if stype == "unsubscribe":
        return Outcome(s, replace(s, to=False, pending_out=False), forward=True)
    if stype == "unsubscribed":
        if s.from_ or s.pending_in:  # cancelling the subscription, or denying the request
            after = replace(s, from_=False, pending_in=False, approved=False)
            presence: PresenceAction | None = "unavailable" if s.from_ else None
            return Outcome(s, after, forward=True, presence=presence)
        if s.approved:  # withdrawing a pre-approval
            return Outcome(s, replace(s, approved=False))
        return Outcome(s, s)
    raise ValueError(f"not a subscription type: {stype!r}")


def inbound(state: SubState, stype: str) -> Outcome:
    """The contact sent the user a presence of type ``stype`` (§3.1.3, §3.1.6, §3.2.3,
    §3.3.3, §3.4; Appendix A.3)."""
    s = state
    if stype == "subscribe":
        if s.from_:  # already subscribed: approve again on the user's behalf
            return Outcome(s, s, reply="subscribed", presence="available")
        if s.approved:  # pre-approved: approve on the user's behalf
            after = replace(s, from_=True, approved=False)
            return Outcome(s, after, reply="subscribed", presence="available")
        if s.pending_in:  # already waiting for the user: not delivered again
            return Outcome(s, s)
        return Outcome(s, replace(s, pending_in=True), forward=True)
    if stype == "subscribed":
        if s.pending_out:
            return Outcome(s, replace(s, to=True, pending_out=False), forward=True)
        return Outcome(s, s)  # nothing was asked: silently ignored
    if stype == "unsubscribe":
        if s.from_ or s.pending_in:
            after = replace(s, from_=False, pending_in=False)
            presence: PresenceAction | None = "unavailable" if s.from_ else None
            return Outcome(s, after, forward=True, presence=presence)
        return Outcome(s, s)
    if stype == "unsubscribed":
        if s.to or s.pending_out:
            return Outcome(s, replace(s, to=False, pending_out=False), forward=True)
        return Outcome(s, s)
    raise ValueError(f"not a subscription type: {stype!r}")
