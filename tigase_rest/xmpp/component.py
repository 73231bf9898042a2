"""The XEP-0114 link to the XMPP server: one slixmpp ComponentXMPP, supervised.

- Reconnects by itself with jittered exponential backoff; a deliberate stop never reconnects.
- While the link is down, ``send``/``request`` fail at once with 503 + Retry-After instead of
  waiting in slixmpp's send queue.
- IQ round trips go through :class:`IqTracker` (one dict lookup per reply, our own wire ids).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable, Protocol
from xml.etree.ElementTree import Element

from slixmpp import ComponentXMPP

from .. import errors
from ..config import XmppConfig
from .iq import IqStats, IqTracker
from .stanzas import COMPONENT_NS

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # seconds from TCP connect to an accepted handshake


class Link(Protocol):
    """What the features use of the component link (tests stand a fake in for it)."""

    @property
    def connected(self) -> bool: ...

    def send(self, stanza: Element) -> None: ...

    async def request(self, iq: Element, timeout: float | None = None) -> Element: ...


class _Component(ComponentXMPP):
    """ComponentXMPP that gives every received element to the IQ tracker first: a reply to one of
    our requests is settled without slixmpp building a stanza object and running its handlers."""

    replies: IqTracker | None = None
    forward: Callable[[Element], bool] | None = None

    def _spawn_event(self, xml: Element) -> None:
        if self.replies is None or not self.replies.take(xml):
            if self.forward is None or not self.forward(xml):
                super()._spawn_event(xml)


class ComponentLink:
    def __init__(self, config: XmppConfig, plugins: tuple[str, ...] = ()):
        self.config = config
        self.plugins = plugins
        self.xmpp: ComponentXMPP | None = None
        self._iqs: IqTracker | None = None
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task | None = None
        self._setup_callbacks: list[Callable[[ComponentXMPP], None]] = []
        self.connects = 0  # successful handshakes, for tests and logs
        self._failing = False  # the current run of failed attempts has been reported
        self.iq_stats = IqStats()  # IQ round trips over the link, for /metrics

    # --- lifecycle --------------------------------------------------------------------------

    def on_setup(self, callback: Callable[[ComponentXMPP], None]) -> None:
        """Run ``callback(xmpp)`` once the ComponentXMPP exists (to register plugins/handlers)."""
        self._setup_callbacks.append(callback)

    def start(self) -> None:
        c = self.config
        self.xmpp = xmpp = _Component(c.component_jid, c.secret, c.host, c.port)
        for plugin in self.plugins:
            xmpp.register_plugin(plugin)
        xmpp.add_event_handler("session_start", self._on_up)
        xmpp.add_event_handler("disconnected", self._on_down)
        xmpp.add_event_handler("connection_failed", self._on_connection_failed)
        xmpp.add_event_handler("stream_error", self._on_stream_error)
        self._iqs = xmpp.replies = iqs = IqTracker(xmpp.send_raw, COMPONENT_NS, lambda: self.config.domain,
                                                   c.max_stanza_bytes, prefix=f"{c.component_jid}~")
        if set(c.deployment) - {c.component_jid}:
            xmpp.forward = self._forward_to_sibling
        iqs.stats = self.iq_stats
        if not hasattr(ComponentXMPP, "_spawn_event"):
            # A slixmpp that no longer calls _spawn_event: replies are matched in a filter instead
            # (else every other stanza would be offered to the tracker twice).
            xmpp.add_filter("in", lambda stanza: None if iqs.take(stanza.xml) else stanza)
        for callback in self._setup_callbacks:
            callback(xmpp)
        self._supervisor = asyncio.create_task(self._supervise(), name="xmpp-component-link")

    async def stop(self, timeout: float = 3.0) -> None:
        self._closing = True
        self._fail_pending(errors.HttpError(503, "The component is shutting down", condition="service-unavailable"))
        if self.xmpp is not None and self.connected:
            try:
                await asyncio.wait_for(self.xmpp.disconnect(wait=timeout / 2), timeout)
            except Exception:  # noqa: BLE001 - a timeout or a broken stream: we are leaving anyway
                self.xmpp.abort()
        if self.xmpp is not None:
            self.xmpp.cancel_connection_attempt()
        self._lost.set()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def _supervise(self) -> None:
        assert self.xmpp is not None  # started by start(), which creates it
        c = self.config
        attempt = 0
        while not self._closing:
            self._lost.clear()
            log.info("Connecting component %s to %s:%s", c.component_jid, c.host, c.port)
            self.xmpp.connect(c.host, c.port)
            try:
                await asyncio.wait_for(self._up.wait(), HANDSHAKE_TIMEOUT)
            except asyncio.TimeoutError:
                if not self._lost.is_set():
                    self._report_failure(
                        f"no accepted handshake within {HANDSHAKE_TIMEOUT:g} s. Is {c.host}:{c.port} the server's "
                        f"component port (XEP-0114; Prosody: component_ports, default 5347; ejabberd: an "
                        f"ejabberd_service listener), not its c2s (5222) or HTTP port? Check xmpp.port")
                    self.xmpp.cancel_connection_attempt()
                    self.xmpp.abort()
                    self._lost.set()
            if self._up.is_set():
                attempt = 0
            await self._lost.wait()
            self.xmpp.cancel_connection_attempt()
            if self._closing:
                break
            attempt += 1
            # Full jitter keeps many components from hammering a restarted server in lockstep.
            delay = min(c.reconnect_max_delay, 0.5 * 2 ** min(attempt, 16)) * random.uniform(0.5, 1.0)
            log.warning("XMPP link down; reconnecting in %.1fs (attempt %d)", delay, attempt)
            await asyncio.sleep(delay)

    def _on_connection_failed(self, reason) -> None:
        c = self.config
        if isinstance(reason, ConnectionRefusedError):
            detail = (f"connection refused: nothing listens there. Is the XMPP server running, and is {c.port} "
                      f"its component port (Prosody: component_ports, default 5347; ejabberd: an ejabberd_service "
                      f"listener)? Check xmpp.host and xmpp.port")
        elif isinstance(reason, str) and "DNS" in reason:
            detail = f"the name {c.host!r} does not resolve (DNS). Check xmpp.host"
        elif isinstance(reason, OSError):
            detail = f"{reason.strerror or reason}. Check xmpp.host and xmpp.port, and any firewall between"
        else:
            detail = f"{reason}. Check xmpp.host and xmpp.port"
        self._report_failure(detail)
        self._on_down(reason)

    def _report_failure(self, detail: str) -> None:
        """The first failed attempt of a run is a warning naming host, port and the likely fix;
        the repeats are debug lines (the reconnect warnings say that it goes on)."""
        c = self.config
        message = "Cannot connect component %s to the XMPP server at %s:%s: %s"
        log.log(logging.DEBUG if self._failing else logging.WARNING, message, c.component_jid, c.host, c.port, detail)
        self._failing = True

    def _on_up(self, _event) -> None:
        self._failing = False
        self.connects += 1
        log.info("Component %s connected (handshake accepted)", self.config.component_jid)
        self._up.set()

    def _on_down(self, reason) -> None:
        was_up = self._up.is_set()
        self._up.clear()
        self._lost.set()
        if was_up and not self._closing:
            log.warning("XMPP link lost: %s", reason or "connection closed")
        self._fail_pending(errors.link_down())

    def _on_stream_error(self, error) -> None:
        c = self.config
        if not self.connected and error["condition"] in ("host-unknown", "invalid-namespace", "bad-namespace-prefix",
                                                         "improper-addressing", "not-well-formed"):
            # Before the handshake: Prosody's and ejabberd's c2s ports answer a component stream so.
            self._report_failure(
                f"the server said {error['condition']} ({error['text'] or 'no text'}). Either xmpp.port {c.port} is "
                f"not its component port (a c2s port answers so; Prosody: component_ports, default 5347), or it has "
                f"no component block for {c.component_jid}: check xmpp.port and xmpp.component_jid")
            self._on_down(error["condition"])  # no need to wait for the handshake timeout
            if self.xmpp is not None:
                self.xmpp.abort()
            return
        hint = ""
        if error["condition"] in ("not-authorized", "host-unknown"):
            hint = " (check xmpp.secret, xmpp.component_jid and the server's component block)"
        elif error["condition"] in ("invalid-namespace", "bad-namespace-prefix", "unsupported-stanza-type",
                                    "not-well-formed", "improper-addressing"):
            hint = (f" (is {self.config.host}:{self.config.port} the server's component port? A c2s port "
                    "refuses component streams: check xmpp.port)")
        log.error("Stream error from the server: %s %s%s", error["condition"], error["text"], hint)

    def _fail_pending(self, error: errors.HttpError) -> None:
        if self._iqs is not None:
            self._iqs.fail_all(error)

    # --- traffic ----------------------------------------------------------------------------

    def _forward_to_sibling(self, xml: Element) -> bool:
        """An IQ reply to a request another instance of the deployment sent (its wire id starts with
        that instance's JID): it reached us because the request's ``from`` was on our domain (e.g. a
        /rest/stream iq from ``bot@<this instance>`` posted through a sibling). Sent on to the sibling,
        ``from`` unchanged, so its tracker settles it; True when forwarded."""
        if not xml.tag.endswith("}iq") or xml.get("type") not in ("result", "error"):
            return False
        owner = (xml.get("id") or "").partition("~")[0]
        if owner == self.config.component_jid or owner not in self.config.deployment:
            return False
        xml.set("to", owner)
        try:
            self.send(xml)
        except errors.HttpError as e:
            log.warning("IQ reply for %s not forwarded: %s", owner, e.reason)
        return True

    @property
    def pending_count(self) -> int:
        return len(self._iqs) if self._iqs else 0

    def send(self, stanza: Element) -> None:
        """Fire and forget. Raises 503 when the link is down."""
        if not self.connected:
            raise errors.link_down()
        if not stanza.get("from"):
            # Prosody fills it in; ejabberd closes the whole stream (improper-addressing).
            stanza.set("from", self.config.component_jid)
        assert self._iqs is not None  # connected implies started
        self._iqs.send(stanza)

    async def request(self, iq: Element, timeout: float | None = None) -> Element:
        """Send an IQ get/set and return the reply element (type result or error).
        ``from`` defaults to the component's JID."""
        if not self.connected:
            raise errors.link_down()
        if not iq.get("from"):
            iq.set("from", self.config.component_jid)
        assert self._iqs is not None  # connected implies started
        return await self._iqs.request(iq, timeout or self.config.iq_timeout)
