"""The ``service`` argument handlers receive (Tigase's ``tigase.http.rest.Service``).

One per request: it carries the two identities of DESIGN.md.
- As the component: ``send`` and ``request`` go over the XEP-0114 link, ``privileged_request``
  as a user through XEP-0356.
- As the caller: ``caller_request`` goes over the caller's own c2s session.
And the features (``statuses``, ``avatars``, ``bosh``, ``accounts``, ``webhooks``), each built once by
``app.serve``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

from .coding import read_body
from .config import Config
from .errors import HttpError
from .features.webhooks.request import shortcut_iq, stanza_answer
from .xmpp.component import Link
from .xmpp.privilege import PrivilegeTracker, Privileges
from .xmpp.stanzas import raise_for_error
from .xmpp.sessions import Caller, CallerPool, SessionClosed

if TYPE_CHECKING:
    from .features.accounts.service import Accounts, AccountsAs
    from .features.avatar.service import Avatars
    from .features.bosh import BoshPrebinding
    from .features.presence.service import ExternalStatuses
    from .features.webhooks.service import Webhooks


@dataclass(frozen=True)
class Parts:
    """What the process holds for handlers: built once by ``app.serve`` (or a test, with fakes)."""

    link: Link
    pool: CallerPool
    privileges: PrivilegeTracker
    statuses: "ExternalStatuses"
    avatars: "Avatars"
    bosh: "BoshPrebinding"
    accounts: "Accounts"
    health: Callable[[], dict[str, Any]]  # counters for GET /rest/health
    stopping: asyncio.Event  # set when shutdown starts: requests still reading a body give up
    webhooks: "Webhooks | None" = None  # None: no [webhooks] url


class Service:
    __slots__ = ("_parts", "config", "caller", "_password")

    def __init__(self, parts: Parts, config: Config, caller: Caller | None = None, password: str | None = None):
        self._parts = parts
        self.config = config  # the configuration this request runs with (a SIGHUP does not change it midway)
        self.caller = caller
        self._password = password

    @property
    def component_jid(self) -> str:
        return self.config.xmpp.component_jid

    @property
    def deployment(self) -> tuple[str, ...]:
        """The component JIDs of every instance of this deployment (``[xmpp] deployment``; this one's
        alone when empty): a reply to any of them reaches the request that waits for it."""
        return self.config.xmpp.deployment or (self.config.xmpp.component_jid,)

    @property
    def domain(self) -> str:
        return self.config.xmpp.domain

    # -- the features --

    @property
    def statuses(self) -> "ExternalStatuses":
        """External user statuses (``/rest/user/{jid}/status``)."""
        return self._parts.statuses

    @property
    def avatars(self) -> "Avatars":
        return self._parts.avatars

    @property
    def bosh(self) -> "BoshPrebinding":
        return self._parts.bosh

    @property
    def accounts(self) -> "AccountsAs":
        """Accounts, user lists and server statistics (XEP-0133), acting as ``admin_request`` does."""
        return self._parts.accounts.acting(self.admin_request)

    @property
    def webhooks(self) -> "Webhooks | None":
        """Stanzas to the component's domain POSTed to ``[webhooks] url``; None when not configured."""
        return self._parts.webhooks

    def health(self) -> dict[str, Any]:
        """The component's counters; ``xmpp_link`` is "up" or "down"."""
        return self._parts.health()

    # -- the request --

    async def read_body(self, request) -> bytes:
        """The raw request body (for handlers with ``decode_content = False``), bounded in size
        (413) and in time (408, ``http.body_timeout``)."""
        return await read_body(request, self.config.http.body_timeout, self._parts.stopping)

    def is_admin(self, jid: str | None) -> bool:
        """True for the authenticated caller when an admin, or for a JID listed in [auth] admins."""
        if jid is None:
            return False
        if self.caller is not None and self.caller.jid == jid:
            return self.caller.is_admin
        return jid in self.config.auth.admins

    # -- as the component --

    def send(self, stanza: Element) -> None:
        """Send a stanza over the component link, fire and forget (503 when the link is down)."""
        self._parts.link.send(stanza)

    async def request(self, iq: Element, timeout: float | None = None) -> Element:
        """An IQ round trip over the component link: the reply element (result or error)."""
        return await self._parts.link.request(iq, timeout)

    async def shortcut(self, what: str, jid: str, node: str | None, fmt: str) -> tuple[bytes, str]:
        """``GET /rest/<what>/<jid>`` (ping, version, disco, items): the IQ get over the component
        link and its result as an HTTP body in ``fmt``; an error reply is its HttpError."""
        reply = raise_for_error(await self.request(shortcut_iq(what, jid, node)), jid)
        return stanza_answer(reply, fmt)

    @property
    def privileges(self) -> Privileges:
        """The XEP-0356 privileges the server granted the component."""
        return self._parts.privileges.current

    async def privileged_request(self, iq: Element, timeout: float | None = None) -> Element:
        """Send ``iq`` as the local user it is addressed to (``to`` = the user's bare JID), through an
        XEP-0356 privileged IQ. 501 with the reason when the server granted no such privilege."""
        return await self._parts.privileges.request(iq, timeout)

    async def admin_request(self, iq: Element, timeout: float | None = None) -> Element:
        """As the caller when the request carries a login (the server applies the caller's rights), else
        as the component over the link (an API key alone: the component is a server admin)."""
        if self.caller is not None:
            return await self.caller_request(iq, timeout)
        return await self.request(iq, timeout)

    # -- as the caller --

    def caller_credentials(self) -> tuple[str, str]:
        """(bare JID, password) of the Basic-auth caller, for logins the handler makes itself (BOSH)."""
        if self.caller is None or self._password is None:
            raise HttpError(401, "This request acts as the caller: log in with Basic auth (bare JID and password)")
        return self.caller.jid, self._password

    def forget_credentials(self, jids) -> None:
        """Drop the cached credentials and pooled sessions of ``jids`` (bare JIDs): after a command
        that changed their password or deleted them, their next request logs in again."""
        for jid in jids:
            self._parts.pool.forget(jid)

    async def caller_request(self, iq: Element, timeout: float | None = None) -> Element:
        """An IQ round trip over the caller's own c2s session: the server applies the caller's rights."""
        jid, password = self.caller_credentials()  # 401 when the request carries no login
        assert self.caller is not None
        pool = self._parts.pool
        session = await pool.session(self.caller, password)
        try:
            return await session.request(iq, timeout)
        except SessionClosed as closed:
            # The server ended the session (end-user-session, restart) since it was pooled: log in
            # again, once. A set that had already left may have been processed: not resent.
            if closed.sent and iq.get("type") != "get":
                raise
            session = await pool.session(self.caller, password)
            return await session.request(iq, timeout)
