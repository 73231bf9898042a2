"""User avatars in the three places XMPP keeps them: IQ builders and pure parsing, no I/O.

- PEP, XEP-0084: ``urn:xmpp:avatar:metadata`` names the image (id = sha1 of the bytes, type, or an
  external ``url``); ``urn:xmpp:avatar:data`` holds the base64 bytes under that id.
- vCard4, XEP-0292: ``<photo><uri>``, a ``data:`` URI or a link.
- vcard-temp, XEP-0054: ``<PHOTO>`` with ``TYPE`` + ``BINVAL`` (base64), or ``EXTVAL`` (a link).

A source that holds no usable avatar raises :class:`NoAvatar` with the reason; the caller decides
whether that ends the request (404) or moves on to the next source.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import urllib.parse
from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement

from ...xmpp.stanzas import split_tag

PUBSUB_NS = "http://jabber.org/protocol/pubsub"
METADATA_NODE = "urn:xmpp:avatar:metadata"
DATA_NODE = "urn:xmpp:avatar:data"
VCARD4_NS = "urn:ietf:params:xml:ns:vcard-4.0"
VCARD_TEMP_NS = "vcard-temp"

# A media type as RFC 6838 names them; anything else (missing, garbage, a header injection attempt)
# is replaced by what the bytes look like.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
OCTET_STREAM = "application/octet-stream"


class NoAvatar(Exception):
    """This source holds no usable avatar; the message says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Image:
    data: bytes
    content_type: str
    hash: str  # XEP-0084 id: sha1 hex of the bytes


@dataclass(frozen=True)
class Link:
    """The avatar lives elsewhere (XEP-0084 url, vCard4 URI, vcard-temp EXTVAL)."""

    url: str


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def image(data: bytes, declared_type: str | None) -> Image:
    return Image(data, content_type_of(declared_type, data), sha1_hex(data))


def media_type(value: str | None) -> str | None:
    """``type/subtype`` of a Content-Type or TYPE value, lower case, without parameters; None
    when it is not a media type."""
    essence = (value or "").split(";", 1)[0].strip().lower()
    return essence if _MEDIA_TYPE.fullmatch(essence) else None


def content_type_of(declared: str | None, data: bytes) -> str:
    """The declared media type when it is one, else what the bytes look like (XEP-0054 TYPE is
    often missing; Tigase then answers with no content type)."""
    return media_type(declared) or sniff_type(data)


def sniff_type(data: bytes) -> str:
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return OCTET_STREAM


def decode_base64(text: str | None, what: str) -> bytes:
    """Base64 as XMPP carries it: wrapped lines (XEP-0054 BINVAL) and missing padding tolerated,
    anything else outside the alphabet refused."""
    compact = "".join((text or "").split())
    if not compact:
        raise NoAvatar(f"{what} is empty")
    compact += "=" * (-len(compact) % 4)
    try:
        data = base64.b64decode(compact, validate=True)
    except binascii.Error as e:
        raise NoAvatar(f"{what} is not valid base64 ({e})") from None
    if not data:
        raise NoAvatar(f"{what} is empty")
    return data


def parse_data_uri(uri: str) -> Image:
    """RFC 2397 ``data:[<media type>][;base64],<data>``."""
    header, comma, payload = uri.partition(",")
    if not comma or header[:5].lower() != "data:":
        raise NoAvatar(f"not a data: URI ({uri[:40]!r})")
    params = header[5:].split(";")
    is_base64 = params[-1].strip().lower() == "base64"
    if is_base64:
        data = decode_base64(urllib.parse.unquote(payload), "the data: URI")
    else:
        data = urllib.parse.unquote_to_bytes(payload)
        if not data:
            raise NoAvatar("the data: URI is empty")
    return image(data, params[0])


def link(url: str, what: str) -> Link:
    """Only http(s) links are followed: a redirect elsewhere (file:, javascript:) helps no client."""
    url = url.strip()
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise NoAvatar(f"{what} is not an http(s) URL: {url[:80]!r}")
    return Link(url)


# --- PEP (XEP-0084) -------------------------------------------------------------------------


def items_iq(jid: str, node: str, *, item_id: str | None = None) -> Element:
    """Pubsub items of ``node`` at ``jid``: one item by id, or the latest one."""
    iq = Element("iq", {"type": "get", "to": jid})
    pubsub = SubElement(iq, f"{{{PUBSUB_NS}}}pubsub")
    items = SubElement(pubsub, f"{{{PUBSUB_NS}}}items", {"node": node})
    if item_id is None:
        items.set("max_items", "1")
    else:
        SubElement(items, f"{{{PUBSUB_NS}}}item", {"id": item_id})
    return iq


