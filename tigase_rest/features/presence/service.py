"""External statuses: presence shown on behalf of a user who has no session (Tigase's UserStatus).

Tigase creates a fake session in its session manager. A component cannot, so a status is sent as
directed presence from ``user@domain/<resource>`` to every roster contact allowed to see the
user's presence (subscription "from" or "both"), and to the user's own bare JID, which a real
session's broadcast reaches too. The server keeps no trace of that presence, so this manager:

- reads the user's roster: XEP-0356 roster get when the server grants it, else the XEP-0133
  admin command ``get-user-roster`` (Prosody; the component must be a server admin);
- sends the presence again to a contact's resource that comes online: with the XEP-0356
  presence permission the server forwards the users' broadcast presences to the component;
- sends everything again on every (re)connect of the link, and keeps the statuses in its store
  (SQLite, ``<[storage] data_dir>/statuses.sqlite3``; or PostgreSQL) so they survive a restart.

Several instances (``[xmpp] deployment``, README "Scaling out") share one PostgreSQL store: any
instance may set or withdraw any status (it reads the user's rows from the store first), and every
instance sends every status: on its own (re)connect, and to a contact's resource that comes online
(the server forwards that presence to each privileged instance). A contact may thus get the same
presence once per instance: presence is idempotent (the latest one per full JID counts), so a
duplicate changes nothing a client shows. An instance learns the others' changes from the store's
notifications (``StatusStore.watch``), reloading that user's rows and reading their roster.

The server must accept stanzas with a user's ``from`` from the component (Prosody:
``validate_from_addresses = false``; ejabberd: ``check_from: false``). Otherwise it closes the
link (invalid-from); statuses are then switched off until the component restarts, and each call
says why, so a re-announce does not close every reconnected link again.

The resource exists only as presence: messages to the user's bare JID are never routed to it,
whatever its priority (unlike Tigase's fake session, where a non-negative priority could).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from collections.abc import Set as AbstractSet
from typing import Any, Coroutine

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from ...errors import HttpError
from ...xmpp.component import Link
from ...xmpp.privilege import PrivilegeTracker
from ...xmpp.stanzas import COMPONENT_NS
from .request import Status
from .stanzas import RosterError, contacts_in, get_user_roster_iq, presence, roster_get_iq
from .store import StatusStore

log = logging.getLogger(__name__)

# On connect the server's XEP-0356 grant follows the handshake; a server without it sends none.
PRIVILEGE_WAIT = 2.0  # seconds


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



class ExternalStatuses:
    """The statuses set through ``/rest/user/{jid}/status``: one per process.

    It uses the component link (stanzas and IQs), the domain it serves, the privilege tracker
    (XEP-0356 roster permission and the grant) and its store; nothing else."""

    def __init__(self, link: Link, domain: str, privileges: PrivilegeTracker, store: StatusStore,
                 max_per_user: int = 10, max_total: int = 10_000):
        self.link = link
        self.domain = domain
        self.privileges = privileges
        self.store = store
        self.max_per_user = max_per_user  # resources per user: [presence] max_statuses_per_user
        self.max_total = max_total  # statuses in all: [presence] max_statuses
        self._statuses: dict[str, dict[str, Status]] | None = None  # user -> resource -> status; loaded lazily
        self._contacts: dict[str, frozenset[str]] = {}  # user -> contacts, refreshed on every POST and connect
        self._pending: set[str] = set()  # users the re-announce after a connect has not reached yet
        self._seen: set[str] = set()  # online full JIDs that already got the statuses they may see
        self._tasks: set[asyncio.Task] = set()
        self._announcing: asyncio.Task | None = None
        self._refused: str | None = None  # why the server will not take presence from user JIDs

    # -- wiring --

    def setup(self, xmpp) -> None:
        """Hook into the ComponentXMPP (``ComponentLink.on_setup``): connects, forwarded presences."""
        xmpp.add_event_handler("session_start", self._on_connected)
        xmpp.add_event_handler("stream_error", self._on_stream_error)
        xmpp.register_handler(Callback(
            "external statuses: presences", MatchXPath(f"{{{COMPONENT_NS}}}presence"), self._on_presence))
        self.store.watch(self._changed_elsewhere)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()

    # -- the REST call --

    async def set(self, user: str, resource: str, status: Status) -> Outcome:
        """Show ``status`` as ``user/resource`` to the user's contacts, or (not available) withdraw it."""
        full = f"{user}/{resource}"
        if self._refused:
            return Outcome(full, status, False, reason=self._refused)
        statuses = await self._current(user)
        if status.available:
            if resource not in statuses.get(user, {}):
                self._check_room(user, statuses)  # before the roster read: a refusal costs the server nothing
            try:
                contacts = await self._refresh(user)
                if user not in statuses and not self._contacts.get(user):
                    await self._check_account(user)
            except RosterError as e:
                if e.no_account:
                    self._contacts.pop(user, None)
                    raise HttpError(404, f"{user} has no account on {self.domain}: {e}") from None
                return Outcome(full, status, False, reason=str(e))
            if resource not in statuses.get(user, {}):
                self._check_room(user, statuses)  # again: other requests may have added some meanwhile
            await self.store.put(user, resource, status)
            statuses.setdefault(user, {})[resource] = status
            self._send(user, {resource: status}, contacts | {user})
            return Outcome(full, status, True, len(contacts))

        # Offline. When the roster cannot be read, the contacts it was last shown to are told.
        known = self._contacts.get(user)
        try:
            contacts, reason = await self._refresh(user), None
        except RosterError as e:
            contacts, reason = known or frozenset(), str(e)
        await self._forget(user, resource)
        self._send(user, {resource: status}, contacts | {user})
        if reason and known is None:
            return Outcome(full, status, False, reason=reason)
        return Outcome(full, status, True, len(contacts))

    def _check_room(self, user: str, statuses: dict[str, dict[str, Status]]) -> None:
        """409 when a new status would pass a bound (each is kept and re-sent on every reconnect)."""
        shown = len(statuses.get(user, {}))
        if shown >= self.max_per_user:
            raise HttpError(409, f"{user} already shows {shown} statuses, the most allowed "
                                 f"([presence] max_statuses_per_user); withdraw one first (available=false)")
        total = sum(len(resources) for resources in statuses.values())
        if total >= self.max_total:
            raise HttpError(409, f"The component already holds {total} statuses, the most allowed "
                                 f"([presence] max_statuses); withdraw some first (available=false)")

    async def _check_account(self, user: str) -> None:
        """A user with no contacts may have no account: an XEP-0356 roster read answers an empty roster
        for any name (Prosody), so the admin command, which knows, is asked. RosterError(no_account)
        when the server says there is no such user; when it cannot tell (not an admin), nothing."""
        try:
            contacts_in(await self.link.request(get_user_roster_iq(self.domain, user)), self.domain)
        except RosterError as e:
            if e.no_account:
                raise
        except HttpError as e:
            if e.status == 503:
                raise

    async def _forget(self, user: str, resource: str) -> None:
        await self.store.delete(user, resource)
        statuses = await self._load()
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
        current = (self._statuses or {}).get(user, {})
        if gone and current:
            self._send(user, {resource: Status(available=False) for resource in current}, gone)
        return contacts

    async def _roster(self, user: str) -> frozenset[str]:
        """XEP-0356 roster get when granted, else (or when it fails) the admin command.
        RosterError says why neither worked; a link that is down raises its 503."""
        domain = self.domain
        failures: list[str] = []

        async def attempt(iq, source: str, what: str) -> frozenset[str] | None:
            try:
                return contacts_in(await self.link.request(iq), f"{source}: {what}")
            except RosterError as e:
                failures.append(str(e))
            except HttpError as e:
                if e.status == 503:
                    raise
                failures.append(f"{source}: {e.reason}")
            return None

        if self.privileges.current.can_get_roster():
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

    def _send(self, user: str, statuses: dict[str, Status], targets: AbstractSet[str]) -> None:
        for resource, status in statuses.items():
            for to in targets:
                try:
                    self.link.send(presence(status, f"{user}/{resource}", to))
                except HttpError as e:
                    if e.status == 503:
                        raise  # the link is down: the next connect sends everything again
                    # Refused before it was sent (too large, a character XML cannot carry): the
                    # link stays up; the other statuses and contacts still get theirs.
                    log.warning("Status of %s/%s not sent to %s: %s", user, resource, to, e.reason)

    @property
    def count(self) -> int:
        """Statuses this instance holds, every user's resources together (for /metrics; 0 until loaded)."""
        return sum(len(resources) for resources in (self._statuses or {}).values())

    async def _load(self, fresh: bool = False) -> dict[str, dict[str, Status]]:
        """All statuses (read from the store once; ``fresh``: read again, in place)."""
        if self._statuses is None or fresh:
            loaded = await self.store.load()
            if self._statuses is None:
                self._statuses = loaded
            else:
                self._statuses.clear()
                self._statuses.update(loaded)
        return self._statuses

    async def _current(self, user: str) -> dict[str, dict[str, Status]]:
        """All statuses, with ``user``'s read again from a shared store (another instance may have
        changed them a moment ago; its notification may still be on its way)."""
        statuses = await self._load()
        if self.store.shared:
            self._keep(user, await self.store.load_user(user))
        return statuses

    def _keep(self, user: str, current: dict[str, Status]) -> None:
        assert self._statuses is not None
        if current:
            self._statuses[user] = current
        else:
            self._statuses.pop(user, None)
            self._contacts.pop(user, None)

    def _changed_elsewhere(self, user: str | None) -> None:
        """Another instance changed ``user``'s statuses (None: maybe anyone's)."""
        if self._statuses is not None:  # else the first use reads everything anyway
            self._spawn(self._reload(user))

    async def _reload(self, user: str | None) -> None:
        try:
            if user is None:
                statuses = await self._load(fresh=True)
                for gone in set(self._contacts) - set(statuses):
                    self._contacts.pop(gone, None)
                users = list(statuses)
            else:
                current = await self.store.load_user(user)
                self._keep(user, current)
                users = [user] if current else []
            # The contacts of a user this instance never served: a contact coming online gets that
            # user's statuses from here too.
            for name in users:
                if name not in self._contacts and self.link.connected and not self._refused:
                    await self._refresh(name)
        except (HttpError, RosterError) as e:
            log.warning("External statuses changed through another instance: not (fully) reloaded: %s", e)

    def _spawn(self, coroutine: Coroutine) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- events from the link --

    def _on_connected(self, _event) -> None:
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

    async def _announce_all(self) -> None:
        """After a (re)connect: fresh rosters, then every stored status to every contact."""
        if self._refused:
            log.warning("External statuses not re-announced: %s", self._refused)
            return
        if not await self.privileges.wait_granted(PRIVILEGE_WAIT):
            log.debug("No XEP-0356 grant within %ss of connecting; reading rosters with the admin command",
                      PRIVILEGE_WAIT)
        try:
            statuses = await self._load(fresh=self.store.shared)  # any instance's, as they are now
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
