"""Reading and setting avatars over the component link (Tigase's AvatarGet and AvatarPutNoAuth).

A read without a source tries PEP (XEP-0084), then vCard4, then vcard-temp, and gives the first
image found (or a link). Every read goes as the user (XEP-0356 privileged IQ) when the server
grants that namespace, else as the component: PEP nodes are often readable only by the owner and
its contacts (Prosody: a node a client created has access model "presence", and its vcard-temp,
built from PEP, then shows the component no PHOTO).

"item-not-found", "forbidden", "service-unavailable" and "feature-not-implemented" from a source
mean "no avatar there": the next source is tried, or an explicit source is a 404 saying what each
source answered. Prosody answers "forbidden" for a PEP node that does not exist when the reader is
not the owner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from ...errors import HttpError
from ...xmpp.component import Link
from ...xmpp.privilege import PrivilegeTracker
from ...xmpp.stanzas import error_of, raise_for_error
from . import stanzas
from .stanzas import Image, Link as AvatarLink, NoAvatar

NOTHING_THERE = frozenset({"item-not-found", "forbidden", "service-unavailable", "feature-not-implemented"})


@dataclass(frozen=True)
class NotModified:
    """PEP metadata already told the hash, and the client has that image: no need for the bytes."""

    hash: str
    content_type: str


Found = Image | AvatarLink | NotModified


class Avatars:
    """Uses the component link and the privilege tracker; nothing else."""

    def __init__(self, link: Link, privileges: PrivilegeTracker):
        self.link = link
        self.privileges = privileges
        self._sources: dict[str, Callable[[str, str | None], Awaitable[Found]]] = {
            "avatar": self._from_pep, "vcard4": self._from_vcard4, "vcard-temp": self._from_vcard_temp}

    async def get(self, jid: str, source: str | None, if_none_match: str | None) -> Found:
        """The avatar of ``jid`` (a bare JID) from ``source`` or the first source that has one;
        404 naming what each source said when there is none."""
        if source is not None:
            try:
                return await self._sources[source](jid, if_none_match)
            except NoAvatar as e:
                raise HttpError(404, f"No avatar in {source} for {jid}: {e.reason}") from None
        reasons = []
        for name, fetch in self._sources.items():
            try:
                return await fetch(jid, if_none_match)
            except NoAvatar as e:
                reasons.append(f"{name}: {e.reason}")
        raise HttpError(404, f"No avatar for {jid} ({'; '.join(reasons)})")

    async def put(self, jid: str, data: bytes, media_type: str) -> str:
        """Make ``data`` the vcard-temp PHOTO of ``jid``, keeping its other vCard fields; the hash."""
        # Read as the owner, never as the component: a vCard that access rules trimmed, written
        # back, would delete the fields the component could not see.
        current = raise_for_error(await self.privileges.request(stanzas.vcard_temp_iq(jid)), jid)
        vcard = stanzas.with_photo(stanzas.vcard_temp_of(current), data, media_type)
        raise_for_error(await self.privileges.request(stanzas.vcard_temp_iq(jid, vcard)), jid)
        return stanzas.sha1_hex(data)

    async def _read(self, jid: str, iq: Element, namespace: str, what: str) -> Element:
        """The result of reading ``what``; NoAvatar when the server says there is nothing (for us) there."""
        as_owner = self.privileges.current.can_iq(namespace, "get")
        reply = await (self.privileges.request(iq) if as_owner else self.link.request(iq))
        if reply.get("type") != "error":
            return reply
        condition, text = error_of(reply)
        if condition not in NOTHING_THERE:
            raise_for_error(reply, jid)
        reason = f"{jid} answered {condition} for {what}" + (f" ({text})" if text else "")
        if condition == "forbidden" and not as_owner:
            reason += f"; a XEP-0356 IQ privilege for {namespace} would let the component read it as the user"
        raise NoAvatar(reason)

    async def _from_pep(self, jid: str, if_none_match: str | None) -> Found:
        metadata = await self._read(jid, stanzas.items_iq(jid, stanzas.METADATA_NODE), stanzas.PUBSUB_NS,
                                    stanzas.METADATA_NODE)
        info = stanzas.avatar_metadata(metadata)
        if info.get("url"):
            return stanzas.link(info.get("url") or "", "the XEP-0084 metadata url")
        item_id = info.get("id") or ""
        if stanzas.etag_matches(if_none_match, item_id):
            return NotModified(item_id, stanzas.content_type_of(info.get("type"), b""))
        data = await self._read(jid, stanzas.items_iq(jid, stanzas.DATA_NODE, item_id=item_id), stanzas.PUBSUB_NS,
                                f"{stanzas.DATA_NODE} item {item_id}")
        return stanzas.avatar_data(data, item_id, info.get("type"))

    async def _from_vcard4(self, jid: str, if_none_match: str | None) -> Found:
        return stanzas.vcard4_photo(await self._read(jid, stanzas.vcard4_iq(jid), stanzas.VCARD4_NS, "the vCard4"))

    async def _from_vcard_temp(self, jid: str, if_none_match: str | None) -> Found:
        return stanzas.vcard_temp_photo(
            await self._read(jid, stanzas.vcard_temp_iq(jid), stanzas.VCARD_TEMP_NS, "the vCard"))
