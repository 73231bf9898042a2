"""GET /rest/version/{jid}: XEP-0092 software version.

Sends the IQ get over the component link and answers with the reply stanza, as XML or as JSON
in Prosody mod_rest's keys (``?type=application/json`` or ``Accept``). An XMPP error reply is the
matching HTTP status with the condition in the body; no reply within ``xmpp.iq_timeout`` is 504.
Access as for ``/rest/stream``.
"""

from tigase_rest.api import Handler, Result, negotiated_format


class Version(Handler):
    regex = r"/([^/]+)"
    required_role = "admin"
    description = {
        "regex": "/{jid}",
        "GET": {
            "info": "Software version (XEP-0092)",
            "description": "The entity's name, version and os.",
            "example": "curl -u admin@example.com:password -H 'Api-Key: KEY' "
                       "'{base}/version/example.com?type=application/json'",
        },
    }

    async def exec_get(self, service, callback, user, request, jid):
        return Result(*await service.shortcut("version", jid, None, negotiated_format(request)))
