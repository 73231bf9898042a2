"""Acting as the caller: c2s sessions logged in with the caller's own credentials.

A Basic-auth password is verified by a real SASL login against the server's c2s port; the
session is kept in a bounded pool (LRU cap, idle timeout) and reused for the caller's IQs, so the
server applies its own access rules to them (DESIGN.md, "Two identities").
After a success the check is cached in memory as a salted HMAC with a TTL: a request with cached
credentials costs no login, and is served before any limiter is asked (limiters stop guesses, not
the owner). Failures are never cached and are rate-limited per JID and per address; logins still in
flight count against both limits, so concurrency cannot outrun them. A cached credential is dropped
when the server ends that JID's pooled session (password changed, account deleted, session ended)
and when a command run through the API changes the account (``forget``).
Sessions send no presence (they are not "available" and receive no chat traffic).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement

from slixmpp.jid import JID

from .. import errors
from ..config import Config
from .c2s import ClientStream, SessionClosed
from .iq import IqStats
from .login import AuthFailed

log = logging.getLogger(__name__)

ADMIN_NODE_PREFIX = "http://jabber.org/protocol/admin#"
COMMANDS_NODE = "http://jabber.org/protocol/commands"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


@dataclass(frozen=True)
class Caller:
    jid: str  # bare JID, normalised
    is_admin: bool


class CallerSession(ClientStream):
    """One logged-in c2s session of one caller."""

    __slots__ = ("config", "ssl_context", "last_used", "on_lost")

    def __init__(self, config: Config, jid: JID, ssl_context: ssl.SSLContext):
        super().__init__(jid, config.xmpp.max_stanza_bytes)
        self.config = config
        self.ssl_context = ssl_context
        self.last_used = time.monotonic()
        # Called once when the connection goes and the pool did not close it itself: the server
        # ended the session (password changed, account deleted, end-user-session) or the network did.
        self.on_lost: Callable[[CallerSession], None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost(self)

    def retire(self) -> None:
        """Closed by the pool (evicted, idle, replaced, forgotten): not news for the pool."""
        self.on_lost = None
        self.close()

    async def login(self, password: str, timeout: float) -> None:
        x = self.config.xmpp
        await self.connect_and_login(password, self.config.c2s_host, x.c2s_port, x.c2s_tls, self.ssl_context, timeout)

    async def request(self, iq: Element, timeout: float | None = None) -> Element:
        if not self._alive:
            raise SessionClosed(self.jid, sent=False)
        self.last_used = time.monotonic()
        return await self.iqs.request(iq, timeout or self.config.xmpp.iq_timeout)


class FailureLimiter:
    """Counts failed logins per key (JID, address) in a sliding window."""

    def __init__(self, max_failures: int, window: float, max_keys: int = 100_000):
        self.max_failures = max_failures
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, collections.deque] = {}

    def reconfigure(self, max_failures: int, window: float) -> None:
        """New limits (a reload); the failures already counted stay, the newest ones first."""
        self.max_failures, self.window = max_failures, window
        self._failures = {k: collections.deque(v, maxlen=max_failures) for k, v in self._failures.items()}

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
        self._addr_attempts: collections.Counter[str] = collections.Counter()  # ... and per client address
        self._process_key = os.urandom(32)
        # forget() calls per JID: a verification that began before one is not cached (it may have
        # used the password the account had before). Bounded: emptied when full, which only makes
        # verifications in flight at that moment count as forgotten (not cached: the safe side).
        self._forgotten: collections.Counter[str] = collections.Counter()
        # One TLS context for all sessions: loading the CA store costs 73 ms and ~850 KiB.
        self._ssl_context = ssl.create_default_context(cafile=config.xmpp.c2s_ca_file or None)
        self._sweeper: asyncio.Task | None = None
        self.logins = 0  # real SASL logins done, for tests and benchmarks
        # Basic-auth checks that needed a login, by outcome (ok, failed, limited): for /metrics.
        self.login_outcomes: collections.Counter[str] = collections.Counter()
        self.iq_stats = IqStats()  # IQ round trips over every caller session, for /metrics

    def apply(self, config: Config) -> None:
        """A reloaded configuration: [auth] takes effect for the next request (limits included)."""
        self.config = config
        for limiter in (self.jid_failures, self.addr_failures):
            limiter.reconfigure(config.auth.max_failures, config.auth.failure_window)

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="caller-session-sweeper")

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        for session in self._sessions.values():
            session.retire()
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
        # A verified credential first: the limiters stop guesses, and must not lock the owner out
        # while someone else guesses (a cache hit costs the server nothing, so nothing to limit).
        verified = self._verified.get(bare)
        if verified and verified.expires > time.monotonic() and hmac.compare_digest(
                verified.digest, _digest(verified.salt, password)):
            session = self._sessions.get(bare)
            if session is None or session.alive:  # a dead pooled session: the server may have a new password
                return Caller(bare, self._is_admin(bare, verified.is_admin))
            self._drop(bare, session)
        self._check_limits(bare, remote)
        # Concurrent requests with the same credentials share one verification (login, admin
        # check, cache entry), so a burst costs one login and never replaces a fresh session.
        key = self._fingerprint(bare, password)
        running = self._verifications.get(key)
        if running is None:
            # Logins still in flight count as failures until they end, per JID and per address:
            # concurrency cannot outrun the limits (200 parallel guesses for 200 JIDs from one
            # address reach the server at most max_failures times). A success stops counting.
            limit = self.config.auth.max_failures
            if self._attempts[bare] + self.jid_failures.count(bare) >= limit:
                raise self._limited(bare, remote, errors.HttpError(
                    429, "Too many logins in progress for this JID; retry in 1 s", headers={"Retry-After": "1"}))
            if self._addr_attempts[remote] + self.addr_failures.count(remote) >= limit:
                raise self._limited(bare, remote, errors.HttpError(
                    429, "Too many logins in progress from this address; retry in 1 s", headers={"Retry-After": "1"}))
            self._attempts[bare] += 1
            self._addr_attempts[remote] += 1
            running = asyncio.ensure_future(self._verify(jid, password, remote))
            self._verifications[key] = running

            def done(_):
                self._verifications.pop(key, None)
                for counter, k in ((self._attempts, bare), (self._addr_attempts, remote)):
                    counter[k] -= 1
                    if not counter[k]:
                        del counter[k]
            running.add_done_callback(done)
        try:
            caller = await asyncio.shield(running)
        except AuthFailed:
            self.login_outcomes["failed"] += 1
            # Stable wording: fail2ban's filter in the README matches it (tests/integration/test_observability.py).
            log.warning("Login failed for %s from %s", bare, remote or "-")
            raise errors.HttpError(401, f"Invalid credentials for {bare}", headers=errors.challenge()) from None
        self.login_outcomes["ok"] += 1
        return caller

    def _limited(self, bare: str, remote: str, error: errors.HttpError) -> errors.HttpError:
        self.login_outcomes["limited"] += 1
        log.warning("Login limited for %s from %s: %s", bare, remote or "-", error.reason)
        return error

    def forget(self, jid: str) -> None:
        """Drop ``jid``'s cached credential and pooled session: its next request logs in again.
        For commands run through the API that change or delete the account (adhoc.py). A login
        already under way for ``jid`` answers its own request but leaves nothing behind."""
        if len(self._forgotten) >= 10_000:
            self._forgotten.clear()
        self._forgotten[jid] += 1
        self._drop(jid, self._sessions.get(jid))

    def _drop(self, bare: str, session: CallerSession | None) -> None:
        self._verified.pop(bare, None)
        if session is not None and self._sessions.get(bare) is session:
            del self._sessions[bare]
            session.retire()

    def _lost(self, session: CallerSession) -> None:
        """The server (or the network) ended a pooled session: its credential goes with it."""
        bare = str(session.jid)
        if self._sessions.get(bare) is session:
            log.info("Dropping the cached credential of %s with its session", bare)
            self._drop(bare, session)

    def _check_limits(self, bare: str, remote: str) -> None:
        for limiter, key, what in ((self.jid_failures, bare, "this JID"), (self.addr_failures, remote, "this address")):
            wait = limiter.retry_after(key)
            if wait > 0:
                raise self._limited(bare, remote, errors.HttpError(
                    429, f"Too many failed logins for {what}; retry in {int(wait) + 1} s",
                    headers={"Retry-After": str(int(wait) + 1)}))

    async def _verify(self, jid: JID, password: str, remote: str) -> Caller:
        bare = str(jid)
        forgotten = self._forgotten[bare]
        try:
            session = await self._login_once(jid, password)
        except AuthFailed:
            # The cached entry (another password) stays: a wrong guess must not log the owner out.
            self.jid_failures.record(bare)
            self.addr_failures.record(remote)
            raise
        is_admin = bare in self.config.auth.admins
        if not is_admin and self.config.auth.admins_from_server:
            is_admin = await self._offers_admin_commands(session)
        self.jid_failures.clear(bare)
        if self._forgotten[bare] != forgotten:
            # The account changed (password, deletion) while this login was under way: the password
            # may be the old one. This request raced the change and is answered; nothing is kept.
            self._drop(bare, session)
            return Caller(bare, self._is_admin(bare, is_admin))
        salt = os.urandom(16)
        self._verified[bare] = _Verified(salt, _digest(salt, password),
                                         time.monotonic() + self.config.auth.credential_ttl, is_admin)
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
        session.iqs.stats = self.iq_stats
        old = self._sessions.pop(bare, None)
        if old is not None:
            old.retire()
        self._sessions[bare] = session
        session.on_lost = self._lost
        while len(self._sessions) > self.config.auth.max_sessions:
            _, evicted = self._sessions.popitem(last=False)
            evicted.retire()
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
        while True:
            await asyncio.sleep(min(30.0, self.config.auth.session_idle_timeout / 2))
            idle = self.config.auth.session_idle_timeout  # read each round: a SIGHUP may change it
            now = time.monotonic()
            for bare, session in list(self._sessions.items()):
                if not session.alive:  # ended by the server: its credential goes too
                    self._drop(bare, session)
                elif now - session.last_used > idle:
                    self._sessions.pop(bare, None)
                    session.retire()
                else:
                    session.keepalive()
            for bare, verified in list(self._verified.items()):
                if verified.expires <= now:
                    del self._verified[bare]


def _digest(salt: bytes, password: str) -> bytes:
    # Keyed BLAKE2b is a MAC of its own (RFC 7693): 0.9 us per request where an HMAC-SHA256 cost
    # 2.5-3 us (OpenSSL 3 looks the digest up by name on every call; measured with timeit).
    return hashlib.blake2b(password.encode("utf-8"), key=salt, digest_size=32).digest()
