"""BOSH pre-binding: Tigase's ``pre-bind-bosh-session`` command on ``bosh@<domain>``.

Tigase creates the session inside its own BOSH component. We are an ordinary BOSH client
(XEP-0124, XEP-0206) of the server's endpoint, ``[xmpp] bosh_url``: create a session, log in
(``xmpp/login.py``, the same login as the c2s sessions: SCRAM first, PLAIN only over HTTPS or when
the server offers it over plain HTTP), restart, bind a resource, establish the legacy session
when required, then stop and hand ``sid`` and ``rid`` to the caller, whose web client continues
("attaches to") the session as if it had made those requests itself.

Who may pre-bind whom:
- any user, their own JID, with their own Basic-auth credentials (Tigase lets only admins
  pre-bind at all: it needs no password, we do);
- an admin, another user of the same domain: SASL with authzid = that user. Prosody
  ignores authzid and binds the admin; ejabberd 23.01 honours it (PLAIN) for anyone (a bug). So
  the outcome is never trusted: the bound JID must be the requested one, otherwise the session is
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
answering wrongly (HTTP error, bad XML, a refused login of the caller, no usable SASL mechanism,
a SCRAM signature that does not verify, a bind error) 502; no answer within ``[xmpp] iq_timeout``
(one deadline for the whole exchange) 504. A session that was created but not handed out is
always terminated.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

import aiohttp
from slixmpp.jid import JID, InvalidJID

from ... import errors
from ...config import XmppConfig
from ...errors import HttpError
from ...xmpp.login import (BOUND, DERIVE, RESTART, STREAMS_NS, WAIT, AuthFailed, BadSignature, Login, LoginError, NoMechanism,
                           Step)
from ...xmpp.sessions import FailureLimiter
from ...xmpp.stanzas import CLIENT_NS
from . import stanzas
from .request import DEFAULT_HOLD, DEFAULT_WAIT, MAX_HOLD, MAX_WAIT, field_values, parse_count, parse_user
from .stanzas import (DOMAIN_UNKNOWN, INVALID_DATA, NO_PERMISSION, NOT_SUPPORTED, BoshTerminated,
                      Prebound, parse_body, payloads, session_body, session_request)

log = logging.getLogger(__name__)

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


class BoshPrebinding:
    """The ``pre-bind-bosh-session`` command of ``bosh@<domain>``, for one configuration."""

    NODE = stanzas.NODE

    def __init__(self, xmpp: XmppConfig, per_minute: int = 10):
        self.bosh_url = xmpp.bosh_url
        self.domain = xmpp.domain
        self.iq_timeout = xmpp.iq_timeout
        # Each pre-bind is a full login with the caller's password: at most this many per account
        # per minute ([auth] max_prebinds_per_minute), so the API cannot be used to hammer the server.
        self.starts = FailureLimiter(per_minute, 60.0)

    def commands_list(self, jid: str) -> dict:
        return stanzas.commands_list(jid)

    async def execute(self, jid: str, request: dict, login: str, password: str, login_is_admin: bool) -> dict:
        """Run the command for the caller ``login`` (a bare JID; ``password`` its own): the form,
        the pre-bound session or an Error field. ``request`` is ``forms.parse_command_request``'s."""
        if not self.bosh_url:
            raise HttpError(501, "BOSH pre-binding needs the XMPP server's BOSH endpoint: set [xmpp] bosh_url "
                                 "(Prosody: http://HOST:5280/http-bind, ejabberd: http://HOST:5280/bosh)",
                            condition="feature-not-implemented")
        values = field_values(request)
        user_text, hold_text, wait_text = values.get("from", ""), values.get("hold", ""), values.get("wait", "")
        if not user_text:  # as Tigase: no `from`, no session
            return stanzas.form(jid, hold_text, wait_text)
        try:
            user = parse_user(user_text)
            hold = parse_count("hold", hold_text, DEFAULT_HOLD, MAX_HOLD)
            wait = parse_count("wait", wait_text, DEFAULT_WAIT, MAX_WAIT)
        except ValueError as e:
            return stanzas.error_result(jid, INVALID_DATA, str(e))
        if user.bare != login and not login_is_admin:
            return stanzas.error_result(jid, NO_PERMISSION, f"{login} is not an admin: only admins may pre-bind "
                                                            f"a session for another user ({user.bare})")
        wait_s = self.starts.retry_after(login)
        if wait_s > 0:
            raise HttpError(429, f"{login} pre-bound {self.starts.max_failures} BOSH sessions in the last minute "
                                 f"([auth] max_prebinds_per_minute); retry in {int(wait_s) + 1} s",
                            headers={"Retry-After": str(int(wait_s) + 1)})
        self.starts.record(login)
        try:
            bound = await prebind(self.bosh_url, user, JID(login), password, hold=hold, wait=wait,
                                  timeout=self.iq_timeout)
        except PrebindRefused as e:
            log.info("BOSH pre-bind of %s by %s refused: %s", user, login, e.reason)
            return stanzas.error_result(jid, e.text, e.reason)
        log.info("BOSH session pre-bound for %s by %s", bound.jid, login)
        return stanzas.result(jid, bound)


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
            error = errors.timeout("the XMPP server's BOSH service", timeout)
            error.detail = url
            raise error from None
        except BaseException:  # errors and cancellation alike: never leave a session behind
            await bosh.terminate_quietly()
            raise
        if bound.bare != user.bare:
            sid = bosh.sid
            await bosh.terminate_quietly()
            raise PrebindRefused(NOT_SUPPORTED, f"asked to log {login.bare} in as {user.bare}, the server bound "
                                                f"{bound} instead (it did not honour the SASL authorization identity); "
                                                f"that BOSH session ({sid}) was terminated")
    assert bosh.sid is not None  # created above
    return Prebound(jid=str(bound), sid=bosh.sid, rid=bosh.rid, hold=created.get("hold") or str(hold),
                    wait=created.get("wait") or str(wait), hostname=urlsplit(url).hostname or "")


