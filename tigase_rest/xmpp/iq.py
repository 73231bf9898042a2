"""IQ round trips over one XML stream, shared by the component link and the caller sessions.

The stream hands every top-level element it receives to :meth:`IqTracker.take` before anything
else looks at it: a reply is matched in one dict lookup (slixmpp's own per-IQ handlers are scanned
linearly, after a stanza object is built). The id on the wire is ours, so two HTTP requests
that reuse an id never collide; the caller's id is put back on the reply. A reply is accepted only
from the exact address the request went to.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import itertools
import logging
import secrets
from typing import Callable
from xml.etree.ElementTree import Element

from slixmpp.jid import JID

from .. import errors
from ..coding import NOT_XML_CHAR, check_xml_text, local_name
from .stanzas import renamespace, serialize

log = logging.getLogger(__name__)

# Requests waiting for a reply on one stream. Past it, new ones get 503 at once: memory stays
# bounded however many requests an entity that never answers collects (each waits iq_timeout).
MAX_PENDING = 10_000
# What servers take in one stanza before they close the whole stream (Prosody: 256 KiB on c2s,
# 512 KiB on components; ejabberd's max_stanza_size is often 256 KiB): xmpp.max_stanza_bytes.
DEFAULT_MAX_STANZA_BYTES = 256 * 1024


# Upper bounds (seconds) of the IQ round-trip histogram; a round trip takes ~0.2 ms on loopback.
IQ_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class IqStats:
    """IQ round trips on one path (the component link, or all caller sessions): plain counters,
    read by the /metrics collector, so a round trip costs a clock read and a few additions."""

    __slots__ = ("buckets", "count", "sum", "errors", "timeouts", "failed")

    def __init__(self) -> None:
        self.buckets = [0] * (len(IQ_BUCKETS) + 1)  # per bucket (not cumulative); the last is +Inf
        self.count = 0  # answered (result or error)
        self.sum = 0.0
        self.errors = 0  # answered with type error
        self.timeouts = 0  # no answer within the timeout
        self.failed = 0  # not sent or no answer for another reason (link down, stanza refused)

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(IQ_BUCKETS, seconds)] += 1
        self.count += 1
        self.sum += seconds


class IqTracker:
    def __init__(self, write: Callable[[str], None], namespace: str, own_origin: Callable[[], str],
                 max_stanza_bytes: int = DEFAULT_MAX_STANZA_BYTES, prefix: str = ""):
        """``write(text)`` puts serialized XML on the stream. ``own_origin()`` names who answers an IQ
        sent without ``to`` (or a reply without ``from``): the server domain for the component, the
        user's own account for a client session. A stanza over ``max_stanza_bytes`` is refused
        (413): the server would close the whole stream, failing every request in flight on it."""
        self.write = write
        self.namespace = namespace
        self.own_origin = own_origin
        self.max_stanza_bytes = max_stanza_bytes
        self._pending: dict[str, tuple[asyncio.Future, str]] = {}
        self.stats: IqStats | None = None  # set by the owner of the stream to count round trips
        self._ids = itertools.count(1)
        # ``prefix``: who sent the request, for a reply that reaches another instance (component.py).
        self._prefix = prefix + secrets.token_hex(4)

    def __len__(self) -> int:
        return len(self._pending)

    def send(self, stanza: Element) -> None:
        renamespace(stanza, self.namespace)
        text = serialize(stanza, self.namespace)
        if NOT_XML_CHAR.search(text):  # one scan of the output; the walk below only names the place
            _refuse_xml_chars(stanza)
        # A UTF-8 character takes at most 4 bytes: most stanzas are cleared without encoding them.
        if len(text) * 4 > self.max_stanza_bytes and len(text.encode("utf-8")) > self.max_stanza_bytes:
            raise errors.HttpError(
                413, f"The stanza would be {len(text.encode('utf-8'))} bytes; the XMPP server takes at most "
                     f"{self.max_stanza_bytes} in one (xmpp.max_stanza_bytes): nothing was sent",
                condition="policy-violation")
        self.write(text)

    async def request(self, iq: Element, timeout: float) -> Element:
        if len(self._pending) >= MAX_PENDING:
            raise errors.HttpError(503, f"{MAX_PENDING} requests are already waiting for XMPP replies; retry later",
                                   condition="resource-constraint", headers={"Retry-After": "5"})
        original_id = iq.get("id")
        wire_id = f"{self._prefix}-{next(self._ids)}"
        iq.set("id", wire_id)
        to = iq.get("to") or ""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending[wire_id] = (future, _norm(to) or _norm(self.own_origin()))
        # A timer on the future itself: cheaper than asyncio.wait_for's extra task per request.
        expiry = loop.call_later(timeout, _expire, future, to, timeout)
        stats = self.stats
        started = loop.time()
        try:
            self.send(iq)
            reply = await future
        except BaseException as e:
            if stats is not None:
                if isinstance(e, errors.HttpError) and e.status == 504:
                    stats.timeouts += 1
                elif not isinstance(e, asyncio.CancelledError):
                    stats.failed += 1
            raise
        finally:
            expiry.cancel()
            self._pending.pop(wire_id, None)
            _set_id(iq, original_id)
        if stats is not None:
            stats.observe(loop.time() - started)
            if reply.get("type") == "error":
                stats.errors += 1
        _set_id(reply, original_id)
        return reply

    def fail_all(self, error: errors.HttpError) -> None:
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(error)

    def take(self, xml: Element) -> bool:
        """Settle the request ``xml`` answers; True when it was a reply to one of ours (consumed)."""
        if not xml.tag.endswith("}iq") or xml.get("type") not in ("result", "error"):
            return False
        entry = self._pending.get(xml.get("id", ""))
        if entry is None:
            return False
        future, expected = entry
        sender = xml.get("from") or ""
        # Exactly the address the request went to: the server answers for a bare JID or a domain
        # itself (RFC 6120 10.5.3.2), so a reply from one of the account's resources is not the answer.
        # The string as written is almost always the normalised one: a JID is parsed only otherwise.
        if sender != expected:
            sender = _norm(sender) or _norm(self.own_origin())
            if sender != expected:
                log.warning("Ignoring IQ reply %s from %s: the request went to %s", xml.get("id"), sender, expected)
                return True
        if not future.done():
            future.set_result(xml)
        return True


def _expire(future: asyncio.Future, to: str, timeout: float) -> None:
    if not future.done():  # the error is built only here: most requests never need it
        future.set_exception(errors.timeout(to or "the server", timeout))


@functools.lru_cache(maxsize=1024)  # a handful of addresses recur in every request
def _norm(jid: str) -> str:
    try:
        return str(JID(jid)) if jid else ""
    except Exception:  # noqa: BLE001 - an unparsable JID just never matches
        return jid


def _set_id(stanza: Element, value: str | None) -> None:
    if value is None:
        stanza.attrib.pop("id", None)
    else:
        stanza.set("id", value)


def _refuse_xml_chars(stanza: Element) -> None:
    """A character XML cannot carry would make the server close the whole stream: the stanza is
    refused instead (handlers validate their input; this keeps the link safe from any that miss one)."""
    for node in stanza.iter():
        for text in (node.tag, node.text, node.tail, *node.attrib.keys(), *node.attrib.values()):
            if text:
                check_xml_text(text, f"<{local_name(node.tag)}>")
    raise errors.HttpError(400, "The stanza contains a character XML cannot carry")
