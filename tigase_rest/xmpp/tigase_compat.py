"""Tigase compatibility mode (``http.tigase_compat``): Tigase's command entities on any server.

Tigase serves the XEP-0133 admin commands at ``sess-man@{domain}`` and its VHost commands at
``vhost-man@{domain}``; Prosody and ejabberd serve XEP-0133 at ``{domain}`` itself. In compat mode
``/rest/adhoc/sess-man@{domain}`` and ``vhost-man@{domain}`` are answered by the server's own
commands at ``{domain}``, with Tigase's node names mapped to the closest command the server has and
the answer in the shape Tigase's own command gives (the reference documentation's examples):

| Tigase (entity, node) | sent to ``{domain}`` | answer |
|---|---|---|
| sess-man ``admin#get-active-users`` | ``admin#get-online-users-list`` (``max_items`` kept when the server offers it) | one field ``Users: N``, label ``text-multi``, the bare JIDs |
| sess-man ``admin#end-user-session`` | the same node (``accountjids`` or ejabberd's one ``accountjid`` per JID) | field ``Notes`` (text-multi) ``Operation successful for user JID`` for each account that was online; no field when none was |
| sess-man, any other node | the same node | Tigase's shape of the server's answer |
| vhost-man ``comp-repo-item-add`` / ``-update`` / ``-remove`` | nothing: 501 (no server but Tigase adds virtual hosts over XMPP) | |

Pure apart from ``run``, the caller's way of sending a command (as the caller, errors raised).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from xml.etree.ElementTree import Element

from ..coding import RepeatedElements
from ..errors import HttpError
from .forms import COMMANDS_NS, DATA_NS, DISCO_ITEMS_NS, command_result, raise_for_note, tigase_shape

ADMIN = "http://jabber.org/protocol/admin#"
ACTIVE_USERS = ADMIN + "get-active-users"
ONLINE_USERS = ADMIN + "get-online-users-list"
END_SESSION = ADMIN + "end-user-session"
SESS_MAN, VHOST_MAN = "sess-man", "vhost-man"

# Tigase's node -> the closest command Prosody and ejabberd have (README "Tigase compatibility mode").
NODE_MAP = {ACTIVE_USERS: ONLINE_USERS}
TIGASE_NAMES = {ACTIVE_USERS: "Get list of active users"}
NOT_OFFERED = {
    "comp-repo-item-add": "adding a virtual host",
    "comp-repo-item-update": "changing a virtual host's configuration",
    "comp-repo-item-remove": "removing a virtual host",
}

Run = Callable[[str, dict], Awaitable[Element]]


def alias_of(jid: str) -> tuple[str, str] | None:
    """(``sess-man`` or ``vhost-man``, domain) for Tigase's bare entity JIDs, else None."""
    local, at, domain = jid.partition("@")
    if at and local in (SESS_MAN, VHOST_MAN) and "/" not in domain:
        return local, domain
    return None


def request(node: str, fields: list | None = None, sessionid: str | None = None) -> dict:
    """A command request as ``forms.parse_command_request`` gives it."""
    return {"node": node, "fields": fields or [], "sessionid": sessionid, "action": None}


def commands_list(alias: str, jid: str, reply: Element | None) -> dict:
    """The server's commands at the domain (its disco#items ``reply``) as Tigase's entity lists
    them: every item under ``jid``, Tigase's names first for the commands mapped to the server's.
    vhost-man: no server command manages virtual hosts, so none."""
    if alias == VHOST_MAN or reply is None:
        return {"items": []}
    items = [{"jid": jid, "node": item.get("node"), "name": item.get("name")}
             for item in reply.iter(f"{{{DISCO_ITEMS_NS}}}item")]
    offered = {item["node"] for item in items}
    aliases = [{"jid": jid, "node": tigase, "name": TIGASE_NAMES[tigase]}
               for tigase, node in NODE_MAP.items() if node in offered]
    return {"items": aliases + items}


