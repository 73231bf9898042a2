"""GET /rest/health: is the component usable, and what is it holding?

Not in Tigase. For load balancers and monitoring: 200 when the XMPP link is up, 503 when it is
down; the counters show that nothing leaks (waiting IQs and pooled sessions return to zero).
"""

import time

from tigase_rest.coding import CONTENT_TYPES, encode
from tigase_rest.handlers import Handler, Result
from tigase_rest.http.server import negotiated_format


class Health(Handler):
    regex = r"/?"
    description = {
        "regex": "",
        "GET": {
            "info": "Component health and counters",
            "description": "200 when the XMPP link is up, 503 when it is down. Counts IQs waiting for a reply "
                           "and pooled caller sessions.",
            "example": "curl -H 'Api-Key: KEY' '{base}/health?type=application/json'",
        },
    }

    def exec_get(self, service, callback, request):
        runtime = service.runtime
        up = runtime.link.connected
        report = {"health": {
            "status": "ok" if up else "xmpp link down",
            "xmpp_link": "up" if up else "down",
            "component_jid": service.component_jid,
            "link_connects": runtime.link.connects,
            "pending_iqs": runtime.link.pending_count,
            "caller_sessions": runtime.pool.session_count,
            "caller_pending_iqs": runtime.pool.pending_count,
            "caller_logins": runtime.pool.logins,
            "handlers": len(runtime.routes.routes()),
            "failed_scripts": len(runtime.routes.errors),
            "uptime_s": round(time.monotonic() - runtime.started, 1),
        }}
        if up:
            return report
        fmt = negotiated_format(request)
        return Result(encode(report, fmt).encode(), CONTENT_TYPES[fmt], 503, (("Retry-After", "5"),))
