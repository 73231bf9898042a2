"""/rest/avatar/{jid}[/{source}]: a user's avatar image (Tigase's AvatarGet and AvatarPutNoAuth).

GET without a source tries PEP (XEP-0084, source ``avatar``), then vCard4 (``vcard4``), then
vcard-temp (``vcard-temp``) and answers the first image found; a link (XEP-0084 url, vCard4 URI,
PHOTO/EXTVAL) is a 302. Every read goes as the user (XEP-0356 privileged IQ) when the server grants
that namespace, else as the component: PEP nodes are often readable only by the owner and its
contacts (Prosody: a node a client created has access model "presence", and its vcard-temp, built
from PEP, then shows the component no PHOTO).

PUT sets the vcard-temp PHOTO to the body, keeping the other vCard fields (needs the vcard-temp
get and set privileges). Prosody's mod_vcard_legacy also publishes it as the PEP avatar.

Deviations from Tigase, all answers a client can act on:
- no avatar is a 404 whose reason names what each source said (Tigase: a bare 404, or a 500 for
  a PHOTO without BINVAL); a missing TYPE is sniffed from the bytes (Tigase: no content type);
- "item-not-found", "forbidden", "service-unavailable" and "feature-not-implemented" from a source
  mean "no avatar there": the next source is tried, or an explicit source is a 404. Prosody
  answers "forbidden" for a PEP node that does not exist when the reader is not the owner;
- ETag (the sha1 of the image, XEP-0084's id) and If-None-Match (304); Cache-Control private;
- only http(s) links are redirected to; an unknown source is a 404 naming the valid ones;
- the JID must be user@domain (Tigase's regex also routes a bare domain): 400 otherwise;
- PUT needs an image/* body (415) that is not empty (400) and answers the hash as well.
"""

from dataclasses import dataclass

from tigase_rest.errors import HttpError
from tigase_rest.handlers import Handler, Result
from tigase_rest.xmpp import avatars
from tigase_rest.xmpp.avatars import NoAvatar
from tigase_rest.xmpp.stanzas import error_of, parse_bare_jid, raise_for_error

# Short: a changed avatar shows up within a minute; revalidation with the ETag is cheap.
MAX_AGE = 60
CACHE_CONTROL = f"private, max-age={MAX_AGE}"
# Avatar bytes and their type come from users: never let a browser run an SVG's script at our origin.
IMAGE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; sandbox"),
)
NOTHING_THERE = frozenset({"item-not-found", "forbidden", "service-unavailable", "feature-not-implemented"})

GET_EXAMPLE = "curl -H 'Api-Key: KEY' -o avatar.png '{base}/avatar/alice@example.com'"
PUT_EXAMPLE = """curl -X PUT -H 'Api-Key: KEY' -H 'Content-Type: image/png' --data-binary @avatar.png \\
  '{base}/avatar/alice@example.com'"""


@dataclass(frozen=True)
class NotModified:
    """PEP metadata already told the hash, and the client has that image: no need for the bytes."""

    hash: str
    content_type: str


# Tigase's regex, except that any source is routed so an unknown one gets a helpful 404.
REGEX = r"/(?:([^@/]+)@)?([^@/]+)(?:/([^/]+))?"


class AvatarGet(Handler):
    """Tigase's AvatarGet: no login, an API key as everywhere."""

    regex = REGEX
    decode_content = False
    description = {
        "regex": "/{user-jid}[/avatar|vcard4|vcard-temp]",
        "GET": {
            "info": "Get a user's avatar image",
            "description": "The image with its content type. Without a source: PEP (XEP-0084), then vCard4, then "
                           "vcard-temp, first found wins; a link in any of them is a 302 redirect. ETag is the "
                           "image's sha1 (If-None-Match gives 304). 404 with the reason when there is none. "
                           "PEP and vCard4 nodes that are not public are read through XEP-0356 privileged IQs "
                           "(pubsub, vcard-4.0, vcard-temp get) when the server grants them.",
            "example": GET_EXAMPLE,
        },
    }

    async def exec_get(self, service, callback, request, local, domain, source):
        jid = user_jid(local, domain)
        if_none_match = request.headers.get("If-None-Match")
        if source is None:
            found = await first_avatar(service, jid, if_none_match)
        else:
            fetch = SOURCES.get(source)
            if fetch is None:
                raise HttpError(404, f"Unknown avatar source {source!r}: use {', '.join(SOURCES)} or none")
            try:
                found = await fetch(service, jid, if_none_match)
            except NoAvatar as e:
                raise HttpError(404, f"No avatar in {source} for {jid}: {e.reason}") from None
        return answer(found, if_none_match)


