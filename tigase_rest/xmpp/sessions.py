"""Acting as the caller: c2s sessions logged in with the caller's own credentials.

A Basic-auth password is verified by a real SASL login against the server's c2s port; the
session is kept in a bounded pool (LRU cap, idle timeout) and reused for the caller's IQs, so the
server applies its own access rules to them (DESIGN.md, "Two identities").
After a success the check is cached in memory as a salted HMAC with a TTL: a request with cached
credentials costs no login. Failures are never cached and are rate-limited per JID and per address.
Sessions send no presence (they are not "available" and receive no chat traffic).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import os
import secrets
import ssl
import time
from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement

from slixmpp import ClientXMPP
from slixmpp.jid import JID

from .. import errors
from ..config import Config
from . import scram  # noqa: F401 - registers the fast SCRAM for every login
from .iq import IqTracker
from .stanzas import CLIENT_NS

log = logging.getLogger(__name__)

ADMIN_NODE_PREFIX = "http://jabber.org/protocol/admin#"
COMMANDS_NODE = "http://jabber.org/protocol/commands"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


class AuthFailed(Exception):
    """The server refused the credentials."""


class SessionClosed(errors.HttpError):
    """The caller's session is gone; ``sent`` tells whether the IQ had left before it went."""

    def __init__(self, jid: JID, sent: bool):
        super().__init__(503, f"The XMPP session of {jid} was closed by the server",
                         condition="service-unavailable", headers={"Retry-After": "1"})
        self.sent = sent


@dataclass(frozen=True)
class Caller:
    jid: str  # bare JID, normalised
    is_admin: bool


class CallerSession:
    """One logged-in c2s session of one caller."""

    def __init__(self, config: Config, jid: JID, ssl_context: ssl.SSLContext):
        self.config = config
        self.jid = jid
        self.ssl_context = ssl_context
        self.last_used = time.monotonic()
        self.xmpp: ClientXMPP | None = None
        self.iqs: IqTracker | None = None
        self._alive = False

    @property
    def alive(self) -> bool:
        return self._alive

    async def login(self, password: str, timeout: float) -> None:
        x = self.config.xmpp
        resource = "tigase-rest-" + secrets.token_hex(4)
        xmpp = ClientXMPP(f"{self.jid}/{resource}", password, ssl_context=self.ssl_context)
        self.xmpp = xmpp
        mode = x.c2s_tls
        xmpp.enable_direct_tls = mode == "direct"
        xmpp.enable_starttls = mode == "starttls"
        xmpp.enable_plaintext = mode in ("starttls", "none")
        if mode == "none":  # explicit opt-out, meant for loopback
            xmpp.plugin["feature_mechanisms"].unencrypted_plain = True
            xmpp.plugin["feature_mechanisms"].unencrypted_scram = True
        self.iqs = iqs = IqTracker(xmpp.send_raw, CLIENT_NS, lambda: str(self.jid))
        xmpp.add_filter("in", lambda stanza: None if iqs.take(stanza.xml) else stanza)
        outcome: asyncio.Future = asyncio.get_running_loop().create_future()

        def settle(result) -> None:
            if not outcome.done():
                if isinstance(result, BaseException):
                    outcome.set_exception(result)
                else:
                    outcome.set_result(result)

        def on_down(reason) -> None:
            was_alive, self._alive = self._alive, False
            if was_alive:
                log.info("Session of %s closed: %s", self.jid, reason or "connection closed")
            self.iqs.fail_all(SessionClosed(self.jid, sent=True))
            if isinstance(reason, ssl.SSLError):  # STARTTLS failed, e.g. the certificate did not verify
                settle(_tls_failure(reason))
            else:
                settle(errors.HttpError(503, f"Cannot log in {self.jid}: the XMPP server closed the connection",
                                        condition="service-unavailable", headers={"Retry-After": "5"}))

        def on_failed_auth(_stanza) -> None:
            # slixmpp would go on with the next mechanism: one refusal is the answer, and a second
            # attempt would double the failures the server counts against this account.
            settle(AuthFailed())
            xmpp.abort()

        def on_connection_failed(error) -> None:
            if isinstance(error, ssl.SSLError):  # a configuration problem, not an outage
                settle(_tls_failure(error))
            else:
                settle(errors.HttpError(503, f"Cannot reach the XMPP server's c2s port: {error}",
                                        condition="service-unavailable", headers={"Retry-After": "5"}))

        xmpp.add_event_handler("session_start", lambda _: settle(True))
        xmpp.add_event_handler("failed_auth", on_failed_auth)
        xmpp.add_event_handler("no_auth", lambda _: settle(errors.HttpError(
            502, "The XMPP server offers no login method we may use (is TLS required?)")))
        xmpp.add_event_handler("connection_failed", on_connection_failed)
        xmpp.add_event_handler("disconnected", on_down)
        xmpp.connect(self.config.c2s_host, x.c2s_port)
        try:
            await asyncio.wait_for(outcome, timeout)
        except asyncio.TimeoutError:
            self.close()
            raise errors.timeout("the XMPP server (login)", timeout) from None
        except BaseException:
            self.close()
            raise
        finally:
            # The password is needed only for SASL: do not keep it around.
            xmpp.password = ""
        self._alive = True

    async def request(self, iq: Element, timeout: float | None = None) -> Element:
        if not self._alive:
            raise SessionClosed(self.jid, sent=False)
        self.last_used = time.monotonic()
        return await self.iqs.request(iq, timeout or self.config.xmpp.iq_timeout)

    def close(self) -> None:
        self._alive = False
        if self.xmpp is not None:
            self.xmpp.cancel_connection_attempt()
            if self.xmpp.transport:
                self.xmpp.disconnect(wait=0.5)


