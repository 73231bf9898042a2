"""GET /rest/health: is the component usable, and what is it holding?

Not in Tigase. For load balancers and monitoring: 200 when the XMPP link is up, 503 when it is
down; the counters show that nothing leaks (waiting IQs and pooled sessions return to zero).
"""

from tigase_rest.api import CONTENT_TYPES, Handler, Result, encode, negotiated_format


class Health(Handler):
    regex = r"/?"
    description = {
        "regex": "",
        "GET": {
            "info": "Component health and counters",
            "description": "200 when the XMPP link is up, 503 when it is down. Counts IQs waiting for a reply "
                           "and pooled caller sessions.",
            "example": "curl -H 'Api-Key: KEY' '{base}/health?type=application/json'",
            "response": "Health",
            "statuses": {"503": "The XMPP link is down (the same body, Retry-After)"},
        },
    }

    def exec_get(self, service, callback, request):
        counters = service.health()
        up = counters["xmpp_link"] == "up"
        report = {"health": {"status": "ok" if up else "xmpp link down", **counters}}
        if up:
            return report
        fmt = negotiated_format(request)
        return Result(encode(report, fmt).encode(), CONTENT_TYPES[fmt], 503, (("Retry-After", "5"),))
