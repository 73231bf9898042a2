"""POST /rest/stream/[to]: send any stanza over the component link (Tigase's Stream.groovy).

- ``to`` from the URL overrides the stanza's ``to``; no ``from`` means the component's JID.
- An IQ without ``from`` waits for the reply and returns it (200, even for an error IQ, as Tigase);
  anything else is sent and answered 200 with an empty body.
Deviations: a reply that never comes is 504 (Tigase: 500 or a hang); a body that is not exactly one
stanza (several roots, another namespace, an IQ result/error, an IQ without exactly one child)
is 400 with the reason instead of being sent.
"""

from tigase_rest.api import (
    CLIENT_NS, COMPONENT_NS, STANZA_NAMES, Handler, HttpError, Result, parse_jid, parse_xml, renamespace, serialize,
    split_tag,
)

EXAMPLE = """curl -u admin@example.com:password -H 'Api-Key: KEY' -H 'Content-Type: application/xml' \\
  --data '<message xmlns="jabber:client" type="chat" to="test@example.com/resource-1"><body>Example message 1</body></message>' \\
  {base}/stream/"""


class Stream(Handler):
    regex = r"(?:/(.*))?"
    required_role = "admin"
    decode_content = False
    description = {
        "regex": "/[{to-jid}]",
        "parameters": {"to-jid": "Replaces the stanza's 'to'"},
        "POST": {
            "info": "Send any XMPP stanza",
            "description": "The body is one stanza (message, presence or iq), UTF-8 XML. A JID after /stream/ "
                           "replaces its 'to'. Without 'from' the component's JID is used. An iq without 'from' "
                           "returns the reply stanza; anything else returns 200 with an empty body.",
            "example": EXAMPLE,
            "request": {"media": {"application/xml": {"$ref": "#/components/schemas/Stanza"}}},
            "response": {"media": {"application/xml": {"type": "string", "description": "The IQ reply, or empty"}}},
        },
    }

    async def exec_post(self, service, callback, user, request, to):
        body = await service.read_body(request)
        if not body.strip():
            raise HttpError(400, "No data received: the body must be one XMPP stanza")
        stanza = parse_xml(body)
        ns, name = split_tag(stanza.tag)
        if name not in STANZA_NAMES or ns not in ("", CLIENT_NS, COMPONENT_NS):
            raise HttpError(400, f"Not a stanza: <{name}> in namespace {ns or 'none'!r}; "
                                 f"send <message>, <presence> or <iq> in jabber:client")
        if to:
            stanza.set("to", str(parse_jid(to, "the URL")))
        for attr in ("to", "from"):
            if stanza.get(attr):
                stanza.set(attr, str(parse_jid(stanza.get(attr), f"the '{attr}' attribute")))
        if not stanza.get("to"):
            raise HttpError(400, "The stanza has no 'to': set it in the stanza or in the URL (/stream/<jid>)")
        if name == "iq":
            check_iq(stanza)
            if not stanza.get("from"):
                reply = await service.request(stanza)
                renamespace(reply, CLIENT_NS)
                return Result(serialize(reply).encode(), "application/xml; charset=utf-8")
        service.send(stanza)
        return ""


def check_iq(iq):
    kind = iq.get("type")
    if kind not in ("get", "set"):
        raise HttpError(400, f"An iq sent through the API must be of type get or set, not {kind!r}")
    if len(iq) != 1:
        raise HttpError(400, f"An iq get/set must have exactly one child element, not {len(iq)}")
