"""XEP-0356 (Privileged Entity): what the server lets the component do on behalf of its users.

On connect the server sends ``<message><privilege xmlns='urn:xmpp:privilege:2'><perm .../>``.
Prosody 0.12's mod_privilege nests the IQ ``<namespace>`` elements instead of listing them as
siblings, so they are collected from anywhere under the ``iq`` perm. A privileged IQ wraps the
user's IQ in ``<privileged_iq>``; the answer comes back in ``<privilege><forwarded>``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from xml.etree.ElementTree import Element, SubElement

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from ..errors import HttpError
from .stanzas import CLIENT_NS, COMPONENT_NS, split_tag

if TYPE_CHECKING:
    from .component import Link

log = logging.getLogger(__name__)

PRIVILEGE_NS = "urn:xmpp:privilege:2"
# ejabberd 23.01 grants in the first version (roster, message, presence; no IQ permission).
GRANT_NAMESPACES = (PRIVILEGE_NS, "urn:xmpp:privilege:1")
FORWARD_NS = "urn:xmpp:forward:0"


@dataclass(frozen=True)
class Privileges:
    roster: str = "none"  # none, get, set, both
    message: str = "none"  # none, outgoing
    presence: str = "none"  # none, managed_entity, roster
    iq: dict[str, str] = field(default_factory=dict)  # namespace -> get, set, both

    @classmethod
    def parse(cls, privilege: Element) -> "Privileges":
        values: dict = {"iq": {}}
        for perm in privilege:
            if split_tag(perm.tag)[1] != "perm":
                continue
            access = perm.get("access")
            if access in ("roster", "message", "presence"):
                values[access] = perm.get("type") or "none"
            elif access == "iq":
                for namespace in perm.iter():
                    if split_tag(namespace.tag)[1] == "namespace" and namespace.get("ns"):
                        values["iq"][namespace.get("ns")] = namespace.get("type") or "none"
        return cls(**values)

    def can_get_roster(self) -> bool:
        return self.roster in ("get", "both")

    def can_iq(self, namespace: str, kind: str) -> bool:
        return self.iq.get(namespace) in (kind, "both")


class PrivilegeTracker:
    """The one owner of the XEP-0356 grant: what the server lets the component do as its users.

    The grant arrives as a message from the server's domain after each handshake; it replaces the
    previous one (none until the server says). ``request`` sends an IQ as the user it is addressed to."""

    def __init__(self, link: "Link", domain: str):
        self.link = link
        self.domain = domain
        self.current = Privileges()
        self._granted = asyncio.Event()  # a grant arrived on the current connection

    def setup(self, xmpp) -> None:
        """Hook into the ComponentXMPP (``ComponentLink.on_setup``)."""
        xmpp.add_event_handler("session_start", lambda _event: self._granted.clear())
        for ns in GRANT_NAMESPACES:
            xmpp.register_handler(Callback(
                f"xep-0356 privileges {ns}", MatchXPath(f"{{{COMPONENT_NS}}}message/{{{ns}}}privilege"),
                self._on_grant))

    def _on_grant(self, message) -> None:
        if message["from"].bare != self.domain:
            return  # only the server itself grants privileges
        tags = {f"{{{ns}}}privilege" for ns in GRANT_NAMESPACES}
        self.current = Privileges.parse(next(child for child in message.xml if child.tag in tags))
        self._granted.set()
        log.info("XEP-0356 privileges from %s: %s", self.domain, self.current)

    async def wait_granted(self, timeout: float) -> bool:
        """Whether the server's grant arrives on this connection within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._granted.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def request(self, iq: Element, timeout: float | None = None) -> Element:
        """Send ``iq`` as the local user it is addressed to (``to`` = the user's bare JID), through
        an XEP-0356 privileged IQ. 501 with the reason when the server granted no such privilege."""
        payload = next(iter(iq), None)
        namespace = split_tag(payload.tag)[0] if payload is not None else ""
        if not self.current.can_iq(namespace, iq.get("type") or ""):
            raise HttpError(501, f"The XMPP server grants this component no XEP-0356 '{iq.get('type')}' privilege "
                                 f"for {namespace} (Prosody: mod_privilege with privileged_entities)")
        outer = wrap(iq, secrets.token_hex(6))
        return unwrap(await self.link.request(outer, timeout))


def wrap(inner: Element, id_: str) -> Element:
    """The privileged IQ that sends ``inner`` (an IQ to or about a local user) as that user."""
    user = inner.get("to") or ""
    inner = _as_client(inner)
    inner.set("from", user)
    inner.set("id", id_)
    outer = Element("iq", {"type": inner.get("type", ""), "to": user})
    SubElement(outer, f"{{{PRIVILEGE_NS}}}privileged_iq").append(inner)
    return outer


def unwrap(reply: Element) -> Element:
    """The user's IQ reply out of the server's ``<privilege><forwarded>`` answer."""
    if reply.get("type") == "error":
        return reply
    for forwarded in reply.iter(f"{{{FORWARD_NS}}}forwarded"):
        for child in forwarded:
            if split_tag(child.tag)[1] == "iq":
                return child
    raise HttpError(502, "The server's answer to a privileged IQ carried no forwarded IQ")


def _as_client(iq: Element) -> Element:
    iq.tag = f"{{{CLIENT_NS}}}iq"
    for child in iq:
        if split_tag(child.tag)[0] in ("", CLIENT_NS):
            child.tag = f"{{{CLIENT_NS}}}{split_tag(child.tag)[1]}"
    return iq
