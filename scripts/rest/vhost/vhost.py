"""/rest/vhost/: the virtual hosts the server serves (Tigase's VHostAdmin), where the server can tell;
else 501 with the reason (Prosody 0.12 and ejabberd 23.01 do not list them over XMPP)."""

from tigase_rest.api import Handler


class VHosts(Handler):
    regex = r"/?"
    required_role = "admin"
    api_key_replaces_login = True
    description = {
        "regex": "/",
        "GET": {
            "info": "List the server's virtual hosts",
            "description": "{vhosts: [{vhost, default-virtual-host?}]}; 501 with the reason when the server "
                           "does not tell them over XMPP (Prosody, ejabberd).",
            "example": "curl -H 'Api-Key: KEY' '{base}/vhost/?type=application/json'",
        },
    }

    async def exec_get(self, service, callback, user):
        return {"vhosts": await service.accounts.vhosts(service.domain)}
