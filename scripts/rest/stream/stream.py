"""POST /rest/stream/[to]: send any stanza over the component link (Tigase's Stream.groovy).

- The body is one stanza as XML (Tigase), as JSON in Prosody mod_rest's keys
  (``Content-Type: application/json``), or plain text (``text/plain``: a chat message to the JID in
  the URL).
- ``to`` from the URL overrides the stanza's ``to``; no ``from`` means the component's JID.
- An IQ without ``from``, or from a bot on the component's domain (``bot@http.<domain>``), waits for
  the reply and returns it (200, even for an error IQ, as Tigase), as JSON when the request was JSON
  (or asks for it); anything else is sent and answered 200 with an empty body.
Deviations: a reply that never comes is 504 (Tigase: 500 or a hang); a body that is not exactly one
stanza (several roots, another namespace, an IQ result/error, an IQ without exactly one child)
is 400 with the reason instead of being sent.
"""

from tigase_rest.api import (
    Handler, HttpError, Result, negotiated_format, parse_jid, posted_stanza, split_tag, stanza_answer,
)

EXAMPLE = """curl -u admin@example.com:password -H 'Api-Key: KEY' -H 'Content-Type: application/xml' \\
  --data '<message xmlns="jabber:client" type="chat" to="test@example.com/resource-1"><body>Example message 1</body></message>' \\
  {base}/stream/

curl -u admin@example.com:password -H 'Api-Key: KEY' -H 'Content-Type: application/json' \\
  --data '{"kind": "message", "type": "chat", "from": "bot@http.example.com", "body": "Hi"}' \\
  {base}/stream/test@example.com

curl -u admin@example.com:password -H 'Api-Key: KEY' -H 'Content-Type: text/plain' \\
  --data 'Example message 2' {base}/stream/test@example.com"""


class Stream(Handler):
    regex = r"(?:/(.*))?"
    required_role = "admin"
    decode_content = False
    description = {
        "regex": "/[{to-jid}]",
        "parameters": {"to-jid": "Replaces the stanza's 'to'"},
        "POST": {
            "info": "Send any XMPP stanza (XML, JSON or text)",
            "description": "The body is one stanza (message, presence or iq): UTF-8 XML; or JSON in Prosody "
                           "mod_rest's keys (kind, type, to, from, id, body, subject, html, oob_url, show, status, "
                           "priority, ping, disco, items, version, error, and xml for anything else) with "
                           "Content-Type application/json; or text/plain, the body of a chat message to the JID "
                           "in the URL. A JID after /stream/ replaces its 'to'. Without 'from' the component's "
                           "JID is used; a bot sends as itself with from=bot@<component domain>. An iq without "
                           "'from' or from a bot returns the reply stanza, as JSON when the request was JSON; "
                           "anything else returns 200 with an empty body.",
            "example": EXAMPLE,
            "request": {"media": {"application/xml": {"$ref": "#/components/schemas/Stanza"}}},
            "response": {"media": {"application/xml": {"type": "string", "description": "The IQ reply, or empty"}}},
        },
    }

    async def exec_post(self, service, callback, user, request, to):
        body = await service.read_body(request)
        stanza, body_fmt = posted_stanza(body, request.headers.get("Content-Type"), to)
        name = split_tag(stanza.tag)[1]
        if to:
            stanza.set("to", str(parse_jid(to, "the URL")))
        for attr in ("to", "from"):
            if stanza.get(attr):
                stanza.set(attr, str(parse_jid(stanza.get(attr), f"the '{attr}' attribute")))
        if not stanza.get("to"):
            raise HttpError(400, "The stanza has no 'to': set it in the stanza or in the URL (/stream/<jid>)")
        if name == "iq":
            check_iq(stanza)
            sender = stanza.get("from")
            if not sender or parse_jid(sender, "the 'from' attribute").domain in service.deployment:
                reply = await service.request(stanza)
                data, content_type = stanza_answer(reply, body_fmt or negotiated_format(request))
                return Result(data, content_type)
        service.send(stanza)
        return ""


def check_iq(iq):
    kind = iq.get("type")
    if kind not in ("get", "set"):
        raise HttpError(400, f"An iq sent through the API must be of type get or set, not {kind!r}")
    if len(iq) != 1:
        raise HttpError(400, f"An iq get/set must have exactly one child element, not {len(iq)}")
