"""Webhooks: stanzas addressed to the component's domain are POSTed to ``[webhooks] url``.

``http.<domain>``, ``bot@http.<domain>`` and ``bot@http.<domain>/res`` all reach the component;
each is handed over unless it is the component's own work (``stanzas.is_component_work``). The
HTTP answer becomes the reply (``stanzas.reply_for``).

- IQ get/set: posted at once; exactly one reply: the answer, an empty result (202/204), or an
  error (4xx/5xx mapped like mod_rest; no answer in ``timeout``: remote-server-timeout; the URL
  unreachable: service-unavailable).
- Messages: written to a SQLite queue first, then delivered by a few workers. While the URL is
  unreachable (no connection, timeout, 408/429/502/503/504) they wait and are retried with
  jittered backoff; one failure pauses all workers, so a down receiver gets one probe at a time.
  A message older than ``retry_for``, or one that finds the queue full (``max_queue``), bounces
  to its sender as an XMPP error. Any other answer is final.
- Presence: posted once; a failure is logged and counted (an error presence would only confuse).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import copy
import hashlib
import hmac
import logging
import random
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from xml.etree.ElementTree import Element

import aiohttp
from yarl import URL

from ... import __version__
from ...coding import data_to_json, parse_xml
from ...config import WebhooksConfig
from ...errors import HttpError
from ...xmpp.component import Link
from ...xmpp.stanzas import CLIENT_NS, renamespace, serialize, split_tag
from . import stanzas
from .store import QueueStore, Queued

if TYPE_CHECKING:
    from ...xmpp.privilege import PrivilegeTracker

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"  # GitHub's name and format: receivers have code to verify it
DELIVERY_HEADER = "X-Delivery-Id"
WORKERS = 8  # messages posted at once
MAX_CONNECTIONS = 32  # to the receiver, IQs and presences included
MAX_IQS = 1000  # IQs waiting for the receiver; past it, resource-constraint at once
RETRYABLE = (408, 429, 502, 503, 504)
BACKOFF_MAX = 30.0  # seconds between probes of a receiver that is down


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer (see ``failure``)
    content_type: str = ""
    body: bytes = b""
    failure: str = ""  # "timeout" or "unreachable: <reason>"


class Webhooks:
    """One per process (built by ``app.serve`` when ``[webhooks] url`` is set)."""

    def __init__(self, config: WebhooksConfig, component_jid: str, domain: str, link: Link,
                 privileges: "PrivilegeTracker | None", store: QueueStore, max_answer_bytes: int):
        self.config = config
        self.component_jid = component_jid
        self.domain = domain
        self.link = link
        self.privileges = privileges
        self.store = store
        self.max_answer_bytes = max_answer_bytes
        self._session: aiohttp.ClientSession | None = None
        self._queue: collections.deque[Queued] = collections.deque()  # waiting, in arrival order
        self._queued = 0  # waiting + being delivered
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._workers: list[asyncio.Task] = []
        self._down_until = 0.0  # loop time before which no message is posted (the receiver is down)
        self._failures = 0  # consecutive retryable failures
        self._iqs = 0
        self.counts = collections.Counter[str]()

    # -- lifecycle --

    def setup(self, xmpp) -> None:
        """Hook into the ComponentXMPP (``ComponentLink.on_setup``): an incoming filter runs before
        slixmpp's handlers, so a stanza for the webhook is never also answered by slixmpp."""
        xmpp.add_filter("in", self._incoming)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
            headers={"User-Agent": f"tigase-rest/{__version__}"})
        for entry in self.store.load():
            self._queue.append(entry)
        self._queued = len(self._queue)
        if self._queued:
            log.info("Webhook queue: %d messages from before the restart", self._queued)
            self._wake.set()
        self._workers = [asyncio.create_task(self._worker(), name=f"webhook-worker-{i}") for i in range(WORKERS)]

    async def close(self) -> None:
        for task in (*self._workers, *self._tasks):
            task.cancel()
        await asyncio.gather(*self._workers, *self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self.store.close()

    def counters(self) -> dict[str, Any]:
        return {
            "webhook_queue": self._queued,
            "webhook_queue_max": self.config.max_queue,
            "webhook_receiver": "down" if self._failures else "up",
            "webhook_iqs_waiting": self._iqs,
            "webhook_delivered": self.counts["delivered"],
            "webhook_retries": self.counts["retries"],
            "webhook_errors_sent": self.counts["errors_sent"],
            "webhook_bounced": self.counts["bounced"],
        }

    # -- routing --

    def wants(self, stanza: Element) -> bool:
        kind = split_tag(stanza.tag)[1]
        form = stanzas.address_form(stanza.get("to") or "", self.component_jid)
        if form is None or form not in self.config.events or kind not in self.config.stanzas:
            return False
        forwarded = self.privileges is not None and self.privileges.current.presence != "none"
        return not stanzas.is_component_work(stanza, self.domain, forwarded)

    def _incoming(self, stanza):
        xml = stanza.xml
        if not self.wants(xml):
            return stanza
        xml = renamespace(copy.deepcopy(xml), CLIENT_NS)
        kind = split_tag(xml.tag)[1]
        if kind == "message":
            self._enqueue(xml)
        elif kind == "iq":
            if self._iqs >= MAX_IQS:
                self._send(stanzas.error_reply(xml, "resource-constraint", "Too many requests wait for the bot"))
            else:
                self._spawn(self._answer_once(xml, iq=True))
        else:
            self._spawn(self._answer_once(xml, iq=False))
        return None

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- IQs and presences: one attempt --

    async def _answer_once(self, stanza: Element, iq: bool) -> None:
        if iq:
            self._iqs += 1
        try:
            answer = await self.post(stanza)
            if answer.status:
                self.counts["delivered"] += 1
                self._send(stanzas.reply_for(stanza, answer.status, answer.content_type, answer.body))
            elif iq:
                condition = "remote-server-timeout" if answer.failure == "timeout" else "service-unavailable"
                self._send(stanzas.error_reply(stanza, condition, "The bot's HTTP service did not answer"))
            else:
                log.warning("Webhook: presence from %s not delivered: %s", stanza.get("from"), answer.failure)
        finally:
            if iq:
                self._iqs -= 1

    # -- messages: queued --

    def _enqueue(self, message: Element) -> None:
        if self._queued >= self.config.max_queue:
            self.counts["bounced"] += 1
            log.warning("Webhook queue full (%d): message from %s bounced", self._queued, message.get("from"))
            self._send(stanzas.error_reply(message, "resource-constraint",
                                           "The bot's queue is full; the message was not delivered"))
            return
        try:
            entry = self.store.add(secrets.token_hex(8), serialize(message, CLIENT_NS), time.time())
        except HttpError as e:
            log.error("Webhook: %s; message from %s bounced", e.reason, message.get("from"))
            self._send(stanzas.error_reply(message, "internal-server-error", "The message could not be queued"))
            return
        self._queued += 1
        self._queue.append(entry)
        self._wake.set()

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            pause = self._down_until - loop.time()
            if pause > 0 or not self.link.connected:  # the reply would have no way back
                await asyncio.sleep(pause if pause > 0 else 0.2)
                continue
            entry = self._queue.popleft()
            try:
                await self._deliver(entry)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad entry must not stop the worker
                log.exception("Webhook: delivering queued message %s failed; dropped", entry.delivery_id)
                self._done(entry)

    async def _deliver(self, entry: Queued) -> None:
        message = parse_xml(entry.stanza.encode("utf-8"))
        answer = await self.post(message, entry)
        if answer.status and answer.status not in RETRYABLE:
            self._receiver_up()
            self.counts["delivered"] += 1
            self._done(entry)
            self._send(stanzas.reply_for(message, answer.status, answer.content_type, answer.body))
            return
        reason = answer.failure or f"HTTP {answer.status}"
        entry.attempts += 1
        if time.time() - entry.created >= self.config.retry_for:
            self.counts["bounced"] += 1
            log.warning("Webhook: message %s from %s given up after %d attempts (%s)", entry.delivery_id,
                        message.get("from"), entry.attempts, reason)
            self._done(entry)
            if message.get("type") != "error":
                self._send(stanzas.error_reply(message, "remote-server-timeout",
                                               f"The bot was unreachable for {self.config.retry_for:g} s"))
            return
        self.counts["retries"] += 1
        self._receiver_down(reason)
        try:
            self.store.attempted(entry)
        except HttpError as e:
            log.warning("Webhook: %s", e.reason)
        # Back in its place by arrival: several workers fail at once, and the order must survive that.
        self._queue.insert(bisect.bisect_left(self._queue, entry.row, key=lambda e: e.row), entry)

    def _done(self, entry: Queued) -> None:
        self._queued -= 1
        try:
            self.store.delete(entry)
        except HttpError as e:
            log.warning("Webhook: %s (the message may be delivered again after a restart)", e.reason)

    def _receiver_down(self, reason: str) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._down_until:
            return  # already paused: a failure of a post made before the pause counts once
        self._failures += 1
        # Full jitter: several instances restart their probes at different moments.
        delay = min(BACKOFF_MAX, 0.25 * 2 ** min(self._failures, 10)) * random.uniform(0.5, 1.0)
        self._down_until = loop.time() + delay
        log.warning("Webhook receiver unavailable (%s); %d messages queued, next try in %.1f s",
                    reason, self._queued, delay)

    def _receiver_up(self) -> None:
        if self._failures:
            log.info("Webhook receiver reachable again; %d messages queued", self._queued)
        self._failures = 0
        self._down_until = 0.0

    # -- HTTP --

    def url_for(self, stanza: Element) -> str:
        """``[webhooks] url`` with {kind}, {type}, {to}, {from} of the stanza, percent-encoded (sent as is)."""
        kind = split_tag(stanza.tag)[1]
        default_type = {"message": "normal", "presence": "available", "iq": ""}[kind]
        fields = {"kind": kind, "type": stanza.get("type") or default_type,
                  "to": stanza.get("to") or "", "from": stanza.get("from") or ""}
        return self.config.url.format_map({k: quote(v, safe="") for k, v in fields.items()})

    def encode(self, stanza: Element) -> bytes:
        if self.config.content_type == "application/json":
            return data_to_json(stanzas.to_json(stanza)).encode("utf-8")
        return serialize(stanza).encode("utf-8")

    def signature(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.config.secret.encode("utf-8"), body, hashlib.sha256).hexdigest()

    async def post(self, stanza: Element, entry: Queued | None = None) -> Answer:
        assert self._session is not None, "Webhooks.start() first"
        body = self.encode(stanza)
        headers = {"Content-Type": f"{self.config.content_type}; charset=utf-8"}
        if self.config.secret:
            headers[SIGNATURE_HEADER] = self.signature(body)
        if entry is not None:
            headers[DELIVERY_HEADER] = entry.delivery_id
        try:
            async with self._session.post(URL(self.url_for(stanza), encoded=True), data=body, headers=headers,
                                          allow_redirects=False) as response:
                data = await _read_bounded(response, self.max_answer_bytes)
                if data is None:
                    log.warning("Webhook answer over %d bytes ignored", self.max_answer_bytes)
                    return Answer(500, failure="answer too large")
                return Answer(response.status, response.headers.get("Content-Type", ""), data)
        except asyncio.TimeoutError:
            return Answer(0, failure="timeout")
        except aiohttp.ClientError as e:
            return Answer(0, failure=f"unreachable: {type(e).__name__}: {e}")

    # -- XMPP --

    def _send(self, stanza: Element | None) -> None:
        if stanza is None:
            return
        if stanza.get("type") == "error":
            self.counts["errors_sent"] += 1
        try:
            self.link.send(stanza)
        except HttpError as e:
            log.warning("Webhook: reply to %s not sent: %s", stanza.get("to"), e.reason)


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
