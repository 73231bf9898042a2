"""The api-key ad-hoc commands (XEP-0050, slixmpp's xep_0050 sessions) on the component's JID.

Each command is multi-stage: the first execute returns a form, its submission does the work. A
first execute that already carries a submitted form (a one-shot, as ``POST /rest/adhoc`` with
``fields`` sends it) is done at once. Only admins may run them (the reload-handlers check), at every
stage. Failures are completed sessions with an error note (``/rest/adhoc`` answers them 422).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slixmpp.exceptions import XMPPError
from slixmpp.plugins.xep_0004 import Form

from ...config import ApiKey
from .request import METHODS, KeyFieldError, new_key, parse_api_key, parse_key
from .service import ApiKeyRefused, ApiKeys
from .store import StoreError

log = logging.getLogger(__name__)

DATA_NS = "jabber:x:data"
KEY, DOMAINS, PATHS, METHODS_VAR = "api-key", "domains", "paths", "methods"

FORGET_DONE = 5.0  # seconds after the answer
FORGET_PENDING = 600.0  # a form nobody submits

NODES = {
    "api-key-add": "Add API key",
    "api-key-update": "Update API key",
    "api-key-remove": "Remove API key",
    "api-key-list": "List API keys",
}


def submitted(payload: Any) -> dict[str, list[str]] | None:
    """The fields of a submitted form in ``payload`` (a Form, a list of stanzas or None), as
    var -> values read from the XML (a submitted form carries no field types)."""
    items = payload if isinstance(payload, list) else [payload] if payload is not None else []
    for item in items:
        if isinstance(item, Form) and item["type"] in ("submit", ""):
            return {f.get("var", ""): [v.text or "" for v in f.findall(f"{{{DATA_NS}}}value")]
                    for f in item.xml.findall(f"{{{DATA_NS}}}field")}
    return None


def handlers(keys: ApiKeys, is_admin: Callable[[str], bool],
             forget: Callable[[str, float], None] = lambda sessionid, delay: None) -> list[tuple[str, str, Callable]]:
    """(node, name, handler) for ``xep_0050.add_command``. ``forget(sessionid, delay)`` drops a
    session from slixmpp's table later (it keeps every session, also completed ones, for ever)."""

    def admin(jid: Any) -> str:
        requester = jid.bare
        if not is_admin(requester):
            raise XMPPError("forbidden", f"{requester} is not an admin of this REST API")
        return requester

    def done(session: dict, kind: str, text: str, payload: Any = None) -> dict:
        session.update(notes=[(kind, text)], payload=payload, has_next=False, next=None)
        forget(session["id"], FORGET_DONE)
        return session

    def ask(session: dict, form: Form, then: Callable) -> dict:
        session.update(notes=None, payload=form, has_next=False, allow_complete=True, next=then)
        forget(session["id"], FORGET_PENDING)
        return session

    def run(session: dict, action: Callable[[str], str]) -> dict:
        try:
            by = admin(session["from"])  # again at submission: the admin list may have changed
            return done(session, "info", action(by))
        except (KeyFieldError, ApiKeyRefused) as e:
            return done(session, "error", str(e))
        except StoreError as e:
            log.error("API keys: %s", e)
            return done(session, "error", "The API key store cannot be written: see the component's log")

    def key_form(title: str, key: ApiKey | None, key_default: str) -> Form:
        form = Form()
        form["type"] = "form"
        form["title"] = title
        form["instructions"] = ("Empty lists mean no limit. Paths are regexes matched against the whole "
                                "path including the context path, e.g. /rest/avatar/.*")
        form.add_field(var=KEY, ftype="text-single", label="API Key", required=True, value=key_default)
        form.add_field(var=DOMAINS, ftype="text-multi", label="Domains (HTTP Host names)",
                       value=list(key.domains) if key else [])
        form.add_field(var=PATHS, ftype="text-multi", label="Paths (regexes, full match)",
                       value=list(key.paths) if key else [])
        form.add_field(var=METHODS_VAR, ftype="list-multi", label="HTTP methods",
                       options=[{"label": m, "value": m} for m in METHODS], value=list(key.methods) if key else [])
        return form

    def chooser(title: str) -> Form:
        form = Form()
        form["type"] = "form"
        form["title"] = title
        form.add_field(var=KEY, ftype="list-single", label="API Key", required=True,
                       options=[{"label": k.key, "value": k.key} for k in keys.stored()])
        return form

    def from_fields(fields: dict[str, list[str]], current: ApiKey | None = None) -> ApiKey:
        key = parse_key((fields.get(KEY) or [""])[0])
        if current is None:
            current = ApiKey(key)
        return parse_api_key(key, fields.get(DOMAINS, current.domains), fields.get(PATHS, current.paths),
                             fields.get(METHODS_VAR, current.methods))

    # --- api-key-add: form (key defaults to a random UUID), then submit ---

    def add_submit(payload: Any, session: dict) -> dict:
        fields = submitted(payload) or {}

        def action(by: str) -> str:
            key = from_fields(fields)
            keys.add(key, by)
            return "API key added; it works from the next request"
        return run(session, action)

    def add(iq: Any, session: dict) -> dict:
        admin(iq["from"])
        if submitted(session["payload"]) is not None:
            return add_submit(session["payload"], session)
        return ask(session, key_form("Add API key", None, new_key()), add_submit)

    # --- api-key-update: choose a stored key, then its form (prefilled), then submit ---

    def update_submit(payload: Any, session: dict) -> dict:
        fields = submitted(payload) or {}
        if set(fields) <= {KEY}:  # only the key chosen: show its limits to edit
            try:
                admin(session["from"])
                chosen = parse_key((fields.get(KEY) or [""])[0])
                current = keys.find(chosen)
                if current is None:
                    keys.refuse_config_key(chosen, "changed")
                    raise ApiKeyRefused("No such stored API key (api-key-list lists them)")
            except (KeyFieldError, ApiKeyRefused) as e:
                return done(session, "error", str(e))
            return ask(session, key_form("Update API key", current, chosen), update_submit)

        def action(by: str) -> str:
            key = from_fields(fields, keys.find(parse_key((fields.get(KEY) or [""])[0])))
            keys.update(key, by)
            return "API key updated; the new limits apply from the next request"
        return run(session, action)

    def update(iq: Any, session: dict) -> dict:
        admin(iq["from"])
        if submitted(session["payload"]) is not None:
            return update_submit(session["payload"], session)
        return ask(session, chooser("Update API key"), update_submit)

    # --- api-key-remove: choose a stored key, then submit ---

    def remove_submit(payload: Any, session: dict) -> dict:
        fields = submitted(payload) or {}

        def action(by: str) -> str:
            keys.remove(parse_key((fields.get(KEY) or [""])[0]), by)
            return "API key removed; it is refused from the next request"
        return run(session, action)

    def remove(iq: Any, session: dict) -> dict:
        admin(iq["from"])
        if submitted(session["payload"]) is not None:
            return remove_submit(session["payload"], session)
        return ask(session, chooser("Remove API key"), remove_submit)

    # --- api-key-list: one stage ---

    def listing(iq: Any, session: dict) -> dict:
        admin(iq["from"])
        form = Form()
        form["type"] = "result"
        form["title"] = "API keys"
        form.add_reported(KEY, ftype="text-single", label="API Key")
        form.add_reported("source", ftype="text-single", label="Source")
        for var, label in ((DOMAINS, "Domains"), (PATHS, "Paths"), (METHODS_VAR, "Methods")):
            form.add_reported(var, ftype="text-multi", label=label)
        listed = keys.listing()
        for item in listed:
            form.add_item({KEY: item.shown, "source": item.source, DOMAINS: list(item.key.domains),
                           PATHS: list(item.key.paths), METHODS_VAR: list(item.key.methods)})
        config = sum(1 for i in listed if i.source == "config")
        return done(session, "info", f"{len(listed) - config} stored keys (shown in full), {config} keys "
                                     "from the config file (masked: they are changed there)", form)

    return [("api-key-add", NODES["api-key-add"], add), ("api-key-update", NODES["api-key-update"], update),
            ("api-key-remove", NODES["api-key-remove"], remove), ("api-key-list", NODES["api-key-list"], listing)]
