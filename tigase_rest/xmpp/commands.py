"""Ad-hoc commands the component offers itself, on its own JID (``http.<domain>``).

``reload-handlers`` (Tigase's REST module command of the same node): reloads the handler
scripts and the [auth] section, for admins only. Features add their own (the api-key commands).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slixmpp.exceptions import XMPPError

from ..loader import RouteTable

log = logging.getLogger(__name__)

PLUGINS = ("xep_0030", "xep_0004", "xep_0050")


def register(xmpp, component_jid: str, is_admin: Callable[[str], bool], reload: Callable[[], RouteTable],
             more: Callable[[Callable[[str, float], None]], list[tuple[str, str, Callable]]] | None = None) -> None:
    """Offer the commands on ``component_jid``. ``is_admin(bare_jid)`` decides who may run them;
    ``reload()`` reloads the scripts and the configuration and returns the new routes.
    ``more(forget)`` gives the features' own commands, (node, name, handler); ``forget(sessionid,
    delay)`` drops a finished or abandoned session from slixmpp's table after ``delay`` seconds."""

    def reload_handlers(iq, session):
        requester = iq["from"].bare
        if not is_admin(requester):
            raise XMPPError("forbidden", f"{requester} is not an admin of this REST API")
        table = reload()
        text = f"Script handlers reloaded: {len(table.routes())} handlers"
        if table.errors:
            text += f", {len(table.errors)} scripts failed: " + "; ".join(f"{p.name}: {e}" for p, e in table.errors)
        log.info("reload-handlers by %s: %s", requester, text)
        session["notes"] = [("info" if not table.errors else "warn", text)]
        session["payload"] = None
        session["has_next"] = False
        session["next"] = None
        return session

    def announce(_event) -> None:
        # slixmpp's xep_0050 empties the command list at every (re)connect: add ours each time.
        xmpp.plugin["xep_0050"].add_command(
            jid=component_jid, node="reload-handlers",
            name="Reload REST HTTP script handlers", handler=reload_handlers)
        for node, name, handler in extra:
            xmpp.plugin["xep_0050"].add_command(jid=component_jid, node=node, name=name, handler=handler)

    def forget(sessionid: str, delay: float) -> None:
        sessions = xmpp.plugin["xep_0050"].sessions
        xmpp.loop.call_later(delay, sessions.pop, sessionid, None)

    extra = more(forget) if more is not None else []

    xmpp.add_event_handler("session_start", announce)
