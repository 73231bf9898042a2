"""/rest/users/[{domain}]: the accounts of a domain (Tigase's UsersList and UsersDomainList).

From the server's XEP-0133 get-registered-users-list, as the caller (admin login) or as the component
(API key alone). Without a domain: the domain this component serves. 501 naming what the server
lacks when it has no such command (Prosody 0.12's mod_admin_adhoc).
"""

from tigase_rest.api import Handler, parse_jid, HttpError


class UsersList(Handler):
    regex = r"(?:/([^/]*))?"
    required_role = "admin"
    api_key_replaces_login = True
    description = {
        "regex": "/[{domain}]",
        "GET": {
            "info": "List the accounts of a domain",
            "description": "{users: {items: [jid, ...], count, domain}} (admin#get-registered-users-list). "
                           "Without a domain, the component's own. 501 when the server offers no such command.",
            "example": "curl -H 'Api-Key: KEY' '{base}/users/example.com?type=application/json'",
        },
    }

    async def exec_get(self, service, callback, user, domain):
        domain = domain or service.domain
        host = parse_jid(domain, "the URL")
        if host.user or host.resource:
            raise HttpError(400, f"The URL names a domain, not a JID: {domain!r}")
        items = await service.accounts.users(host.domain)
        return {"users": {"items": items, "count": len(items), "domain": host.domain}}
