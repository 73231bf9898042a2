"""/rest/user/{local@domain}: the account itself (Tigase's UserAdmin): read, create, change the password, delete.

Done with the server's XEP-0133 admin commands (add-user, change-user-password, delete-user, user-stats),
as the caller when the request carries an admin login, as the component when it carries an API key alone
(Tigase 2.x's authRequired override; the component is a server admin in the server's config).
Every answer is ``{user: {jid, domain, ...}}``.
"""

from tigase_rest.api import Handler, parse_bare_jid, parse_user

EXAMPLE_PUT = """curl -X PUT -H 'Api-Key: KEY' -H 'Content-Type: application/json' \\
  --data '{"user": {"password": "secret", "email": "alice@example.org"}}' {base}/user/alice@example.com"""


class UserAdmin(Handler):
    regex = r"/([^/]+)"  # never /{jid}/status: that is status.py's (a slash is not matched here)
    required_role = "admin"
    api_key_replaces_login = True
    description = {
        "regex": "/{user-jid}",
        "GET": {
            "info": "Read an account",
            "description": "{user: {jid, domain, roster_size, resources, online}} from the server's user-stats "
                           "command; 404 when the server has no such account.",
            "example": "curl -H 'Api-Key: KEY' '{base}/user/alice@example.com?type=application/json'",
        },
        "PUT": {
            "info": "Create an account",
            "description": "Body {user: {password, email?}} (admin#add-user; email is passed as the command's "
                           "optional field, Prosody and ejabberd do not keep it). 409 \"User exists\".",
            "example": EXAMPLE_PUT,
        },
        "POST": {
            "info": "Change an account",
            "description": "Body {user: {password?}} (admin#change-user-password). 404 when there is no such account.",
            "example": "curl -H 'Api-Key: KEY' -H 'Content-Type: application/json' "
                       "--data '{\"user\": {\"password\": \"new\"}}' {base}/user/alice@example.com",
        },
        "DELETE": {
            "info": "Delete an account",
            "description": "admin#delete-user; {user: {jid, domain}}. 404 when there is no such account.",
            "example": "curl -X DELETE -H 'Api-Key: KEY' {base}/user/alice@example.com",
        },
    }

    async def exec_get(self, service, callback, user, jid):
        return {"user": await service.accounts.get(account(jid))}

    async def exec_put(self, service, callback, user, content, jid):
        change = parse_user(content, password_required=True)
        return {"user": await service.accounts.create(account(jid), change.password, change.email)}

    async def exec_post(self, service, callback, user, content, jid):
        change = parse_user(content, password_required=False)
        bare = account(jid)
        if change.password:
            await service.accounts.set_password(bare, change.password)
        return {"user": await service.accounts.get(bare)}

    async def exec_delete(self, service, callback, user, jid):
        return {"user": await service.accounts.delete(account(jid))}


def account(jid):
    return str(parse_bare_jid(jid, "the URL"))
