"""The stanzas of external statuses, pure: the presence shown for a user, and the two ways of
reading the user's roster (XEP-0356 roster get, XEP-0133 ``get-user-roster``)."""

from __future__ import annotations

from xml.etree.ElementTree import Element, SubElement

from ...xmpp.forms import COMMANDS_NS, DATA_NS
from ...xmpp.stanzas import error_of
from .request import Status

ROSTER_NS = "jabber:iq:roster"
ACTIVITY_NS = "http://jabber.org/protocol/activity"
GET_USER_ROSTER = "http://jabber.org/protocol/admin#get-user-roster"
VISIBLE_TO = ("from", "both")  # subscriptions that let the contact see the user's presence


def presence(status: Status, sender: str, to: str) -> Element:
    """The presence ``sender`` (the user's full JID) shows ``to``."""
    stanza = Element("presence", {"from": sender, "to": to})
    if not status.available:
        stanza.set("type", "unavailable")
        return stanza
    if status.show:
        SubElement(stanza, "show").text = status.show
    if status.status:
        SubElement(stanza, "status").text = status.status
    SubElement(stanza, "priority").text = str(status.priority)
    if status.activity:
        activity = SubElement(stanza, f"{{{ACTIVITY_NS}}}activity")
        category = SubElement(activity, f"{{{ACTIVITY_NS}}}{status.activity.category}")
        if status.activity.type:
            SubElement(category, f"{{{ACTIVITY_NS}}}{status.activity.type}")
        if status.activity.text:
            SubElement(activity, f"{{{ACTIVITY_NS}}}text").text = status.activity.text
    return stanza


class RosterError(Exception):
    """The roster could not be read; the message says why. ``no_account``: the server said the
    user does not exist."""

    def __init__(self, reason: str, no_account: bool = False):
        super().__init__(reason)
        self.no_account = no_account


def roster_get_iq(user: str) -> Element:
    """XEP-0356 roster get: a roster query addressed to the user, answered by the server."""
    iq = Element("iq", {"type": "get", "to": user})
    SubElement(iq, f"{{{ROSTER_NS}}}query")
    return iq


def get_user_roster_iq(domain: str, user: str) -> Element:
    """XEP-0133 get-user-roster with the form submitted in the first execute (one round trip)."""
    iq = Element("iq", {"type": "set", "to": domain})
    command = SubElement(iq, f"{{{COMMANDS_NS}}}command", {"node": GET_USER_ROSTER, "action": "execute"})
    form = SubElement(command, f"{{{DATA_NS}}}x", {"type": "submit"})
    for var, value in (("FORM_TYPE", "http://jabber.org/protocol/admin"), ("accountjid", user)):
        SubElement(SubElement(form, f"{{{DATA_NS}}}field", {"var": var}), f"{{{DATA_NS}}}value").text = value
    return iq


def contacts_in(reply: Element, who: str) -> frozenset[str]:
    """Bare JIDs that may see the user's presence, from either roster answer; RosterError otherwise.
    Both carry a ``jabber:iq:roster`` query (the admin command puts it inside its result form)."""
    if reply.get("type") == "error":
        condition, text = error_of(reply)
        raise RosterError(f"{who} answered {condition or 'an error'}" + (f": {text}" if text else ""))
    for note in reply.iter(f"{{{COMMANDS_NS}}}note"):
        if note.get("type") == "error":
            text = (note.text or "").strip()
            # Prosody's mod_admin_adhoc: "User does not exist".
            raise RosterError(f"{who} answered: {text or 'an error note'}", no_account="not exist" in text.lower())
    query = next(reply.iter(f"{{{ROSTER_NS}}}query"), None)
    if query is None:
        raise RosterError(f"{who} answered without a roster")
    return frozenset(jid for item in query.iter(f"{{{ROSTER_NS}}}item")
                     if (jid := item.get("jid")) and item.get("subscription") in VISIBLE_TO)


