"""External statuses: presence shown on behalf of a user who has no session (Tigase's UserStatus).

Tigase creates a fake session in its session manager. A component cannot, so a status is sent as
directed presence from ``user@domain/<resource>`` to every roster contact allowed to see the
user's presence (subscription "from" or "both"), and to the user's own bare JID, which a real
session's broadcast reaches too. The server keeps no trace of that presence, so this manager:

- reads the user's roster: XEP-0356 roster get when the server grants it, else the XEP-0133
  admin command ``get-user-roster`` (Prosody; the component must be a server admin);
- sends the presence again to a contact's resource that comes online: with the XEP-0356
  presence permission the server forwards the users' broadcast presences to the component;
- sends everything again on every (re)connect of the link, and keeps the statuses in SQLite
  (``<[storage] data_dir>/statuses.sqlite3``) so they survive a restart of the component.

The server must accept stanzas with a user's ``from`` from the component (Prosody:
``validate_from_addresses = false``; ejabberd: ``check_from: false``). Otherwise it closes the
link (invalid-from); statuses are then switched off until the component restarts, and each call
says why, so a re-announce does not close every reconnected link again.

The resource exists only as presence: messages to the user's bare JID are never routed to it,
whatever its priority (unlike Tigase's fake session, where a non-negative priority could).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Coroutine
from xml.etree.ElementTree import Element, SubElement

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from ..coding import check_xml_text
from ..errors import HttpError
from .forms import COMMANDS_NS, DATA_NS
from .privilege import GRANT_NAMESPACES
from .stanzas import COMPONENT_NS, error_of

if TYPE_CHECKING:
    from ..app import Runtime

log = logging.getLogger(__name__)

DEFAULT_RESOURCE = "tigase-external"
DEFAULT_PRIORITY = -1  # negative, as the Tigase docs advise
SHOWS = ("chat", "away", "xa", "dnd")
ROSTER_NS = "jabber:iq:roster"
ACTIVITY_NS = "http://jabber.org/protocol/activity"
# XEP-0108 general categories; the category and type become element names, so both are checked.
ACTIVITY_CATEGORIES = ("doing_chores", "drinking", "eating", "exercising", "grooming", "having_appointment",
                       "inactive", "relaxing", "talking", "traveling", "undefined", "working")
ACTIVITY_TYPE = re.compile(r"[a-z_]{1,64}")
INTEGER = re.compile(r"[+-]?[0-9]{1,4}")  # not int(): it also takes "1_0" and non-ASCII digits
GET_USER_ROSTER = "http://jabber.org/protocol/admin#get-user-roster"
VISIBLE_TO = ("from", "both")  # subscriptions that let the contact see the user's presence
STORE_NAME = "statuses.sqlite3"
# On connect the server's XEP-0356 grant follows the handshake; a server without it sends none.
PRIVILEGE_WAIT = 2.0  # seconds


# --- the request -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Activity:
    """XEP-0108 user activity, as Tigase's script puts it in the presence."""

    category: str
    type: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Status:
    available: bool = True
    priority: int = DEFAULT_PRIORITY
    show: str | None = None
    status: str | None = None
    activity: Activity | None = None


def parse_status(content: Any) -> Status:
    """A POST body (flat, or wrapped in ``command`` or any other XML root) as a Status; 400 with
    the reason. No body means all defaults: available, priority -1."""
    if content is None or content == "":
        return Status()
    if not isinstance(content, dict):
        raise HttpError(400, f"The body must be an object like {{\"show\": \"xa\"}}, not a {_kind(content)}")
    if len(content) == 1:
        (key, inner), = content.items()
        # Tigase unwraps "command"; its XML parser also ignores the root's name (<status>, ...).
        # Only "activity" takes an object, so any other single object is a wrapper.
        if key == "command" or (key != "activity" and isinstance(inner, dict)):
            content = inner or {}
    if not isinstance(content, dict):
        raise HttpError(400, f"The body must be an object like {{\"show\": \"xa\"}}, not a {_kind(content)}")
    return Status(
        available=_available(content.get("available")),
        priority=_priority(content.get("priority")),
        show=_show(content.get("show")),
        status=_text(content.get("status"), "status"),
        activity=_activity(content.get("activity")),
    )


def _available(value: Any) -> bool:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise HttpError(400, f"'available' must be true or false, not {value!r}")


