"""/rest/user/{jid}/status[/{resource}]: show a presence for a user who has no session (Tigase's UserStatus).

The component sends the presence from ``jid/resource`` (default ``tigase-external``) to the user's
roster contacts and sends it again when they come online, on every reconnect and after a restart
(tigase_rest/features/presence/). An API key alone is enough, as Tigase 2.x's authRequired override;
with Basic auth the caller must be an admin. The answer is Tigase's ``status`` object, plus
``contacts`` (how many contacts were sent the presence) and, when ``success`` is false, ``reason``.
HTTP is 200 either way, as in Tigase.
"""

from tigase_rest.api import (
    DEFAULT_RESOURCE, Handler, HttpError, check_status_resource, parse_bare_jid, parse_jid, parse_status,
)

EXAMPLE = """curl -H 'Api-Key: KEY' -H 'Content-Type: application/json' \\
  --data '{"available": "true", "priority": "-1", "show": "xa", "status": "On the phone"}' \\
  {base}/user/alice@example.com/status"""


class UserStatus(Handler):
    # Wider than Tigase's user@domain pattern, so a JID without a localpart gets a 400 with the reason.
    regex = r"/([^/]+)/status(?:/([^/]+))?"
    required_role = "admin"
    api_key_replaces_login = True
    description = {
        "regex": "/{user-jid}/status[/{resource}]",
        "parameters": {"user-jid": "The user's bare JID (user@domain)",
                       "resource": "The resource the presence comes from (default tigase-external)"},
        "POST": {
            "info": "Set the presence a user shows while offline",
            "description": "Body (JSON or XML, flat or in a <command> root): available (true|false, default "
                           "true), priority (-128..127, default -1), show (chat|away|xa|dnd), status (text, at "
                           "most 1024 characters), activity ({category, type, text}, XEP-0108). Contacts with "
                           "subscription from/both see the presence from jid/resource (default resource "
                           "tigase-external, at most 256 characters); available=false withdraws it (other fields "
                           "are then ignored). It is sent again when a contact logs in (needs the XEP-0356 presence "
                           "permission), on every reconnect and after a restart. Answer: {status: {user, available, "
                           "priority, show, status, success, contacts, reason?}}. 404 when the server says the user "
                           "has no account; 409 past [presence] max_statuses_per_user (10) or max_statuses.",
            "example": EXAMPLE,
            "request": "StatusRequest",
            "response": "StatusResult",
        },
    }

    async def exec_post(self, service, callback, user, content, jid, resource):
        bare = parse_bare_jid(jid, "the URL")
        if bare.domain != service.domain:
            raise HttpError(404, f"{bare} is not a user of {service.domain}, the domain this component serves")
        full = parse_jid(f"{bare}/{check_status_resource(resource or DEFAULT_RESOURCE)}", "the URL's resource")
        status = parse_status(content)
        outcome = await service.statuses.set(str(bare), full.resource, status)
        data = outcome.as_data()
        if service.config.http.tigase_compat:  # Tigase's keys only: no contacts, no reason
            data["status"] = {k: v for k, v in data["status"].items() if k not in ("contacts", "reason")}
        return data
