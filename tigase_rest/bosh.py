"""BOSH pre-binding: Tigase's ``pre-bind-bosh-session`` command on ``bosh@<domain>``.

Tigase creates the session inside its own BOSH component. We are an ordinary BOSH client
(XEP-0124, XEP-0206) of the server's endpoint, ``[xmpp] bosh_url``: create a session, SASL PLAIN,
restart, bind a resource, establish the legacy session when offered, then stop and hand ``sid``
and ``rid`` to the caller, whose web client continues ("attaches to") the session as if it had
made those requests itself.

Who may pre-bind whom:
- any user, their own JID, with their own Basic-auth credentials (Tigase lets only admins
  pre-bind at all: it needs no password, we do);
- an admin, another user of the same domain: SASL PLAIN with authzid = that user. Prosody
  ignores authzid and binds the admin; ejabberd 23.01 honours it for anyone (a bug). So the
  outcome is never trusted: the bound JID must be the requested one, otherwise the session is
  terminated and the answer says the server does not support it. The admin check is ours, made
  before any login.

The answer (fields as in Tigase: ``from``, ``hostname``, ``rid``, ``sid``, ``hold``, ``wait``):
- ``rid`` is the NEXT rid: the one the client's first request must carry (Strophe's ``attach()``
  sends the rid it is given, then increments). Every rid before it was used by the pre-bind;
  Prosody replays its last answer for a repeated rid.
- ``hold`` and ``wait`` are what the server granted in its session creation response (Prosody caps
  wait at ``bosh_max_wait``, 120 s, and hold at 1), not what was asked.
- ``hostname`` is the host of ``bosh_url`` (Tigase: the cluster node that holds the session).
The client must attach within the server's inactivity period (Prosody: ``bosh_max_inactivity``, 60 s).

Errors: data problems answer like Tigase, a completed result with a fixed field ``Error`` in
Tigase's wording, plus an XEP-0050 note of type error with the reason. Transport problems are
HTTP statuses with the reason: no ``bosh_url`` 501; BOSH endpoint unreachable 503; the endpoint
answering wrongly (HTTP error, bad XML, a refused login of the caller, no PLAIN, a bind error) 502;
no answer within ``[xmpp] iq_timeout`` (one deadline for the whole exchange) 504. A session that
was created but not handed out is always terminated.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, SubElement
from xml.sax.saxutils import escape, quoteattr

import aiohttp
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from slixmpp.jid import JID, InvalidJID

from . import errors
from .errors import HttpError
from .xmpp.forms import COMMANDS_NS, DATA_NS, command_result
from .xmpp.stanzas import CLIENT_NS, error_of, split_tag

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger(__name__)

BOSH_NS = "http://jabber.org/protocol/httpbind"
XBOSH_NS = "urn:xmpp:xbosh"
STREAMS_NS = "http://etherx.jabber.org/streams"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"

NODE = "pre-bind-bosh-session"
NAME = "Pre-bind BOSH user session"

# Tigase's wording for the "Error" field; NOT_SUPPORTED is ours (Tigase never logs in).
DOMAIN_UNKNOWN = "Domain of the JID doesn't exists"
NO_PERMISSION = "You do not have enough permissions"
INVALID_DATA = "Error processing request, provided data is invalid"
NOT_SUPPORTED = "The XMPP server does not support pre-binding a session for another user"

DEFAULT_HOLD, MAX_HOLD = 1, 10
DEFAULT_WAIT, MAX_WAIT = 60, 600
# XEP-0124 7.1: no rid of the session may pass 2**53 - 1 (JavaScript clients); half leaves room.
MAX_FIRST_RID = 2**52
# Pre-bind answers are stream features and IQ results: a few KiB. More is not a BOSH service.
MAX_RESPONSE_BYTES = 256 * 1024
# Cleaning up after a failure gets its own bound, at most this: the caller is waiting for an error.
TERMINATE_TIMEOUT = 5.0
# Session creation refusals that mean "no such domain here" (Prosody says improper-addressing).
UNKNOWN_HOST_CONDITIONS = ("host-unknown", "improper-addressing")


class PrebindRefused(Exception):
    """A data problem, answered as Tigase does: an ``Error`` field (``text``) plus our ``reason``."""

    def __init__(self, text: str, reason: str):
        super().__init__(reason)
        self.text = text
        self.reason = reason


class BoshTerminated(Exception):
    """The BOSH service ended the session (a ``<body type='terminate'/>`` answer)."""

    def __init__(self, condition: str | None):
        super().__init__(condition or "no condition given")
        self.condition = condition


@dataclass(frozen=True)
class Prebound:
    jid: str  # the full JID the server bound
    sid: str
    rid: int  # the rid of the client's next request
    hold: str
    wait: str
    hostname: str


# --- the command ----------------------------------------------------------------------------------


def commands_list(jid: str) -> dict:
    return {"items": [{"jid": jid, "node": NODE, "name": NAME}]}


async def execute(service: "Service", jid: str, request: dict) -> dict:
    """Run ``pre-bind-bosh-session`` for the caller: the form, the pre-bound session or an Error field."""
    config = service.config.xmpp
    if not config.bosh_url:
        raise HttpError(501, "BOSH pre-binding needs the XMPP server's BOSH endpoint: set [xmpp] bosh_url "
                             "(Prosody: http://HOST:5280/http-bind, ejabberd: http://HOST:5280/bosh)",
                        condition="feature-not-implemented")
    values = {var: (texts[0].strip() if texts else "") for var, texts in request["fields"]}
    user_text, hold_text, wait_text = values.get("from", ""), values.get("hold", ""), values.get("wait", "")
    if not user_text:
        return form(jid, hold_text, wait_text)  # as Tigase: no `from`, no session
    try:
        user = parse_user(user_text)
        hold = parse_count("hold", hold_text, DEFAULT_HOLD, MAX_HOLD)
        wait = parse_count("wait", wait_text, DEFAULT_WAIT, MAX_WAIT)
    except ValueError as e:
        return error_result(jid, INVALID_DATA, str(e))
    login, password = service.caller_credentials()
    if user.bare != login and not service.caller.is_admin:
        return error_result(jid, NO_PERMISSION, f"{login} is not an admin: only admins may pre-bind "
                                                f"a session for another user ({user.bare})")
    try:
        bound = await prebind(config.bosh_url, user, JID(login), password, hold=hold, wait=wait,
                              timeout=config.iq_timeout)
    except PrebindRefused as e:
        log.info("BOSH pre-bind of %s by %s refused: %s", user, login, e.reason)
        return error_result(jid, e.text, e.reason)
    log.info("BOSH session pre-bound for %s by %s", bound.jid, login)
    return result(jid, bound)


def parse_user(text: str) -> JID:
    try:
        user = JID(text)
    except InvalidJID as e:
        raise ValueError(f"'from' is not a valid JID: {text!r} ({e})") from None
    if not user.user or not user.domain:
        raise ValueError(f"'from' must be a user's JID (user@domain or user@domain/resource), not {text!r}")
    return user


def parse_count(name: str, text: str, default: int, maximum: int) -> int:
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= maximum:
        raise ValueError(f"'{name}' must be a whole number from 1 to {maximum}, not {text!r}")
    return int(text)


def form(jid: str, hold: str, wait: str) -> dict:
    """Tigase's form, with its labels; hold and wait keep what the caller sent."""
    iq, x = _command("executing", "form")
    SubElement(x, f"{{{DATA_NS}}}title").text = NAME
    SubElement(x, f"{{{DATA_NS}}}instructions").text = "Fill out this form to create and pre-bind BOSH user session."
    _field(x, "FORM_TYPE", "hidden", "http://jabber.org/protocol/admin")
    _field(x, "from", "jid-single", None, "JID of the user for which session should be created - either "
                                          "BareJID or FullJID, the former will result in randomly generated resource")
    _field(x, "hold", "text-single", hold or str(DEFAULT_HOLD), "HOLD value (optional)")
    _field(x, "wait", "text-single", wait or str(DEFAULT_WAIT), "WAIT value (optional)")
    return command_result(jid, NODE, iq)