async def _login(bosh: "BoshClient", user: JID, login: JID, password: str, resource: str,
                 hold: int, wait: int) -> tuple[JID, Element]:
    """The XEP-0206 sequence; returns the bound JID and the session creation response."""
    authzid = user.bare if user.bare != login.bare else ""
    try:
        machine = Login(login.user, password, resource=resource, authzid=authzid,
                        secure=urlsplit(bosh.url).scheme == "https", plain_in_clear=True)
    except AuthFailed as e:  # SASLprep: the c2s login accepted it, so this cannot happen
        raise bosh.failed(f"cannot be logged in to with these credentials ({e.text})") from None
    del password
    try:
        created = await bosh.create(user.domain, hold, wait)
    except BoshTerminated as e:
        if e.condition in UNKNOWN_HOST_CONDITIONS:
            raise PrebindRefused(DOMAIN_UNKNOWN, f"the XMPP server does not serve {user.domain} "
                                                 f"(BOSH session refused: {e.condition})") from None
        raise bosh.failed(f"refused to create a session ({e.condition or 'no condition given'})") from None
    # XEP-0206 only says SHOULD for features in the creation response: else they are polled for.
    pending = [child for child in created if child.tag == f"{{{STREAMS_NS}}}features"]
    try:
        step = Step(WAIT)
        while step.state != BOUND:
            if step.state == DERIVE:
                step = machine.derive() if machine.derive_inline else await asyncio.to_thread(machine.derive)
                continue
            if step.state == RESTART:
                pending = payloads(await bosh.request(restart=user.domain))
            elif step.send:
                pending = payloads(await bosh.request(step.send))
            while not pending:  # a server that has not answered yet is asked again (within the deadline)
                pending = payloads(await bosh.request())
            step = machine.receive(pending.pop(0))
    except AuthFailed as e:
        why = f"SASL {e.condition}" + (f": {e.text}" if e.text else "")
        if authzid:
            raise PrebindRefused(NOT_SUPPORTED, f"the server refused {login.bare} logging in as {user.bare} ({why})") from None
        raise bosh.failed(f"refused the login of {login.bare} ({why}), which the c2s login accepted") from None
    except NoMechanism as e:
        hint = ("a server that requires encryption offers none over plain HTTP: use an https bosh_url (Prosody "
                "behind a TLS proxy: consider_bosh_secure = true)" if not e.offered else
                "PLAIN only over HTTPS or when the server offers it over HTTP")
        raise bosh.failed(f"offers no SASL mechanism we may use (offered: {', '.join(e.offered) or 'none'}); "
                          f"{hint}") from None
    except BadSignature:
        raise bosh.failed("answered with a SCRAM signature that did not verify: it may not be the server "
                          "holding this account") from None
    except LoginError as e:
        raise bosh.failed(f"broke the login: {e.reason}") from None
    try:
        return JID(machine.jid), created
    except InvalidJID:
        raise bosh.failed(f"bound an invalid JID: {machine.jid!r}") from None


class BoshClient:
    """The client side of one BOSH session, one request at a time (all pre-binding needs)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, terminate_timeout: float = TERMINATE_TIMEOUT):
        self.http = http
        self.url = url
        self.terminate_timeout = terminate_timeout
        self.rid = secrets.randbelow(MAX_FIRST_RID) + 1  # the rid of the next request
        self.sid: str | None = None

    def failed(self, what: str) -> HttpError:
        return HttpError(502, f"The XMPP server's BOSH service {what}", detail=self.url)

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
        assert self.sid is not None, "request() before create()"
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
            raise HttpError(503, "Cannot reach the XMPP server's BOSH service", detail=f"{self.url}: {e.os_error or e}",
                            condition="service-unavailable", headers={"Retry-After": "5"}) from None
        except aiohttp.ClientError as e:
            error = self.failed(f"broke the HTTP exchange ({type(e).__name__})")
            error.detail = f"{self.url}: {e}"
            raise error from None
        try:
            return parse_body(bytes(raw))
        except ValueError as e:
            raise self.failed(f"answered {e}") from None
