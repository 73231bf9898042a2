"""The error table: XMPP stanza error conditions <-> HTTP status codes.

Tigase answers every XMPP error with a bare 404; we map the condition to the HTTP status a
client expects and keep the condition and the server's text in the body (a deliberate deviation).
"""

from __future__ import annotations

import re
from typing import Mapping

# RFC 6120 section 8.3.3 conditions -> HTTP status.
XMPP_TO_HTTP: Mapping[str, int] = {
    "bad-request": 400,
    "conflict": 409,
    "feature-not-implemented": 501,
    "forbidden": 403,
    "gone": 410,
    "internal-server-error": 500,
    "item-not-found": 404,
    "jid-malformed": 400,
    "not-acceptable": 406,
    "not-allowed": 405,
    "not-authorized": 403,  # the caller is authenticated over HTTP; the XMPP side refused it
    "payment-required": 402,
    "policy-violation": 403,
    "recipient-unavailable": 404,
    "redirect": 302,
    "registration-required": 403,
    "remote-server-not-found": 502,
    "remote-server-timeout": 504,
    "resource-constraint": 503,
    "service-unavailable": 503,
    "subscription-required": 403,
    "undefined-condition": 500,
    "unexpected-request": 400,
}

# HTTP status -> XMPP condition (Prosody mod_rest's table), for a webhook's answer to a stanza.
HTTP_TO_XMPP: Mapping[int, str] = {
    400: "bad-request",
    401: "not-authorized",
    402: "payment-required",
    403: "forbidden",
    404: "item-not-found",
    405: "not-allowed",
    406: "not-acceptable",
    408: "remote-server-timeout",
    409: "conflict",
    410: "gone",
    413: "policy-violation",
    429: "resource-constraint",
    500: "internal-server-error",
    501: "feature-not-implemented",
    502: "remote-server-not-found",
    503: "service-unavailable",
    504: "remote-server-timeout",
}

# RFC 6120 8.3.3: the error type that goes with each condition.
ERROR_TYPES: Mapping[str, str] = {
    "bad-request": "modify", "conflict": "cancel", "feature-not-implemented": "cancel", "forbidden": "auth",
    "gone": "cancel", "internal-server-error": "cancel", "item-not-found": "cancel", "jid-malformed": "modify",
    "not-acceptable": "modify", "not-allowed": "cancel", "not-authorized": "auth", "payment-required": "auth",
    "policy-violation": "modify", "recipient-unavailable": "wait", "redirect": "modify",
    "registration-required": "auth", "remote-server-not-found": "cancel", "remote-server-timeout": "wait",
    "resource-constraint": "wait", "service-unavailable": "cancel", "subscription-required": "auth",
    "undefined-condition": "cancel", "unexpected-request": "wait",
}


def condition_for_status(status: int) -> str:
    """The XMPP condition for an HTTP status: the table, else by class (4xx bad-request, 5xx
    internal-server-error, anything else undefined-condition)."""
    if status in HTTP_TO_XMPP:
        return HTTP_TO_XMPP[status]
    if 400 <= status < 500:
        return "bad-request"
    if 500 <= status < 600:
        return "internal-server-error"
    return "undefined-condition"


def error_type_of(condition: str) -> str:
    return ERROR_TYPES.get(condition, "cancel")


class HttpError(Exception):
    """An HTTP error answer; rendered in the format the client negotiated."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        condition: str | None = None,
        text: str | None = None,
        headers: Mapping[str, str] | None = None,
        detail: str | None = None,
    ):
        super().__init__(reason)
        self.status = status
        self.reason = reason  # for the client
        self.condition = condition
        self.text = text
        self.headers = dict(headers or {})
        self.detail = detail  # for the log only: internal addresses, the OS's error text

    def as_data(self) -> dict:
        error: dict = {"status": self.status, "reason": self.reason}
        if self.condition:
            error["condition"] = self.condition
        if self.text:
            error["text"] = self.text
        return {"error": error}


def from_xmpp_error(condition: str | None, text: str | None, who: str) -> HttpError:
    """An HttpError for an XMPP error reply from ``who``."""
    condition = condition or "undefined-condition"
    status = XMPP_TO_HTTP.get(condition, 500)
    reason = f"{who} answered with XMPP error {condition}"
    if text:
        reason += f": {text}"
    return HttpError(status, reason, condition=condition, text=text)


def challenge() -> dict[str, str]:
    """The headers of a 401 that asks for HTTP Basic auth (Tigase's realm name)."""
    return {"WWW-Authenticate": 'Basic realm="TigasePlain", charset="UTF-8"'}


def link_down(retry_after: int = 5) -> HttpError:
    return HttpError(
        503,
        "The XMPP server link is down; retry later",
        condition="service-unavailable",
        headers={"Retry-After": str(retry_after)},
    )


def timeout(who: str, seconds: float) -> HttpError:
    return HttpError(504, f"No answer from {who} within {seconds:g} s", condition="remote-server-timeout")



# What the reason of a 5xx may carry from a socket or HTTP client error: where the XMPP server's
# ports and endpoints are (a URL, a socket address tuple "('10.0.0.5', 5222)", aiohttp's "host
# x:5280"). The client is told "the XMPP server"; the log keeps the original (http/server.py).
_INTERNAL_ADDRESS = re.compile(
    r"""\b[a-z][a-z0-9+.-]*://[^\s'"<>]*[^\s'"<>:,.;)]"""  # a URL (the BOSH endpoint), not the ":" after it
    r"""|\bhost\s+\S+:\d+""",  # aiohttp's "Cannot connect to host x:5280"
    re.IGNORECASE)
_SOCKET_ADDRESS = re.compile(r"""\s*\(\s*'[^']*'\s*,\s*\d+(?:\s*,\s*\d+)*\s*\)""")  # " ('10.0.0.5', 5222)"


def public(error: HttpError) -> HttpError:
    """``error`` as a client may see it: a 5xx reason without internal addresses."""
    if error.status < 500:
        return error
    reason = _SOCKET_ADDRESS.sub("", _INTERNAL_ADDRESS.sub("the XMPP server", error.reason))
    if reason == error.reason:
        return error
    return HttpError(error.status, reason, condition=error.condition, text=error.text, headers=error.headers,
                     detail=error.detail)
