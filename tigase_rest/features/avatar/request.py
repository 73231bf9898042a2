"""What ``/rest/avatar/{jid}[/{source}]`` asks for, checked: 400/404/415 with the reason."""

from __future__ import annotations

from ...errors import HttpError
from ...xmpp.stanzas import parse_bare_jid
from .stanzas import media_type

SOURCES = ("avatar", "vcard4", "vcard-temp")  # PEP (XEP-0084), vCard4 (XEP-0292), vcard-temp (XEP-0054)
# Room in the stanza for what surrounds the photo: the user's other vCard fields and the privileged IQ.
VCARD_ROOM = 16 * 1024


def user_jid(local: str | None, domain: str) -> str:
    """Avatars belong to accounts: the URL must name user@domain."""
    if not local:
        raise HttpError(400, f"The URL must name a user's bare JID (user@domain), not {domain!r}")
    return str(parse_bare_jid(f"{local}@{domain}", "the URL"))


def source(name: str | None) -> str | None:
    """None (the first source that has one) or one of SOURCES; 404 naming the valid ones."""
    if name is not None and name not in SOURCES:
        raise HttpError(404, f"Unknown avatar source {name!r}: use {', '.join(SOURCES)} or none")
    return name


def image_type(content_type: str | None) -> str:
    """The media type of an uploaded image; 415 unless it is image/*."""
    declared = media_type(content_type)
    if not declared or not declared.startswith("image/"):
        raise HttpError(415, f"The body must be an image with Content-Type image/*, not {content_type!r}")
    return declared


def max_image_bytes(max_stanza_bytes: int) -> int:
    """The largest image that fits in one vCard stanza: base64 makes 3 bytes 4."""
    return (max_stanza_bytes - VCARD_ROOM) * 3 // 4


def image_data(data: bytes, max_stanza_bytes: int) -> bytes:
    """The uploaded image; 400 when empty, 413 when it cannot fit in one stanza (a server closes the
    whole stream on a larger one, failing every request in flight)."""
    if not data:
        raise HttpError(400, "No image received: the body is empty")
    limit = max_image_bytes(max_stanza_bytes)
    if len(data) > limit:
        raise HttpError(413, f"The image is {len(data)} bytes; at most {limit} fit in one vCard stanza "
                             f"(base64, xmpp.max_stanza_bytes = {max_stanza_bytes})")
    return data
