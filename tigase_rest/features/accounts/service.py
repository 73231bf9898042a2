"""Account operations over XEP-0133 admin commands, as whoever the request acts as.

``Accounts`` is built once (``app.serve``); a request binds it to its identity with ``acting(ask)``:
``ask`` is the caller's own session when a login was given, else the component link (the component
is a server admin in the server's config). The server then decides: a non-admin caller gets 403.

What each server offers (measured on Prosody 0.12.3 and ejabberd 23.01):

| operation | Prosody (mod_admin_adhoc) | ejabberd (mod_configure) |
|---|---|---|
| exists | user-stats: error note "User does not exist" | user-stats answers for any name: get-registered-users-list membership |
| create | add-user; error note "Account already exists" | add-user; IQ error conflict |
| password | change-user-password; error note "User does not exist" | the same; item-not-found |
| delete | delete-user (accountjids); info note "could not be deleted" | the same; item-not-found |
| list, count | none: 501 | get-registered-users-list / -num (a bare execute; a form is refused) |
| online | get-online-users-list (max_items=all) | get-online-users-num |
| uptime, version | jabber:iq:last, jabber:iq:version on the domain | the same |
| virtual hosts | none: 501 | none: 501 |
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from xml.etree.ElementTree import Element

from ...errors import HttpError
from .stanzas import (
    LAST_NS, VERSION_NS, CommandFailed, CommandReply, admin_command_iq, admin_node, query_iq, read_command,
    uptime_of, version_of,
)

Ask = Callable[[Element], Awaitable[Element]]

NO_LIST = ("the server offers no XEP-0133 get-registered-users-list command on {domain} (Prosody's "
           "mod_admin_adhoc has none; ejabberd's mod_configure has it): enable a server module that offers it")
NO_VHOSTS = ("the server does not tell its virtual hosts over XMPP (neither Prosody nor ejabberd offers a "
             "command or disco node listing them); see the server's own configuration")


def _missing(e: HttpError) -> bool:
    """The command is not offered: Prosody 503 service-unavailable, ejabberd 404 "No hook has processed"."""
    return e.condition in ("service-unavailable", "feature-not-implemented") or (
        e.condition == "item-not-found" and "no hook" in (e.text or "").lower())


class Accounts:
    def __init__(self) -> None:
        self.lacks_list: set[str] = set()  # domains whose server answered that it has no registered-users list

    def acting(self, ask: Ask) -> "AccountsAs":
        return AccountsAs(self, ask)


class AccountsAs:
    __slots__ = ("accounts", "ask")

    def __init__(self, accounts: Accounts, ask: Ask):
        self.accounts = accounts
        self.ask = ask

    async def _run(self, domain: str, command: str, fields: dict[str, Any] | None = None) -> CommandReply:
        return read_command(await self.ask(admin_command_iq(domain, command, fields)), domain)

    # -- one account --

    async def get(self, jid: str) -> dict[str, Any]:
        """{jid, domain, roster_size?, resources, online}; 404 when the server has no such account."""
        local, _, domain = jid.partition("@")
        try:
            stats = await self._run(domain, "user-stats", {"accountjid": jid})
        except CommandFailed as e:
            raise self._not_found(jid, domain, e) from None
        registered = await self._registered(domain)
        if registered is not None and jid not in registered:
            raise HttpError(404, f"{jid} has no account on {domain}", condition="item-not-found")
        user: dict[str, Any] = {"jid": jid, "domain": domain}
        if stats.value("rostersize") is not None:
            user["roster_size"] = int(stats.value("rostersize") or 0)
        resources = [r for r in stats.fields.get("onlineresources", []) if r]
        user["resources"] = resources
        user["online"] = bool(resources)
        return user

    async def create(self, jid: str, password: str, email: str | None) -> dict[str, Any]:
        domain = jid.partition("@")[2]
        fields: dict[str, Any] = {"accountjid": jid, "password": password, "password-verify": password}
        if email:
            fields["email"] = email  # XEP-0133's optional field; the servers here accept and ignore it
        try:
            await self._run(domain, "add-user", fields)
        except CommandFailed as e:
            if "exist" in e.text.lower():
                raise HttpError(409, "User exists", condition="conflict", text=e.text) from None
            raise HttpError(422, f"{domain} refused to create {jid}: {e.text}", text=e.text) from None
        except HttpError as e:
            if e.condition == "conflict":
                raise HttpError(409, "User exists", condition="conflict", text=e.text) from None
            raise
        return {"jid": jid, "domain": domain, **({"email": email} if email else {})}

    async def set_password(self, jid: str, password: str) -> None:
        await self._run_on_account(jid, "change-user-password", {"accountjid": jid, "password": password})

    async def delete(self, jid: str) -> dict[str, Any]:
        domain = jid.partition("@")[2]
        reply = await self._run_on_account(jid, "delete-user", {"accountjids": [jid]})
        for _kind, text in reply.notes:
            if "could not be deleted" in text and jid in text:  # Prosody: an info note
                raise HttpError(404, f"{jid} has no account on {domain}", condition="item-not-found", text=text)
        return {"jid": jid, "domain": domain}

    async def _run_on_account(self, jid: str, node: str, fields: dict[str, Any]) -> CommandReply:
        """Run ``node`` about the existing account ``jid``: 404 when the server says it has none
        (Prosody in an error note, ejabberd as item-not-found), 422 for another error note."""
        domain = jid.partition("@")[2]
        try:
            return await self._run(domain, node, fields)
        except CommandFailed as e:
            raise self._not_found(jid, domain, e) from None
        except HttpError as e:
            if e.condition == "item-not-found" and not _missing(e):
                raise HttpError(404, f"{jid} has no account on {domain}", condition="item-not-found") from None
            raise

    def _not_found(self, jid: str, domain: str, e: CommandFailed) -> HttpError:
        if "not exist" in e.text.lower():
            return HttpError(404, f"{jid} has no account on {domain}", condition="item-not-found", text=e.text)
        return HttpError(422, f"{domain} answered for {jid}: {e.text}", text=e.text)

    # -- lists and numbers --

    async def _registered(self, domain: str) -> set[str] | None:
        """The registered accounts of ``domain``, or None when the server has no such list."""
        if domain in self.accounts.lacks_list:
            return None
        try:
            reply = await self._run(domain, "get-registered-users-list")  # no form: ejabberd refuses one
        except HttpError as e:
            if _missing(e):
                self.accounts.lacks_list.add(domain)
                return None
            raise
        return set(reply.fields.get("registereduserjids", []))

    async def users(self, domain: str) -> list[str]:
        """Every account of ``domain``, sorted; 501 when the server cannot list them."""
        registered = await self._registered(domain)
        if registered is None:
            raise HttpError(501, NO_LIST.format(domain=domain), condition="feature-not-implemented")
        return sorted(registered)

    async def server_stats(self, domain: str) -> list[dict[str, Any]]:
        """Tigase's stats items ``{var, value, label}`` from what the server tells: online and registered
        users (XEP-0133), uptime (XEP-0012) and version (XEP-0092). What it cannot tell is left out and
        named in an item ``unavailable``."""
        answers: tuple[Any, ...] = await asyncio.gather(
            self._online(domain), self._number(domain, "get-registered-users-num", "registeredusersnum"),
            self._query(domain, LAST_NS, uptime_of), self._query(domain, VERSION_NS, version_of),
            return_exceptions=True)
        online, registered, uptime, version = answers
        if all(isinstance(a, BaseException) for a in answers):
            raise next(a for a in answers if isinstance(a, BaseException))  # e.g. the link is down: 503
        data: list[dict[str, Any]] = []
        missing: list[str] = []
        for var, label, value, source in (
            ("online-users", "Number of online users", online, admin_node("get-online-users-num")),
            ("registered-users", "Number of registered users", registered, admin_node("get-registered-users-num")),
            ("uptime", "Uptime (seconds)", uptime, "jabber:iq:last"),
        ):
            if isinstance(value, BaseException):
                if isinstance(value, HttpError) and value.status in (401, 403, 504) or not isinstance(
                        value, (HttpError, CommandFailed)):
                    raise value
                missing.append(source)
            elif value is not None:
                data.append({"var": var, "value": str(value), "label": label})
        if isinstance(version, dict):
            for key, text in version.items():
                data.append({"var": f"version/{key}", "value": text, "label": f"Server {key}"})
        else:
            missing.append("jabber:iq:version")
        if missing:
            data.append({"var": "unavailable", "value": missing, "label": "Not offered by the server"})
        return data

    async def _online(self, domain: str) -> int:
        try:
            return await self._number(domain, "get-online-users-num", "onlineusersnum")
        except HttpError as e:
            if not _missing(e):
                raise
        reply = await self._run(domain, "get-online-users-list", {"max_items": "all"})  # Prosody
        return len([j for j in reply.fields.get("onlineuserjids", []) if j])

    async def _number(self, domain: str, command: str, var: str) -> int:
        reply = await self._run(domain, command)
        value = reply.value(var)
        if value is None or not value.strip().isdigit():
            raise CommandFailed(domain, admin_node(command), f"no number in {var}")
        return int(value)

    async def _query(self, domain: str, namespace: str, read: Callable[[Element, str], Any]) -> Any:
        return read(await self.ask(query_iq(domain, namespace)), domain)

    async def vhosts(self, domain: str) -> list[dict[str, Any]]:
        raise HttpError(501, NO_VHOSTS, condition="feature-not-implemented")
