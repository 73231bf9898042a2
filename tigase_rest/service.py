"""The ``service`` argument handlers receive (Tigase's ``tigase.http.rest.Service``).

One per request: it carries the two identities of DESIGN.md.
- As the component: ``send`` and ``request`` go over the XEP-0114 link.
- As the caller: ``caller_request`` goes over the caller's own c2s session.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING
from xml.etree.ElementTree import Element

from .coding import read_body
from .errors import HttpError
from .xmpp import privilege
from .xmpp.sessions import Caller, SessionClosed
from .xmpp.stanzas import split_tag

if TYPE_CHECKING:
    from .app import Runtime


class Service:
    __slots__ = ("runtime", "caller", "_password")

    def __init__(self, runtime: "Runtime", caller: Caller | None = None, password: str | None = None):
        self.runtime = runtime
        self.caller = caller
        self._password = password

    @property
    def config(self):
        return self.runtime.config

    @property
    def component_jid(self) -> str:
        return self.runtime.config.xmpp.component_jid

    @property
    def domain(self) -> str:
        return self.runtime.config.xmpp.domain

    async def read_body(self, request) -> bytes:
        """The raw request body (for handlers with ``decode_content = False``), bounded in size
        (413) and in time (408, ``http.body_timeout``)."""
        return await read_body(request, self.runtime.config.http.body_timeout, self.runtime.stopping)

    def is_admin(self, jid: str | None) -> bool:
        """True for the authenticated caller when an admin, or for a JID listed in [auth] admins."""
        if jid is None:
            return False
        if self.caller is not None and self.caller.jid == jid:
            return self.caller.is_admin
        return jid in self.runtime.config.auth.admins

    def send(self, stanza: Element) -> None:
        """Send a stanza over the component link, fire and forget (503 when the link is down)."""
        self.runtime.link.send(stanza)

    async def request(self, iq: Element, timeout: float | None = None) -> Element:
        """An IQ round trip over the component link: the reply element (result or error)."""
        return await self.runtime.link.request(iq, timeout)

    @property
    def privileges(self):
        """The XEP-0356 privileges the server granted the component (tigase_rest.xmpp.privilege)."""
        return self.runtime.privileges

    async def privileged_request(self, iq: Element, timeout: float | None = None) -> Element:
        """Send ``iq`` as the local user it is addressed to (``to`` = the user's bare JID), through an
        XEP-0356 privileged IQ. 501 with the reason when the server granted no such privilege."""
        payload = next(iter(iq), None)
        namespace = split_tag(payload.tag)[0] if payload is not None else ""
        if not self.runtime.privileges.can_iq(namespace, iq.get("type")):
            raise HttpError(501, f"The XMPP server grants this component no XEP-0356 '{iq.get('type')}' privilege "
                                 f"for {namespace} (Prosody: mod_privilege with privileged_entities)")
        outer = privilege.wrap(iq, secrets.token_hex(6))
        return privilege.unwrap(await self.runtime.link.request(outer, timeout))

    def caller_credentials(self) -> tuple[str, str]:
        """(bare JID, password) of the Basic-auth caller, for logins the handler makes itself (BOSH)."""
        if self.caller is None or self._password is None:
            raise HttpError(401, "This request acts as the caller: log in with Basic auth (bare JID and password)")
        return self.caller.jid, self._password

    async def caller_request(self, iq: Element, timeout: float | None = None) -> Element:
        """An IQ round trip over the caller's own c2s session: the server applies the caller's rights."""
        self.caller_credentials()  # 401 when the request carries no login
        pool = self.runtime.pool
        session = await pool.session(self.caller, self._password)
        try:
            return await session.request(iq, timeout)
        except SessionClosed as closed:
            # The server ended the session (end-user-session, restart) since it was pooled: log in
            # again, once. A set that had already left may have been processed: not resent.
            if closed.sent and iq.get("type") != "get":
                raise
            session = await pool.session(self.caller, self._password)
            return await session.request(iq, timeout)