def result(jid: str, bound: Prebound) -> dict:
    iq, x = _command("completed", "result")
    _field(x, "from", "jid-single", bound.jid, "JID")
    _field(x, "hostname", "jid-single", bound.hostname, "hostname")
    _field(x, "rid", "text-single", str(bound.rid), "RID")
    _field(x, "sid", "text-single", bound.sid, "SID")
    _field(x, "hold", "text-single", bound.hold, "HOLD")
    _field(x, "wait", "text-single", bound.wait, "WAIT")
    return command_result(jid, NODE, iq)


def error_result(jid: str, text: str, reason: str) -> dict:
    iq, x = _command("completed", "result")
    _field(x, "Error", "fixed", text)
    SubElement(iq[0], f"{{{COMMANDS_NS}}}note", {"type": "error"}).text = reason
    return command_result(jid, NODE, iq)


def _command(status: str, form_type: str) -> tuple[Element, Element]:
    iq = Element("iq", {"type": "result"})
    command = SubElement(iq, f"{{{COMMANDS_NS}}}command", {"node": NODE, "status": status})
    return iq, SubElement(command, f"{{{DATA_NS}}}x", {"type": form_type})


def _field(x: Element, var: str, kind: str, value: str | None, label: str | None = None) -> None:
    field = SubElement(x, f"{{{DATA_NS}}}field", {"var": var, "type": kind})
    if label:
        field.set("label", label)
    if value is not None:
        SubElement(field, f"{{{DATA_NS}}}value").text = value


