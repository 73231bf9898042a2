"""/rest/stats/[{component}]: statistics (Tigase's ServerStats and ComponentStats).

Two components: ``sess-man`` (what the server tells: online and registered users over XEP-0133,
uptime over XEP-0012, version over XEP-0092; what it does not offer is named in ``unavailable``) and
this component itself (its counters, as GET /rest/health), named by its JID's first label (``http``).
"""

from tigase_rest.api import Handler, HttpError

SERVER = "sess-man"


class Stats(Handler):
    regex = r"(?:/([^/]*))?"
    required_role = "admin"
    api_key_replaces_login = True
    description = {
        "regex": "/[{component}]",
        "GET": {
            "info": "Server and component statistics",
            "description": "{stats: {sess-man: {component, node, data: [{var, value, label}]}, http: {...}}}; "
                           "with a component name, {stats: {component, node, data}}.",
            "example": "curl -H 'Api-Key: KEY' '{base}/stats/?type=application/json'",
        },
    }

    async def exec_get(self, service, callback, user, component):
        own = service.component_jid.split(".", 1)[0]
        if component in (None, ""):
            return {"stats": {SERVER: await server_stats(service), own: own_stats(service, own)}}
        if component == SERVER:
            return {"stats": await server_stats(service)}
        if component in (own, service.component_jid):
            return {"stats": own_stats(service, own)}
        raise HttpError(404, f"No component {component!r}: the components are {SERVER} and {own}")


async def server_stats(service):
    data = await service.accounts.server_stats(service.domain)
    return {"component": SERVER, "node": f"stats/{SERVER}", "domain": service.domain, "data": data}


def own_stats(service, name):
    data = [{"var": f"{name}/{key}", "value": str(value)} for key, value in service.health().items()]
    return {"component": name, "node": f"stats/{name}", "jid": service.component_jid, "data": data}
