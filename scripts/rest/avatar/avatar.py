"""/rest/avatar/{jid}[/{source}]: a user's avatar image (Tigase's AvatarGet and AvatarPutNoAuth).

GET without a source tries PEP (XEP-0084, source ``avatar``), then vCard4 (``vcard4``), then
vcard-temp (``vcard-temp``) and answers the first image found; a link (XEP-0084 url, vCard4 URI,
PHOTO/EXTVAL) is a 302. How each source is read: tigase_rest/features/avatar/service.py.

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

from tigase_rest.api import AvatarLink, AvatarNotModified, Handler, HttpError, Result, avatar_request, etag, etag_matches

# Short: a changed avatar shows up within a minute; revalidation with the ETag is cheap.
MAX_AGE = 60
CACHE_CONTROL = f"private, max-age={MAX_AGE}"
# Avatar bytes and their type come from users: never let a browser run an SVG's script at our origin.
IMAGE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; sandbox"),
)

GET_EXAMPLE = "curl -H 'Api-Key: KEY' -o avatar.png '{base}/avatar/alice@example.com'"
PUT_EXAMPLE = """curl -X PUT -H 'Api-Key: KEY' -H 'Content-Type: image/png' --data-binary @avatar.png \\
  '{base}/avatar/alice@example.com'"""

# Tigase's regex, except that any source is routed so an unknown one gets a helpful 404.
REGEX = r"/(?:([^@/]+)@)?([^@/]+)(?:/([^/]+))?"


class AvatarGet(Handler):
    """Tigase's AvatarGet: no login, an API key as everywhere."""

    regex = REGEX
    decode_content = False
    description = {
        "regex": "/{user-jid}[/{source}]",
        "parameters": {"user-jid": "The user's bare JID (user@domain)",
                       "source": {"description": "Read only this source", "enum": ["avatar", "vcard4", "vcard-temp"]}},
        "GET": {
            "info": "Get a user's avatar image",
            "description": "The image with its content type. Without a source: PEP (XEP-0084), then vCard4, then "
                           "vcard-temp, first found wins; a link in any of them is a 302 redirect. ETag is the "
                           "image's sha1 (If-None-Match gives 304). 404 with the reason when there is none. "
                           "PEP and vCard4 nodes that are not public are read through XEP-0356 privileged IQs "
                           "(pubsub, vcard-4.0, vcard-temp get) when the server grants them.",
            "example": GET_EXAMPLE,
            "response": {"media": {"image/*": {"type": "string", "format": "binary"}}},
            "statuses": {"302": "The avatar is a link: Location", "304": "Not modified (If-None-Match)"},
        },
    }

    async def exec_get(self, service, callback, request, local, domain, source):
        jid = avatar_request.user_jid(local, domain)
        if_none_match = request.headers.get("If-None-Match")
        found = await service.avatars.get(jid, avatar_request.source(source), if_none_match)
        return answer(found, if_none_match)


class AvatarPutNoAuth(Handler):
    """Tigase's AvatarPutNoAuth: admin role, but a valid API key alone is enough."""

    regex = REGEX
    required_role = "admin"
    api_key_replaces_login = True
    decode_content = False
    description = {
        "regex": "/{user-jid}",
        "parameters": {"user-jid": "The user's bare JID (user@domain)"},
        "PUT": {
            "info": "Set a user's avatar",
            "description": "The body is the image (Content-Type image/*). It becomes the user's vcard-temp PHOTO, "
                           "other vCard fields are kept; at most 180 KiB with the default xmpp.max_stanza_bytes (413 "
                           "beyond). An API key alone is enough; without one (open access), "
                           "log in as an admin. Needs the XEP-0356 vcard-temp get and set privileges. "
                           "Answers {user: {jid, hash}}.",
            "example": PUT_EXAMPLE,
            "request": {"media": {"image/*": {"type": "string", "format": "binary"}}},
            "response": "AvatarSet",
        },
    }

    async def exec_put(self, service, callback, user, request, local, domain, source):
        jid = avatar_request.user_jid(local, domain)
        if source is not None:
            raise HttpError(404, f"PUT takes no source ({source!r}): it always sets the vcard-temp PHOTO")
        media_type = avatar_request.image_type(request.headers.get("Content-Type"))
        data = avatar_request.image_data(await service.read_body(request), service.config.xmpp.max_stanza_bytes)
        return {"user": {"jid": jid, "hash": await service.avatars.put(jid, data, media_type)}}


def answer(found, if_none_match) -> Result:
    if isinstance(found, AvatarLink):
        return Result(b"", "text/plain; charset=utf-8", 302,
                      (("Location", found.url), ("Cache-Control", CACHE_CONTROL)))
    caching = (("ETag", etag(found.hash)), ("Cache-Control", CACHE_CONTROL))
    if isinstance(found, AvatarNotModified) or etag_matches(if_none_match, found.hash):
        return Result(b"", found.content_type, 304, caching)
    return Result(found.data, found.content_type, 200, caching + IMAGE_HEADERS)