# --- the BOSH exchange ----------------------------------------------------------------------------


async def prebind(url: str, user: JID, login: JID, password: str, *, hold: int, wait: int,
                  timeout: float) -> Prebound:
    """Create and bind a BOSH session for ``user`` (full: that resource; bare: a random one),
    logging in as ``login``. Raises PrebindRefused for data problems, HttpError otherwise."""
    if user.bare != login.bare and user.domain != login.domain:
        # SASL names the authenticating user by localpart, on the stream's (the user's) domain.
        raise PrebindRefused(NOT_SUPPORTED, f"{login.bare} cannot log in on {user.domain}: an admin can only "
                                            f"pre-bind users of their own domain")
    resource = user.resource or str(uuid.uuid4())  # Tigase's choice of a random resource
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        bosh = BoshClient(http, url, terminate_timeout=min(timeout, TERMINATE_TIMEOUT))
        try:
            async with asyncio.timeout(timeout):
                bound, created = await _login(bosh, user, login, password, resource, hold, wait)
        except TimeoutError:
            await bosh.terminate_quietly()
            raise errors.timeout(f"the BOSH service at {url}", timeout) from None
        except BaseException:  # errors and cancellation alike: never leave a session behind
            await bosh.terminate_quietly()
            raise
        if bound.bare != user.bare:
            sid = bosh.sid
            await bosh.terminate_quietly()
            raise PrebindRefused(NOT_SUPPORTED, f"asked to log {login.bare} in as {user.bare}, the server bound "
                                                f"{bound} instead (it did not honour the SASL authorization identity); "
                                                f"that BOSH session ({sid}) was terminated")
    return Prebound(jid=str(bound), sid=bosh.sid, rid=bosh.rid, hold=created.get("hold") or str(hold),
                    wait=created.get("wait") or str(wait), hostname=urlsplit(url).hostname or "")


