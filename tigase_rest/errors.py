"""The error table: XMPP stanza error conditions <-> HTTP status codes.

Tigase answers every XMPP error with a bare 404; we map the condition to the HTTP status a
client expects and keep the condition and the server's text in the body (a deliberate deviation).
"""

from __future__ import annotations

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
    ):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.condition = condition
        self.text = text
        self.headers = dict(headers or {})

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