class AvatarPutNoAuth(Handler):
    """Tigase's AvatarPutNoAuth: admin role, but a valid API key alone is enough."""

    regex = REGEX
    required_role = "admin"
    api_key_replaces_login = True
    decode_content = False
    description = {
        "regex": "/{user-jid}",
        "PUT": {
            "info": "Set a user's avatar",
            "description": "The body is the image (Content-Type image/*). It becomes the user's vcard-temp PHOTO, "
                           "other vCard fields are kept. An API key alone is enough; without one (open access), "
                           "log in as an admin. Needs the XEP-0356 vcard-temp get and set privileges. "
                           "Answers {user: {jid, hash}}.",
            "example": PUT_EXAMPLE,
        },
    }

    async def exec_put(self, service, callback, user, request, local, domain, source):
        jid = user_jid(local, domain)
        if source is not None:
            raise HttpError(404, f"PUT takes no source ({source!r}): it always sets the vcard-temp PHOTO")
        declared = request.headers.get("Content-Type")
        media_type = avatars.media_type(declared)
        if not media_type or not media_type.startswith("image/"):
            raise HttpError(415, f"The body must be an image with Content-Type image/*, not {declared!r}")
        data = await service.read_body(request)
        if not data:
            raise HttpError(400, "No image received: the body is empty")
        # Read as the owner, never as the component: a vCard that access rules trimmed, written
        # back, would delete the fields the component could not see.
        current = raise_for_error(await service.privileged_request(avatars.vcard_temp_iq(jid)), jid)
        vcard = avatars.with_photo(avatars.vcard_temp_of(current), data, media_type)
        raise_for_error(await service.privileged_request(avatars.vcard_temp_iq(jid, vcard)), jid)
        return {"user": {"jid": jid, "hash": avatars.sha1_hex(data)}}


def user_jid(local, domain) -> str:
    """Avatars belong to accounts: the URL must name user@domain."""
    if not local:
        raise HttpError(400, f"The URL must name a user's bare JID (user@domain), not {domain!r}")
    return str(parse_bare_jid(f"{local}@{domain}", "the URL"))


async def read_as_owner(service, iq, namespace):
    """(reply, as_owner): the IQ sent as the user when the server grants this namespace
    (access models then hide nothing), else as the component (enough for public data)."""
    if service.privileges.can_iq(namespace, "get"):
        return await service.privileged_request(iq), True
    return await service.request(iq), False


async def read(service, jid, iq, namespace, what):
    """The result of reading ``what``; NoAvatar when the server says there is nothing (for us) there."""
    reply, as_owner = await read_as_owner(service, iq, namespace)
    if reply.get("type") != "error":
        return reply
    condition, text = error_of(reply)
    if condition not in NOTHING_THERE:
        raise_for_error(reply, jid)
    reason = f"{jid} answered {condition} for {what}" + (f" ({text})" if text else "")
    if condition == "forbidden" and not as_owner:
        reason += f"; a XEP-0356 IQ privilege for {namespace} would let the component read it as the user"
    raise NoAvatar(reason)


async def from_pep(service, jid, if_none_match):
    metadata = await read(service, jid, avatars.items_iq(jid, avatars.METADATA_NODE), avatars.PUBSUB_NS,
                          avatars.METADATA_NODE)
    info = avatars.avatar_metadata(metadata)
    if info.get("url"):
        return avatars.link(info.get("url"), "the XEP-0084 metadata url")
    item_id = info.get("id")
    if avatars.etag_matches(if_none_match, item_id):
        return NotModified(item_id, avatars.content_type_of(info.get("type"), b""))
    data = await read(service, jid, avatars.items_iq(jid, avatars.DATA_NODE, item_id=item_id), avatars.PUBSUB_NS,
                      f"{avatars.DATA_NODE} item {item_id}")
    return avatars.avatar_data(data, item_id, info.get("type"))


async def from_vcard4(service, jid, if_none_match):
    return avatars.vcard4_photo(await read(service, jid, avatars.vcard4_iq(jid), avatars.VCARD4_NS, "the vCard4"))


async def from_vcard_temp(service, jid, if_none_match):
    return avatars.vcard_temp_photo(
        await read(service, jid, avatars.vcard_temp_iq(jid), avatars.VCARD_TEMP_NS, "the vCard"))


SOURCES = {"avatar": from_pep, "vcard4": from_vcard4, "vcard-temp": from_vcard_temp}


async def first_avatar(service, jid, if_none_match):
    reasons = []
    for name, fetch in SOURCES.items():
        try:
            return await fetch(service, jid, if_none_match)
        except NoAvatar as e:
            reasons.append(f"{name}: {e.reason}")
    raise HttpError(404, f"No avatar for {jid} ({'; '.join(reasons)})")


def answer(found, if_none_match) -> Result:
    if isinstance(found, avatars.Link):
        return Result(b"", "text/plain; charset=utf-8", 302,
                      (("Location", found.url), ("Cache-Control", CACHE_CONTROL)))
    caching = (("ETag", avatars.etag(found.hash)), ("Cache-Control", CACHE_CONTROL))
    if isinstance(found, NotModified) or avatars.etag_matches(if_none_match, found.hash):
        return Result(b"", found.content_type, 304, caching)
    return Result(found.data, found.content_type, 200, caching + IMAGE_HEADERS)