async def _login(bosh: "BoshClient", user: JID, login: JID, password: str, resource: str,
                 hold: int, wait: int) -> tuple[JID, Element]:
    """The XEP-0206 sequence; returns the bound JID and the session creation response."""
    try:
        created = await bosh.create(user.domain, hold, wait)
    except BoshTerminated as e:
        if e.condition in UNKNOWN_HOST_CONDITIONS:
            raise PrebindRefused(DOMAIN_UNKNOWN, f"the XMPP server does not serve {user.domain} "
                                                 f"(BOSH session refused: {e.condition})") from None
        raise bosh.failed(f"refused to create a session ({e.condition or 'no condition given'})") from None
    features = find(created, STREAMS_NS, "features")
    if features is None:  # XEP-0206 only says SHOULD for features in the creation response
        features = await expect(bosh, named(STREAMS_NS, "features"))
    mechanisms = [m.text for m in features.iter(f"{{{SASL_NS}}}mechanism")]
    if "PLAIN" not in mechanisms:
        raise bosh.failed(f"offers no SASL PLAIN (offered: {', '.join(filter(None, mechanisms)) or 'none'}); "
                          "it must allow PLAIN over BOSH (Prosody: HTTPS or consider_bosh_secure = true)")

    authzid = user.bare if user.bare != login.bare else ""
    outcome = await expect(bosh, named(SASL_NS, "success", "failure"), sasl_plain(authzid, login.user, password))
    if split_tag(outcome.tag)[1] == "failure":
        condition, text = sasl_failure(outcome)
        why = f"SASL {condition}" + (f": {text}" if text else "")
        if authzid:
            raise PrebindRefused(NOT_SUPPORTED, f"the server refused {login.bare} logging in as {user.bare} ({why})")
        raise bosh.failed(f"refused the login of {login.bare} ({why}), which the c2s login accepted")

    features = await expect(bosh, named(STREAMS_NS, "features"), restart=user.domain)
    if features.find(f"{{{BIND_NS}}}bind") is None:
        raise bosh.failed("offers no resource binding after the login")
    bind_id = "bind-" + secrets.token_hex(4)
    reply = await expect(bosh, iq_reply(bind_id), bind_iq(bind_id, resource))
    bound = reply.findtext(f"{{{BIND_NS}}}bind/{{{BIND_NS}}}jid")
    if reply.get("type") != "result" or not bound:
        raise bosh.failed(f"refused to bind the resource {resource!r} ({iq_error(reply)})")
    # RFC 3921 session establishment; RFC 6121 dropped it, but servers still list it (Prosody: optional).
    if features.find(f"{{{SESSION_NS}}}session") is not None:
        session_id = "session-" + secrets.token_hex(4)
        reply = await expect(bosh, iq_reply(session_id), session_iq(session_id))
        if reply.get("type") != "result":
            raise bosh.failed(f"refused to establish the session ({iq_error(reply)})")
    try:
        return JID(bound), created
    except InvalidJID:
        raise bosh.failed(f"bound an invalid JID: {bound!r}") from None


async def expect(bosh: "BoshClient", match: Callable[[Element], bool], payload: str = "",
                 restart: str | None = None) -> Element:
    """Send ``payload``; the first child of the answers that ``match``es. A server that has not
    answered yet is asked again with empty requests (bounded by the caller's deadline)."""
    body = await bosh.request(payload, restart=restart)
    while (found := next((child for child in body if match(child)), None)) is None:
        body = await bosh.request()
    return found


