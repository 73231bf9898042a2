"""GET /rest/disco/{jid}[?node=...]: XEP-0030 service discovery info.

Sends the IQ get over the component link and answers with the reply stanza, as XML or as JSON
in Prosody mod_rest's keys (``?type=application/json`` or ``Accept``). An XMPP error reply is the
matching HTTP status with the condition in the body; no reply within ``xmpp.iq_timeout`` is 504.
Access as for ``/rest/stream``.
"""

from tigase_rest.api import Handler, Result, negotiated_format


class Disco(Handler):
    regex = r"/([^/]+)"
    required_role = "admin"
    description = {
        "regex": "/{jid}",
        "GET": {
            "info": "Service discovery info (XEP-0030)",
            "description": "Identities and features; the 'node' parameter asks about a node.",
            "example": "curl -u admin@example.com:password -H 'Api-Key: KEY' "
                       "'{base}/disco/example.com?type=application/json'",
        },
    }

    async def exec_get(self, service, callback, user, request, jid):
        return Result(*await service.shortcut("disco", jid, request.query.get("node"), negotiated_format(request)))