class FailureLimiter:
    """Counts failed logins per key (JID, address) in a sliding window."""

    def __init__(self, max_failures: int, window: float, max_keys: int = 100_000):
        self.max_failures = max_failures
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, collections.deque] = {}

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        failures = self._failures.get(key)
        if not failures:
            return 0.0
        now = time.monotonic()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0.0
        if len(failures) < self.max_failures:
            return 0.0
        return failures[0] + self.window - now

    def count(self, key: str) -> int:
        """Failures of ``key`` still inside the window."""
        self.retry_after(key)  # prunes expired entries
        return len(self._failures.get(key, ()))

    def record(self, key: str) -> None:
        if key not in self._failures and len(self._failures) >= self.max_keys:
            self._failures.pop(next(iter(self._failures)))  # drop the oldest key: memory stays bounded
        self._failures.setdefault(key, collections.deque(maxlen=self.max_failures)).append(time.monotonic())

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


@dataclass
class _Verified:
    salt: bytes
    digest: bytes
    expires: float
    is_admin: bool


class CallerPool:
    def __init__(self, config: Config):
        self.config = config
        a = config.auth
        # Two limiters, so a flood of failures from many addresses cannot evict a JID's count.
        self.jid_failures = FailureLimiter(a.max_failures, a.failure_window)
        self.addr_failures = FailureLimiter(a.max_failures, a.failure_window)
        self._verified: dict[str, _Verified] = {}
        self._sessions: collections.OrderedDict[str, CallerSession] = collections.OrderedDict()
        self._logins: dict[str, asyncio.Future] = {}
        self._verifications: dict[str, asyncio.Future] = {}
        self._attempts: collections.Counter[str] = collections.Counter()  # verifications in flight per JID
        self._process_key = os.urandom(32)
        # One TLS context for all sessions: slixmpp would load the CA store for each client
        # (73 ms and ~850 KiB per session).
        self._ssl_context = ssl.create_default_context(cafile=config.xmpp.c2s_ca_file or None)
        self._sweeper: asyncio.Task | None = None
        self.logins = 0  # real SASL logins done, for tests and benchmarks

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="caller-session-sweeper")

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()
        self._verified.clear()

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def pending_count(self) -> int:
        """IQs waiting for a reply over all caller sessions."""
        return sum(len(s.iqs) for s in self._sessions.values() if s.iqs is not None)

    # --- authentication ---------------------------------------------------------------------

    async def authenticate(self, jid: JID, password: str, remote: str) -> Caller:
        """Verify Basic-auth credentials; raises HttpError 401/429/503/504."""
        bare = str(jid)
        self._check_limits(bare, remote)
        verified = self._verified.get(bare)
        if verified and verified.expires > time.monotonic() and hmac.compare_digest(
                verified.digest, _digest(verified.salt, password)):
            return Caller(bare, self._is_admin(bare, verified.is_admin))
        # Concurrent requests with the same credentials share one verification (login, admin
        # check, cache entry), so a burst costs one login and never replaces a fresh session.
        key = self._fingerprint(bare, password)
        running = self._verifications.get(key)
        if running is None:
            if self._attempts[bare] + self.jid_failures.count(bare) >= self.config.auth.max_failures:
                # Attempts still in flight count as failures until they end: concurrency
                # cannot outrun the limit.
                raise errors.HttpError(429, "Too many logins in progress for this JID; retry in 1 s",
                                       headers={"Retry-After": "1"})
            self._attempts[bare] += 1
            running = asyncio.ensure_future(self._verify(jid, password, remote))
            self._verifications[key] = running

            def done(_):
                self._verifications.pop(key, None)
                self._attempts[bare] -= 1
                if not self._attempts[bare]:
                    del self._attempts[bare]
            running.add_done_callback(done)
        try:
            return await asyncio.shield(running)
        except AuthFailed:
            raise errors.HttpError(401, f"Invalid credentials for {bare}", headers=errors.challenge()) from None

    def _check_limits(self, bare: str, remote: str) -> None:
        for limiter, key, what in ((self.jid_failures, bare, "this JID"), (self.addr_failures, remote, "this address")):
            wait = limiter.retry_after(key)
            if wait > 0:
                raise errors.HttpError(429, f"Too many failed logins for {what}; retry in {int(wait) + 1} s",
                                       headers={"Retry-After": str(int(wait) + 1)})

    async def _verify(self, jid: JID, password: str, remote: str) -> Caller:
        bare = str(jid)
        try:
            session = await self._login_once(jid, password)
        except AuthFailed:
            self.jid_failures.record(bare)
            self.addr_failures.record(remote)
            self._verified.pop(bare, None)
            raise
        is_admin = bare in self.config.auth.admins
        if not is_admin and self.config.auth.admins_from_server:
            is_admin = await self._offers_admin_commands(session)
        salt = os.urandom(16)
        self._verified[bare] = _Verified(salt, _digest(salt, password),
                                         time.monotonic() + self.config.auth.credential_ttl, is_admin)
        self.jid_failures.clear(bare)
        return Caller(bare, self._is_admin(bare, is_admin))

    def _fingerprint(self, bare: str, password: str) -> str:
        return hmac.new(self._process_key, f"{bare}\0{password}".encode(), hashlib.sha256).hexdigest()

    def known_admin(self, bare: str) -> bool:
        verified = self._verified.get(bare)
        return bool(verified and verified.is_admin and verified.expires > time.monotonic())

    def _is_admin(self, bare: str, from_server: bool) -> bool:
        return from_server or bare in self.config.auth.admins

    async def _login_once(self, jid: JID, password: str) -> CallerSession:
        """Log in, sharing one attempt among concurrent requests with the same credentials."""
        key = self._fingerprint(str(jid), password)
        running = self._logins.get(key)
        if running is None:
            running = asyncio.ensure_future(self._login(jid, password))
            self._logins[key] = running
            running.add_done_callback(lambda _: self._logins.pop(key, None))
        return await asyncio.shield(running)

    async def _login(self, jid: JID, password: str) -> CallerSession:
        bare = str(jid)
        session = CallerSession(self.config, JID(bare), self._ssl_context)
        await session.login(password, self.config.xmpp.iq_timeout)
        self.logins += 1
        old = self._sessions.pop(bare, None)
        if old is not None:
            old.close()
        self._sessions[bare] = session
        while len(self._sessions) > self.config.auth.max_sessions:
            _, evicted = self._sessions.popitem(last=False)
            evicted.close()
        return session

    async def session(self, caller: Caller, password: str) -> CallerSession:
        """The caller's live session; logs in again if it was closed or evicted."""
        session = self._sessions.get(caller.jid)
        if session is not None and session.alive:
            self._sessions.move_to_end(caller.jid)
            return session
        try:
            return await self._login_once(JID(caller.jid), password)
        except AuthFailed:
            self._verified.pop(caller.jid, None)
            raise errors.HttpError(401, f"Invalid credentials for {caller.jid}", headers=errors.challenge()) from None

    async def _offers_admin_commands(self, session: CallerSession) -> bool:
        iq = Element("iq", {"type": "get", "to": self.config.xmpp.domain})
        SubElement(iq, f"{{{DISCO_ITEMS}}}query", {"node": COMMANDS_NODE})
        try:
            reply = await session.request(iq)
        except errors.HttpError as e:
            log.warning("Could not list the commands of %s for %s: %s", self.config.xmpp.domain, session.jid, e)
            return False
        return reply.get("type") == "result" and any(
            (item.get("node") or "").startswith(ADMIN_NODE_PREFIX) for item in reply.iter(f"{{{DISCO_ITEMS}}}item"))

    async def _sweep(self) -> None:
        idle = self.config.auth.session_idle_timeout
        while True:
            await asyncio.sleep(min(30.0, idle / 2))
            now = time.monotonic()
            for bare, session in list(self._sessions.items()):
                if not session.alive or now - session.last_used > idle:
                    self._sessions.pop(bare, None)
                    session.close()
            for bare, verified in list(self._verified.items()):
                if verified.expires <= now:
                    del self._verified[bare]


def _tls_failure(error: ssl.SSLError) -> errors.HttpError:
    return errors.HttpError(502, f"TLS with the XMPP server's c2s port failed ({error}); "
                                 f"check xmpp.c2s_tls and xmpp.c2s_ca_file")


def _digest(salt: bytes, password: str) -> bytes:
    return hmac.new(salt, password.encode("utf-8"), hashlib.sha256).digest()