class BoshClient:
    """The client side of one BOSH session, one request at a time (all pre-binding needs)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, terminate_timeout: float = TERMINATE_TIMEOUT):
        self.http = http
        self.url = url
        self.terminate_timeout = terminate_timeout
        self.rid = secrets.randbelow(MAX_FIRST_RID) + 1  # the rid of the next request
        self.sid: str | None = None

    def failed(self, what: str) -> HttpError:
        return HttpError(502, f"The BOSH service at {self.url} {what}")

    async def create(self, domain: str, hold: int, wait: int) -> Element:
        """The session creation request; returns the response body (sid, granted hold/wait, features)."""
        body = await self._post(session_request(self._take_rid(), domain, hold, wait))
        sid = body.get("sid")
        if not sid:
            raise self.failed("answered the session creation request without a sid")
        self.sid = sid
        return body

    async def request(self, payload: str = "", restart: str | None = None) -> Element:
        """One request of the session; ``restart`` = the domain for an XEP-0206 stream restart."""
        return await self._post(session_body(self._take_rid(), self.sid, payload, restart=restart))

    async def terminate_quietly(self) -> None:
        """End the session if one was created: best effort, bounded, never raises."""
        if self.sid is None:
            return
        sid, self.sid = self.sid, None
        try:
            async with asyncio.timeout(self.terminate_timeout):
                unavailable = f"<presence xmlns='{CLIENT_NS}' type='unavailable'/>"
                await self._post(session_body(self._take_rid(), sid, unavailable, terminate=True))
        except BoshTerminated:
            pass  # the expected answer
        except (HttpError, TimeoutError) as e:
            log.info("Could not terminate BOSH session at %s: %s", self.url, getattr(e, "reason", "timeout"))

    def _take_rid(self) -> int:
        rid, self.rid = self.rid, self.rid + 1
        return rid

    async def _post(self, data: bytes) -> Element:
        try:
            async with self.http.post(self.url, data=data,
                                      headers={"Content-Type": "text/xml; charset=utf-8"}) as response:
                if response.status != 200:
                    raise self.failed(f"answered HTTP {response.status} {response.reason or ''}".rstrip())
                raw = bytearray()
                async for chunk in response.content.iter_any():
                    raw += chunk
                    if len(raw) > MAX_RESPONSE_BYTES:
                        raise self.failed(f"answered more than {MAX_RESPONSE_BYTES} bytes")
        except TimeoutError:
            raise  # the caller's deadline: a 504, not a 502
        except aiohttp.ClientConnectorError as e:
            raise HttpError(503, f"Cannot reach the BOSH service at {self.url}: {e.os_error or e}",
                            condition="service-unavailable", headers={"Retry-After": "5"}) from None
        except aiohttp.ClientError as e:
            raise self.failed(f"broke the HTTP exchange: {type(e).__name__}: {e}") from None
        try:
            return parse_body(bytes(raw))
        except ValueError as e:
            raise self.failed(f"answered {e}") from None


# --- XML on the wire ------------------------------------------------------------------------------


def session_request(rid: int, domain: str, hold: int, wait: int) -> bytes:
    """XEP-0124 session creation request, XEP-0206 flavoured."""
    return _body({"rid": str(rid), "to": domain, "hold": str(hold), "wait": str(wait), "ver": "1.6",
                  "xml:lang": "en", "xmpp:version": "1.0"})


def session_body(rid: int, sid: str, payload: str = "", *, restart: str | None = None,
                 terminate: bool = False) -> bytes:
    attrs = {"rid": str(rid), "sid": sid}
    if restart:
        attrs.update({"to": restart, "xml:lang": "en", "xmpp:restart": "true"})
    if terminate:
        attrs["type"] = "terminate"
    return _body(attrs, payload)


def _body(attrs: dict[str, str], payload: str = "") -> bytes:
    head = f"<body xmlns='{BOSH_NS}'"
    if any(name.startswith("xmpp:") for name in attrs):
        head += f" xmlns:xmpp='{XBOSH_NS}'"
    head += "".join(f" {name}={quoteattr(value)}" for name, value in attrs.items())
    return (f"{head}>{payload}</body>" if payload else head + "/>").encode("utf-8")


def sasl_plain(authzid: str, authcid: str, password: str) -> str:
    """RFC 4616 PLAIN; an empty authzid means "as myself"."""
    blob = base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode("utf-8")).decode("ascii")
    return f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{blob}</auth>"


def bind_iq(iq_id: str, resource: str) -> str:
    return (f"<iq xmlns='{CLIENT_NS}' type='set' id={quoteattr(iq_id)}><bind xmlns='{BIND_NS}'>"
            f"<resource>{escape(resource)}</resource></bind></iq>")


def session_iq(iq_id: str) -> str:
    return f"<iq xmlns='{CLIENT_NS}' type='set' id={quoteattr(iq_id)}><session xmlns='{SESSION_NS}'/></iq>"


def parse_body(raw: bytes) -> Element:
    """A response ``<body/>``; BoshTerminated for ``type='terminate'``, ValueError when it is no BOSH body."""
    try:
        body = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException) as e:
        raise ValueError(f"malformed XML ({e})") from None
    if body.tag != f"{{{BOSH_NS}}}body":
        raise ValueError(f"<{split_tag(body.tag)[1]}/> instead of a BOSH <body/>")
    if body.get("type") == "terminate":
        raise BoshTerminated(body.get("condition"))
    return body


def find(body: Element, namespace: str, *names: str) -> Element | None:
    return next((child for child in body if named(namespace, *names)(child)), None)


def named(namespace: str, *names: str) -> Callable[[Element], bool]:
    return lambda element: split_tag(element.tag)[0] == namespace and split_tag(element.tag)[1] in names


def iq_reply(iq_id: str) -> Callable[[Element], bool]:
    # A stanza without its own xmlns inherits the body's: accept both (and jabber:client, as sent).
    def match(element: Element) -> bool:
        ns, name = split_tag(element.tag)
        return (name == "iq" and ns in (CLIENT_NS, BOSH_NS) and element.get("id") == iq_id
                and element.get("type") in ("result", "error"))
    return match


def iq_error(reply: Element) -> str:
    condition, text = error_of(reply)
    return (condition or "no error condition") + (f": {text}" if text else "")


def sasl_failure(failure: Element) -> tuple[str, str | None]:
    condition = next((split_tag(c.tag)[1] for c in failure if split_tag(c.tag)[1] != "text"), "no condition")
    text = (failure.findtext(f"{{{SASL_NS}}}text") or "").strip() or None
    return condition, text
