"""GET /rest/items/{jid}[?node=...]: XEP-0030 service discovery items.

Sends the IQ get over the component link and answers with the reply stanza, as XML or as JSON
in Prosody mod_rest's keys (``?type=application/json`` or ``Accept``). An XMPP error reply is the
matching HTTP status with the condition in the body; no reply within ``xmpp.iq_timeout`` is 504.
Access as for ``/rest/stream``.
"""

from tigase_rest.api import Handler, Result, negotiated_format


class Items(Handler):
    regex = r"/([^/]+)"
    required_role = "admin"
    description = {
        "regex": "/{jid}",
        "GET": {
            "info": "Service discovery items (XEP-0030)",
            "description": "The entity's items (jid, name, node); the 'node' parameter lists a node's items.",
            "example": "curl -u admin@example.com:password -H 'Api-Key: KEY' "
                       "'{base}/items/example.com?type=application/json'",
        },
    }

    async def exec_get(self, service, callback, user, request, jid):
        return Result(*await service.shortcut("items", jid, request.query.get("node"), negotiated_format(request)))