def _priority(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_PRIORITY
    if isinstance(value, str) and INTEGER.fullmatch(value.strip()):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise HttpError(400, f"'priority' must be an integer from -128 to 127, not {value!r}")
    if not -128 <= number <= 127:
        raise HttpError(400, f"'priority' must be an integer from -128 to 127, not {number}")
    return number


def _show(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if value not in SHOWS:
        raise HttpError(400, f"'show' must be one of {', '.join(SHOWS)}, not {value!r}")
    return value


def _text(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise HttpError(400, f"'{name}' must be a string, not a {_kind(value)}")
    return check_xml_text(value, f"'{name}'")


def _activity(value: Any) -> Activity | None:
    if value is None or value == "":
        return None
    if not isinstance(value, dict):
        raise HttpError(400, f"'activity' must be an object {{category, type, text}}, not a {_kind(value)}")
    category = value.get("category")
    if category not in ACTIVITY_CATEGORIES:
        raise HttpError(400, f"'activity.category' must be one of {', '.join(ACTIVITY_CATEGORIES)} "
                             f"(XEP-0108), not {category!r}")
    kind = _text(value.get("type"), "activity.type")
    if kind is not None and not ACTIVITY_TYPE.fullmatch(kind):
        raise HttpError(400, f"'activity.type' must be an XEP-0108 specific activity like 'partying', not {kind!r}")
    return Activity(category, kind, _text(value.get("text"), "activity.text"))


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string"}.get(type(value), type(value).__name__)


# --- stanzas -----------------------------------------------------------------------------------


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
    """The roster could not be read; the message says why."""


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
            raise RosterError(f"{who} answered: {(note.text or '').strip() or 'an error note'}")
    query = next(reply.iter(f"{{{ROSTER_NS}}}query"), None)
    if query is None:
        raise RosterError(f"{who} answered without a roster")
    return frozenset(item.get("jid") for item in query.iter(f"{{{ROSTER_NS}}}item")
                     if item.get("jid") and item.get("subscription") in VISIBLE_TO)


# --- the answer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    user: str  # full JID the presence comes from
    status: Status
    success: bool
    contacts: int = 0  # roster contacts the presence was sent to
    reason: str | None = None

    def as_data(self) -> dict:
        """Tigase's ``status`` object, plus ``contacts`` and, on failure, ``reason``."""
        s = self.status
        data: dict[str, Any] = {"user": self.user, "available": "true" if s.available else "false",
                                "priority": str(s.priority)}
        if s.show:
            data["show"] = s.show
        if s.status:
            data["status"] = s.status
        if s.activity:
            data["activity"] = {k: v for k, v in asdict(s.activity).items() if v is not None}
        data["success"] = self.success
        data["contacts"] = self.contacts
        if self.reason:
            data["reason"] = self.reason
        return {"status": data}


# --- storage -----------------------------------------------------------------------------------


class StatusStore:
    """The statuses in SQLite. Writes are one small row: they run inline on the event loop."""

    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: one statement per change
                db.execute("CREATE TABLE IF NOT EXISTS statuses (user TEXT NOT NULL, resource TEXT NOT NULL, "
                           "priority INTEGER NOT NULL, show TEXT, status TEXT, activity TEXT, "
                           "PRIMARY KEY (user, resource))")
            except (OSError, sqlite3.Error) as e:
                raise HttpError(500, f"Cannot open the status store {self.path}: {e}") from None
            self._db = db
        return self._db

    def load(self) -> dict[str, dict[str, Status]]:
        statuses: dict[str, dict[str, Status]] = {}
        try:
            rows = self._connection().execute(
                "SELECT user, resource, priority, show, status, activity FROM statuses").fetchall()
        except sqlite3.Error as e:
            raise HttpError(500, f"Cannot read the status store {self.path}: {e}") from None
        for user, resource, priority, show, status, activity in rows:
            statuses.setdefault(user, {})[resource] = Status(
                True, priority, show, status, Activity(**json.loads(activity)) if activity else None)
        return statuses

    def put(self, user: str, resource: str, status: Status) -> None:
        activity = json.dumps(asdict(status.activity)) if status.activity else None
        self._write("INSERT OR REPLACE INTO statuses VALUES (?, ?, ?, ?, ?, ?)",
                    (user, resource, status.priority, status.show, status.status, activity))

    def delete(self, user: str, resource: str) -> None:
        self._write("DELETE FROM statuses WHERE user = ? AND resource = ?", (user, resource))

    def _write(self, sql: str, args: tuple) -> None:
        try:
            self._connection().execute(sql, args)
        except sqlite3.Error as e:
            raise HttpError(500, f"Cannot write the status store {self.path}: {e}") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


# --- the manager -------------------------------------------------------------------------------


class ExternalStatuses:
    """One per process (``Runtime.statuses``): the statuses set through ``/rest/user/{jid}/status``."""

    def __init__(self, runtime: "Runtime"):
        self.runtime = runtime
        self.store = StatusStore(runtime.config.data_path / STORE_NAME)
        self._statuses: dict[str, dict[str, Status]] | None = None  # user -> resource -> status; loaded lazily
        self._contacts: dict[str, frozenset[str]] = {}  # user -> contacts, refreshed on every POST and connect
        self._pending: set[str] = set()  # users the re-announce after a connect has not reached yet
        self._seen: set[str] = set()  # online full JIDs that already got the statuses they may see
        self._granted = asyncio.Event()  # the server's XEP-0356 grant arrived on this connection
        self._tasks: set[asyncio.Task] = set()
        self._announcing: asyncio.Task | None = None
        self._refused: str | None = None  # why the server will not take presence from user JIDs

    # -- wiring (Runtime) --

    def setup(self, xmpp) -> None:
        """Hook into the ComponentXMPP: connects, the XEP-0356 grant, forwarded presences."""
        xmpp.add_event_handler("session_start", self._on_connected)
        xmpp.add_event_handler("stream_error", self._on_stream_error)
        for ns in GRANT_NAMESPACES:
            xmpp.register_handler(Callback(
                f"external statuses: xep-0356 grant {ns}",
                MatchXPath(f"{{{COMPONENT_NS}}}message/{{{ns}}}privilege"), self._on_grant))
        xmpp.register_handler(Callback(
            "external statuses: presences", MatchXPath(f"{{{COMPONENT_NS}}}presence"), self._on_presence))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.store.close()

    # -- the REST call --

    async def set(self, user: str, resource: str, status: Status) -> Outcome:
        """Show ``status`` as ``user/resource`` to the user's contacts, or (not available) withdraw it."""
        full = f"{user}/{resource}"
        if self._refused:
            return Outcome(full, status, False, reason=self._refused)
        statuses = self._loaded()
        if status.available:
            try:
                contacts = await self._refresh(user)
            except RosterError as e:
                return Outcome(full, status, False, reason=str(e))
            self.store.put(user, resource, status)
            statuses.setdefault(user, {})[resource] = status
            self._send(user, {resource: status}, contacts | {user})
            return Outcome(full, status, True, len(contacts))

        # Offline. When the roster cannot be read, the contacts it was last shown to are told.
        known = self._contacts.get(user)
        try:
            contacts, reason = await self._refresh(user), None
        except RosterError as e:
            contacts, reason = known or frozenset(), str(e)
        self._forget(user, resource)
        self._send(user, {resource: status}, contacts | {user})
        if reason and known is None:
            return Outcome(full, status, False, reason=reason)
        return Outcome(full, status, True, len(contacts))

    def _forget(self, user: str, resource: str) -> None:
        self.store.delete(user, resource)
        statuses = self._loaded()
        remaining = statuses.get(user, {})
        remaining.pop(resource, None)
        if not remaining:
            statuses.pop(user, None)
            self._contacts.pop(user, None)

    # -- roster --

    async def _refresh(self, user: str) -> frozenset[str]:
        """Read the user's contacts; those no longer in them stop seeing the user's statuses."""
        contacts = await self._roster(user)
        gone = self._contacts.get(user, frozenset()) - contacts
        self._contacts[user] = contacts
        current = self._loaded().get(user, {})
        if gone and current:
            self._send(user, {resource: Status(available=False) for resource in current}, gone)
        return contacts

    async def _roster(self, user: str) -> frozenset[str]:
        """XEP-0356 roster get when granted, else (or when it fails) the admin command.
        RosterError says why neither worked; a link that is down raises its 503."""
        domain = self.runtime.config.xmpp.domain
        failures: list[str] = []

        async def attempt(iq, source: str, what: str) -> frozenset[str] | None:
            try:
                return contacts_in(await self.runtime.link.request(iq), f"{source}: {what}")
            except RosterError as e:
                failures.append(str(e))
            except HttpError as e:
                if e.status == 503:
                    raise
                failures.append(f"{source}: {e.reason}")
            return None

        if self.runtime.privileges.can_get_roster():
            contacts = await attempt(roster_get_iq(user), "XEP-0356 roster get", user)
            if contacts is not None:
                return contacts
        else:
            failures.append("the server grants this component no XEP-0356 roster get")
        contacts = await attempt(get_user_roster_iq(domain, user), "admin command get-user-roster", domain)
        if contacts is not None:
            return contacts
        raise RosterError(f"Cannot read the roster of {user}: " + "; ".join(failures) +
                          ". Grant the component XEP-0356 roster get (Prosody: mod_privilege, privileged_entities"
                          " roster = \"get\"), or make it a server admin")

    # -- sending --

    def _send(self, user: str, statuses: dict[str, Status], targets: frozenset[str] | set[str]) -> None:
        for resource, status in statuses.items():
            for to in targets:
                self.runtime.link.send(presence(status, f"{user}/{resource}", to))

    def _loaded(self) -> dict[str, dict[str, Status]]:
        if self._statuses is None:
            self._statuses = self.store.load()
        return self._statuses

    def _spawn(self, coroutine: Coroutine) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- events from the link --

    def _on_connected(self, _event) -> None:
        self._granted.clear()
        self._seen.clear()
        # Contacts already online get everything from _announce_all: no per-presence copy before it.
        self._pending = set(self._statuses or ())
        if self._announcing is not None:
            self._announcing.cancel()  # left over from a connection that dropped meanwhile
        self._announcing = self._spawn(self._announce_all())

    def _on_stream_error(self, error) -> None:
        # Sending as a user is refused by closing the whole link; every reconnect would re-announce
        # and be closed again, so stop sending statuses until the component restarts.
        if error["condition"] == "invalid-from" and not self._refused:
            self._refused = ("The XMPP server refuses stanzas from user JIDs over the component link (stream "
                             f"error invalid-from: {error['text'] or 'no text'}); allow them (Prosody: "
                             "validate_from_addresses = false in the Component block; ejabberd: check_from: "
                             "false) and restart the component")
            log.error("External statuses disabled: %s", self._refused)

    def _on_grant(self, message) -> None:
        if message["from"].bare == self.runtime.config.xmpp.domain:
            self._granted.set()

    async def _announce_all(self) -> None:
        """After a (re)connect: fresh rosters, then every stored status to every contact."""
        if self._refused:
            log.warning("External statuses not re-announced: %s", self._refused)
            return
        try:
            await asyncio.wait_for(self._granted.wait(), PRIVILEGE_WAIT)
        except asyncio.TimeoutError:
            log.debug("No XEP-0356 grant within %ss of connecting; reading rosters with the admin command",
                      PRIVILEGE_WAIT)
        try:
            statuses = self._loaded()
        except HttpError as e:
            log.error("External statuses not re-announced: %s", e.reason)
            return
        self._pending |= set(statuses)  # loaded just now after a restart
        try:
            for user in list(statuses):
                try:
                    contacts = await self._refresh(user)
                except RosterError as e:
                    log.warning("External status of %s not re-announced: %s", user, e)
                else:
                    current = statuses.get(user, {})
                    self._send(user, current, contacts | {user})
                    log.info("Re-announced %d external status(es) of %s to %d contacts",
                             len(current), user, len(contacts))
                self._pending.discard(user)
        except HttpError as e:  # the link dropped again: the next connect starts over
            log.warning("Re-announcing external statuses interrupted: %s", e.reason)

    def _on_presence(self, stanza) -> None:
        """A user's presence forwarded by the server (XEP-0356 presence permission): a contact's
        resource that comes online gets the statuses it may see, once per session."""
        sender = stanza["from"]
        kind = stanza.xml.get("type")
        if not sender.user or not sender.resource or kind not in (None, "unavailable"):
            return
        full = str(sender)
        if kind == "unavailable":
            self._seen.discard(full)
            return
        if full in self._seen or self._statuses is None or self._refused:
            return
        if sender.resource in self._statuses.get(sender.bare, {}):
            return  # one of ours, echoed back (ejabberd forwards the presences users receive too)
        # A scan, not a reverse index: few users have an external status.
        users = [user for user, contacts in self._contacts.items()
                 if (sender.bare in contacts or user == sender.bare) and user not in self._pending]
        if not users:
            return
        self._seen.add(full)
        try:
            for user in users:
                self._send(user, self._statuses.get(user, {}), {full})
        except HttpError as e:
            log.debug("External statuses not sent to %s: %s", full, e.reason)