async def execute(run: Run, alias: str, jid: str, domain: str, req: dict) -> dict:
    """Run Tigase's command ``req`` (addressed to ``jid``, Tigase's ``alias`` entity at ``domain``)
    with the server's commands at ``domain``; the answer in Tigase's shape."""
    node = req["node"]
    if node in NOT_OFFERED:
        raise HttpError(501, f"{node} ({NOT_OFFERED[node]}) is Tigase's own: this XMPP server offers no command "
                             f"for it; change virtual hosts in the server's configuration",
                        condition="feature-not-implemented")
    if alias == VHOST_MAN:
        raise HttpError(404, f"{jid} has no command {node!r}: virtual hosts are managed in the server's "
                             f"configuration", condition="item-not-found")
    if node == ACTIVE_USERS:
        max_items = _value(req, "max_items")
        users = await online_users(run, domain, max_items)
        field = {"var": f"Users: {len(users)}", "label": "text-multi", "value": RepeatedElements(users)}
        return {"command": {"jid": jid, "node": node, "fields": [field]}}
    if node == END_SESSION and not req["sessionid"]:
        return await end_user_session(run, jid, domain, req)
    reply = raise_for_note(await run(domain, req), jid)
    return tigase_shape(command_result(jid, node, reply))


async def online_users(run: Run, domain: str, max_items: str | None = None) -> list[str]:
    """The bare JIDs online at ``domain`` (get-online-users-list): ejabberd answers at once,
    Prosody with a form first (``max_items`` one of its options, else ``all``)."""
    reply = await run(domain, request(ONLINE_USERS))
    command = reply.find(f"{{{COMMANDS_NS}}}command")
    if command is not None and command.get("status") == "executing" and command.get("sessionid"):
        offered = _form_field(command, "max_items")
        options = [] if offered is None else [
            o.findtext(f"{{{DATA_NS}}}value") for o in offered.findall(f"{{{DATA_NS}}}option")]
        choice = max_items if max_items in options else "all"
        reply = await run(domain, request(ONLINE_USERS, [("max_items", [choice])], command.get("sessionid")))
        command = reply.find(f"{{{COMMANDS_NS}}}command")
    field = _form_field(command, "onlineuserjids") if command is not None else None
    if field is None and command is not None:
        field = next((f for f in command.iter(f"{{{DATA_NS}}}field") if (f.get("type") or "").endswith("-multi")),
                     None)
    users = [] if field is None else [(v.text or "").strip() for v in field.findall(f"{{{DATA_NS}}}value")]
    users = [u for u in users if u and not u.startswith("-")]  # Prosody's details lines: " - resource: ..."
    if max_items and max_items.isdigit():
        users = users[:int(max_items)]
    return users


async def end_user_session(run: Run, jid: str, domain: str, req: dict) -> dict:
    """Tigase's answer: a ``Notes`` field naming each account that was online and is now
    disconnected; no field when none was (the servers report success either way)."""
    accounts = [v for var, values in req["fields"] if var in ("accountjids", "accountjid") for v in values]
    online = {user.lower() for user in await online_users(run, domain)}
    form = await run(domain, request(END_SESSION))
    command = form.find(f"{{{COMMANDS_NS}}}command")
    sessionid = command.get("sessionid") if command is not None else None
    if command is not None and _form_field(command, "accountjid") is not None:  # ejabberd: one JID a time
        for i, account in enumerate(accounts):
            if i:
                again = (await run(domain, request(END_SESSION))).find(f"{{{COMMANDS_NS}}}command")
                sessionid = again.get("sessionid") if again is not None else None
            raise_for_note(await run(domain, request(END_SESSION, [("accountjid", [account])], sessionid)), jid)
    else:
        raise_for_note(await run(domain, request(END_SESSION, [("accountjids", accounts)], sessionid)), jid)
    ended = [a for a in accounts if a.split("/", 1)[0].lower() in online]
    fields = [{"var": "Notes", "type": "text-multi",
               "value": RepeatedElements(f"Operation successful for user {a}" for a in ended)}] if ended else []
    return {"command": {"jid": jid, "node": END_SESSION, "fields": fields}}


def _form_field(command: Element, var: str) -> Element | None:
    for field in command.iter(f"{{{DATA_NS}}}field"):
        if field.get("var") == var:
            return field
    return None


def _value(req: dict, var: str) -> Any:
    for name, values in req["fields"]:
        if name == var and values:
            return values[0]
    return None