def _payloads(reply: Element, name: str, namespace: str) -> list[Element]:
    return list(reply.iter(f"{{{namespace}}}{name}"))


def avatar_metadata(reply: Element) -> Element:
    """The ``<info>`` to use from a metadata items result: the first one whose bytes are in the
    data node (XEP-0084 lists several sizes/types), else the first external one."""
    metadata = _payloads(reply, "metadata", METADATA_NODE)
    if not metadata:
        raise NoAvatar(f"no {METADATA_NODE} item")
    infos = [i for i in metadata[0] if split_tag(i.tag) == (METADATA_NODE, "info")]
    if not infos:
        raise NoAvatar("the user disabled the avatar (empty <metadata/>)")
    for info in infos:
        if info.get("id") and not info.get("url"):
            return info
    for info in infos:
        if info.get("url"):
            return info
    raise NoAvatar("the avatar metadata has no id")


def avatar_data(reply: Element, item_id: str, declared_type: str | None) -> Image:
    """The image from a data items result. The metadata id is kept as the hash (XEP-0084: it is
    the sha1 of the bytes), so the ETag is known before the bytes are fetched."""
    for payload in _payloads(reply, "data", DATA_NODE):
        data = decode_base64(payload.text, f"{DATA_NODE} item {item_id}")
        return Image(data, content_type_of(declared_type, data), item_id)
    raise NoAvatar(f"the metadata names item {item_id}, which {DATA_NODE} does not hold")


# --- vCard4 (XEP-0292) ----------------------------------------------------------------------


def vcard4_iq(jid: str) -> Element:
    iq = Element("iq", {"type": "get", "to": jid})
    SubElement(iq, f"{{{VCARD4_NS}}}vcard")
    return iq


def vcard4_photo(reply: Element) -> Image | Link:
    for photo in _payloads(reply, "photo", VCARD4_NS):
        uri = (photo.findtext(f"{{{VCARD4_NS}}}uri") or "").strip()
        if uri:
            return parse_data_uri(uri) if uri[:5].lower() == "data:" else link(uri, "the vCard4 photo URI")
    raise NoAvatar("the vCard4 has no <photo><uri>")


# --- vcard-temp (XEP-0054) ------------------------------------------------------------------


def vcard_temp_iq(jid: str, vcard: Element | None = None) -> Element:
    """A get, or a set of ``vcard`` when given."""
    iq = Element("iq", {"type": "set" if vcard is not None else "get", "to": jid})
    iq.append(vcard if vcard is not None else Element(f"{{{VCARD_TEMP_NS}}}vCard"))
    return iq


def vcard_temp_of(reply: Element) -> Element | None:
    return next(iter(_payloads(reply, "vCard", VCARD_TEMP_NS)), None)


def vcard_temp_photo(reply: Element) -> Image | Link:
    vcard = vcard_temp_of(reply)
    photo = vcard.find(f"{{{VCARD_TEMP_NS}}}PHOTO") if vcard is not None else None
    if photo is None:
        raise NoAvatar("the vCard has no PHOTO")
    extval = (photo.findtext(f"{{{VCARD_TEMP_NS}}}EXTVAL") or "").strip()
    if extval:
        return link(extval, "the vCard PHOTO EXTVAL")
    binval = photo.find(f"{{{VCARD_TEMP_NS}}}BINVAL")
    if binval is None:
        raise NoAvatar("the vCard PHOTO has no BINVAL")
    data = decode_base64(binval.text, "the vCard PHOTO BINVAL")
    return image(data, photo.findtext(f"{{{VCARD_TEMP_NS}}}TYPE"))


def with_photo(vcard: Element | None, data: bytes, content_type: str) -> Element:
    """A copy of ``vcard`` (or a new one) whose only PHOTO is ``data``; other fields are kept."""
    updated = Element(f"{{{VCARD_TEMP_NS}}}vCard")
    for child in vcard if vcard is not None else ():
        if split_tag(child.tag)[1] != "PHOTO":
            updated.append(child)
    photo = SubElement(updated, f"{{{VCARD_TEMP_NS}}}PHOTO")
    SubElement(photo, f"{{{VCARD_TEMP_NS}}}TYPE").text = content_type
    SubElement(photo, f"{{{VCARD_TEMP_NS}}}BINVAL").text = base64.b64encode(data).decode("ascii")
    return updated


# --- HTTP caching ---------------------------------------------------------------------------


def etag(avatar_hash: str) -> str:
    return f'"{avatar_hash}"'


def etag_matches(if_none_match: str | None, avatar_hash: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or a list of (possibly weak) entity tags; weak comparison."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag(avatar_hash):
            return True
    return False
