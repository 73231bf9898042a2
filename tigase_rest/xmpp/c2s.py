"""A minimal c2s client stream (RFC 6120): log in as a user, then carry that user's IQs.

One per caller session, so it is built for memory: an asyncio Protocol with __slots__, no timers,
tasks or queues once logged in (a slixmpp ClientXMPP cost ~60 KB per session). The XML parser is
the biggest part: a C XMLPullParser holds 16 KB after a login, and it grows with what it has
parsed (expat's input buffer, the names it has seen, and the TreeBuilder keeps the elements of the
last stanza). So an idle session lets go of it: ``keepalive()``, which the pool calls for every
session it keeps, drops the parser when the stream is between stanzas, and the next data gets a
new one, primed with the stream header's namespace declarations (~40 µs, once per idle period).

TLS is an ``ssl.SSLObject`` over memory BIOs in this protocol, not ``loop.start_tls``: asyncio's
SSL transport allocates a 256 KiB read buffer per connection, four times the whole budget of a
session.

Only what a caller session needs: STARTTLS or direct TLS, then the login of ``login.py`` (SASL
SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN, resource binding, the legacy session IQ), driven here. No presence is sent and no roster requested.
IQ requests to the server are answered with service-unavailable (servers ping clients);
messages and presences are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import ssl
from collections.abc import Iterator
from typing import Any
from xml.etree.ElementTree import Element, ParseError, SubElement, XMLPullParser
from xml.sax.saxutils import quoteattr

from slixmpp.jid import JID

from .. import errors
from ..coding import local_name
from .iq import DEFAULT_MAX_STANZA_BYTES, IqTracker
from .login import (BOUND, DERIVE, RESTART, STARTTLS, STREAMS_NS, WAIT, BadSignature, Login, LoginError,
                    NoMechanism, NoStartTls, Step)
from .stanzas import CLIENT_NS, STANZAS_NS, error_of, serialize

log = logging.getLogger(__name__)

SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"

STREAM = f"{{{STREAMS_NS}}}stream"
STREAM_ERROR = f"{{{STREAMS_NS}}}error"
IQ = f"{{{CLIENT_NS}}}iq"

# What one incoming stanza may make us buffer: past it the server is misbehaving and the session
# is closed, so it cannot grow our memory without limit.
MAX_STANZA_BYTES = 16 * 1024 * 1024
_READ_CHUNK = 16 * 1024 + 1  # more than a TLS record's plaintext
# What goes into a memory BIO at a time: a BIO keeps the largest size it ever grew to, and a
# 256 KiB read from the socket (or a big request) would stay allocated for the session's life.
_TLS_SLICE = 4096


class SessionClosed(errors.HttpError):
    """The caller's session is gone; ``sent`` tells whether the IQ had left before it went."""

    def __init__(self, jid: JID, sent: bool):
        super().__init__(503, f"The XMPP session of {jid} was closed by the server",
                         condition="service-unavailable", headers={"Retry-After": "1"})
        self.sent = sent


def tls_failure(error: ssl.SSLError) -> errors.HttpError:
    return errors.HttpError(502, f"TLS with the XMPP server's c2s port failed ({error}); "
                                 f"check xmpp.c2s_tls and xmpp.c2s_ca_file")


def _bad_server(reason: str) -> errors.HttpError:
    return errors.HttpError(502, f"The XMPP server's c2s login went wrong: {reason}")


class ClientStream(asyncio.Protocol):
    """One c2s connection logged in as ``jid`` (a bare JID). ``iqs`` carries its IQ round trips."""

    __slots__ = ("jid", "bound", "iqs", "_alive", "_transport", "_parser", "_header", "_root", "_depth", "_since",
                 "_idle", "_tls", "_tls_in", "_tls_out", "_handshaking", "_inbox", "_waiter")

    def __init__(self, jid: JID, max_stanza_bytes: int = DEFAULT_MAX_STANZA_BYTES):
        self.jid = jid
        self.bound = ""  # the full JID the server bound
        self.iqs = IqTracker(self._write, CLIENT_NS, self._own_jid, max_stanza_bytes)
        self._alive = False
        self._transport: asyncio.Transport | None = None
        self._parser: XMLPullParser | None = None
        self._header = b""  # the stream's opening tag with the server's namespace declarations, for a new parser
        self._root: Element | None = None  # <stream:stream> in the current parser
        self._depth = 0
        self._since = 0  # bytes received since the last complete top-level element
        self._idle = False  # the parser holds no part of a stanza: it may be dropped
        self._tls: ssl.SSLObject | None = None
        self._tls_in: ssl.MemoryBIO | None = None
        self._tls_out: ssl.MemoryBIO | None = None
        self._handshaking = False
        # During login only: what arrived for the login steps, and the step waiting for it.
        self._inbox: list | None = None
        self._waiter: asyncio.Future | None = None

    @property
    def alive(self) -> bool:
        return self._alive

    def _own_jid(self) -> str:
        return self.jid.bare

    # --- login --------------------------------------------------------------------------------

    async def connect_and_login(self, password: str, host: str, port: int, tls: str,
                                ssl_context: ssl.SSLContext, timeout: float) -> None:
        """Connect, secure the stream as ``tls`` ("starttls", "direct" or "none") says, log in and
        bind. Raises AuthFailed when the credentials are refused, HttpError otherwise."""
        try:
            async with asyncio.timeout(timeout):
                await self._login(password, host, port, tls, ssl_context)
        except TimeoutError:
            self.close()
            raise errors.timeout("the XMPP server (login)", timeout) from None
        except BaseException:
            self.close()
            raise
        finally:
            self._inbox = self._waiter = None
        self._alive = True

    async def _login(self, password: str, host: str, port: int, tls: str, ssl_context: ssl.SSLContext) -> None:
        # SASLprep happens here, before any connection: a password it refuses is an AuthFailed.
        login = Login(self.jid.user, password, resource="tigase-rest-" + secrets.token_hex(4),
                      starttls=tls == "starttls", secure=tls == "direct", plain_in_clear=tls == "none")
        del password
        domain = self.jid.domain
        self._inbox = []
        try:
            await asyncio.get_running_loop().create_connection(lambda: self, host, port)
        except OSError as e:
            raise errors.HttpError(503, "Cannot reach the XMPP server's c2s port", detail=f"{host}:{port}: {e}",
                                   condition="service-unavailable", headers={"Retry-After": "5"}) from None
        if tls == "direct":
            await self._start_tls(ssl_context, domain)
        self._open_stream(domain)
        try:
            step = Step(WAIT)
            while step.state != BOUND:
                if step.send:
                    self._write(step.send, secret=step.secret)
                if step.state == DERIVE:
                    step = login.derive() if login.derive_inline else await asyncio.to_thread(login.derive)
                    continue
                if step.state == STARTTLS:
                    await self._start_tls(ssl_context, domain)
                if step.state in (STARTTLS, RESTART):
                    self._open_stream(domain)
                step = login.receive(await self._next())
        except NoStartTls as e:
            if e.refused:
                raise errors.HttpError(502, "The XMPP server refused STARTTLS") from None
            raise errors.HttpError(502, "The XMPP server does not offer STARTTLS on its c2s port, and "
                                        "xmpp.c2s_tls = \"starttls\" requires it") from None
        except NoMechanism:
            raise errors.HttpError(502, "The XMPP server offers no login method we may use (is TLS required?)") from None
        except BadSignature:
            raise errors.HttpError(502, "The XMPP server's SCRAM signature did not verify: it may not be the "
                                        "server holding this account (server signature did not verify)") from None
        except LoginError as e:
            raise _bad_server(e.reason) from None
        self.bound = login.jid
        for item in self._inbox:  # the stream may have ended right after the bind answer
            if isinstance(item, BaseException):
                raise item
        self._drop_parser()

    def _open_stream(self, domain: str) -> None:
        """A new stream (the first, or the restart after TLS and SASL): its features come next."""
        # "start-ns" for the header's declarations; parsers made after it need no such events.
        self._parser = XMLPullParser(("start", "end", "start-ns"))
        self._header, self._root, self._depth, self._since, self._idle = b"", None, 0, 0, False
        self._write(f"<?xml version='1.0'?><stream:stream xmlns='{CLIENT_NS}' xmlns:stream='{STREAMS_NS}' "
                    f"to={quoteattr(domain)} version='1.0'>")

    async def _next(self):
        """The next top-level element (or the end of a TLS handshake) during login."""
        inbox = self._inbox
        while not inbox:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = inbox.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def _deliver(self, item) -> None:
        if self._inbox is None:
            return
        self._inbox.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _start_tls(self, context: ssl.SSLContext, domain: str) -> None:
        self._tls_in, self._tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._tls_in, self._tls_out, server_hostname=domain)
        self._handshaking = True
        self._handshake()
        await self._next()

    def _handshake(self) -> None:
        assert self._tls is not None  # only while a handshake is in progress
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_tls()
            return
        except ssl.SSLError as e:
            self._flush_tls()  # the alert tells the server why
            self._down(e)
            return
        self._handshaking = False
        self._flush_tls()
        self._deliver(True)

    # --- the connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._tls is None:
            self._feed(data)
            return
        chunks = []
        view = memoryview(data)
        for start in range(0, len(view), _TLS_SLICE):
            tls = self._tls
            if tls is None or self._tls_in is None:
                return  # the session ended on the way
            self._tls_in.write(view[start:start + _TLS_SLICE])
            if self._handshaking:
                self._handshake()
                if self._handshaking:
                    continue
            try:
                while chunk := tls.read(_READ_CHUNK):
                    chunks.append(chunk)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                self._down("the XMPP server ended TLS")
                return
            except ssl.SSLError as e:
                self._down(e)
                return
        self._flush_tls()  # TLS 1.3 may answer post-handshake messages
        if chunks:
            self._feed(b"".join(chunks))

    def eof_received(self) -> bool:
        return False  # closes the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._down(exc or "the XMPP server closed the connection")

    def _feed(self, data: bytes) -> None:
        parser = self._parser
        try:
            if parser is None:
                if not self._header or data.isspace():
                    return  # no stream is open, or a whitespace ping between stanzas
                parser = self._parser = XMLPullParser(("start", "end"))
                parser.feed(self._header)
            self._since += len(data)
            parser.feed(data)
        except ParseError as e:
            self._down(f"the XMPP server sent XML that is not well-formed ({e})", logging.WARNING)
            return
        declared: list[tuple[str, str]] = []
        events: Iterator[tuple[str, Any]] = parser.read_events()  # type: ignore[assignment]
        for event, item in events:
            if event == "start-ns":
                if self._depth == 0:  # the stream header's declarations: (prefix, uri)
                    declared.append(item)
                continue
            element: Element = item  # an Element for "start" and "end"
            if event == "start":
                if self._depth == 0:
                    if element.tag != STREAM:
                        self._down(f"the XMPP server sent <{local_name(element.tag)}> instead of a stream header",
                                   logging.WARNING)
                        return
                    self._root = element
                    if not self._header:
                        self._header = _opening_tag(declared)
                self._depth += 1
            elif event == "end":
                self._depth -= 1
                if self._depth == 1:
                    assert self._root is not None  # set by the stream header at depth 0
                    self._root.remove(element)
                    self._since = 0
                    self._top(element)
                    if self._parser is not parser:
                        return  # the stream ended or restarted: the rest belongs to no stream we read
                elif self._depth == 0:
                    self._down("the XMPP server closed the stream")
                    return
        if self._depth != 1:
            self._idle = False
        elif not data.isspace():  # whitespace leaves the last tag as whole as it was
            self._idle = _ends_with_a_whole_tag(data)
        if self._since > MAX_STANZA_BYTES:
            self._down(f"the XMPP server sent a stanza of over {MAX_STANZA_BYTES} bytes", logging.ERROR)

    def _top(self, element: Element) -> None:
        if log.isEnabledFor(logging.DEBUG) and not element.tag.startswith(f"{{{SASL_NS}}}"):
            log.debug("C2S %s RECV: %s", self.jid, serialize(element, CLIENT_NS))
        if element.tag == STREAM_ERROR:
            condition = next((local_name(child.tag) for child in element
                              if local_name(child.tag) != "text"), "undefined-condition")
            self._down(f"the XMPP server sent the stream error {condition}")
        elif self.iqs.take(element):
            return
        elif element.tag == IQ and element.get("type") in ("get", "set"):
            self._refuse(element)
        else:
            self._deliver(element)  # during login; dropped afterwards

    def _refuse(self, request: Element) -> None:
        answer = Element(IQ, {"type": "error", "id": request.get("id", "")})
        sender = request.get("from")
        if sender:
            answer.set("to", sender)
        error = SubElement(answer, f"{{{CLIENT_NS}}}error", {"type": "cancel"})
        SubElement(error, f"{{{STANZAS_NS}}}service-unavailable")
        self._write(serialize(answer, CLIENT_NS))

    def _write(self, text: str, secret: bool = False) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("C2S %s SEND: %s", self.jid, "(SASL)" if secret else text)
        data = text.encode("utf-8")
        if self._tls is None:
            transport.write(data)
            return
        for start in range(0, len(data), _TLS_SLICE):
            try:
                self._tls.write(data[start:start + _TLS_SLICE])
            except ssl.SSLError as e:
                self._down(e)
                return
            self._flush_tls()

    def _flush_tls(self) -> None:
        out = self._tls_out.read() if self._tls_out is not None else b""
        if out and self._transport is not None:
            self._transport.write(out)

    def _down(self, reason, level: int = logging.INFO) -> None:
        """The session ends, for ``reason`` (text or exception): pending IQs fail, a login in
        progress gets its answer, the connection closes and its buffers are let go."""
        if self._alive:
            self._alive = False
            log.log(level, "Session of %s closed: %s", self.jid, reason)
        self.iqs.fail_all(SessionClosed(self.jid, sent=True))
        if self._inbox is not None:
            if isinstance(reason, ssl.SSLError):  # e.g. the certificate did not verify
                self._deliver(tls_failure(reason))
            else:
                # An OSError names addresses: the client is told what happened, the log says where.
                said = "the connection to the XMPP server failed" if isinstance(reason, OSError) else reason
                self._deliver(errors.HttpError(503, f"Cannot log in {self.jid}: {said}", detail=str(reason),
                                               condition="service-unavailable", headers={"Retry-After": "5"}))
        self._close_transport()

    # --- after login --------------------------------------------------------------------------

    def keepalive(self) -> None:
        """One space on the stream, so idle NATs and servers keep the connection; and the parser
        goes when it holds no part of a stanza (see the module's docstring)."""
        if self._alive:
            self._write(" ")
            self._drop_parser()

    def _drop_parser(self) -> None:
        if self._idle and self._parser is not None:
            self._parser = self._root = None
            self._depth = 0
            self._idle = False

    def close(self) -> None:
        """End the stream and the connection; never waits."""
        self._alive = False
        self._close_transport()

    def _close_transport(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if (self._parser is not None or self._header) and not self._handshaking:
                self._write("</stream:stream>")
            transport.close()
        self._parser = self._root = None
        self._header = b""
        self._idle = False
        self._tls = self._tls_in = self._tls_out = None
        self._handshaking = False


def _opening_tag(declared: list[tuple[str, str]]) -> bytes:
    """A stream header with the server's namespace declarations: what a new parser is fed first, so
    the stanzas it then reads mean what they meant on the stream."""
    prefix = next((p for p, uri in declared if uri == STREAMS_NS), "")
    tag = f"{prefix}:stream" if prefix else "stream"
    names = "".join(f" xmlns{':' + p if p else ''}={quoteattr(uri)}" for p, uri in declared)
    return f"<{tag}{names}>".encode("utf-8")


# A tag, quoted attribute values and all (">" may stand unescaped inside them), then only whitespace.
_WHOLE_LAST_TAG = re.compile(rb"""<(?:[^<>'"]|'[^']*'|"[^"]*")*>\s*\Z""")


def _ends_with_a_whole_tag(data: bytes) -> bool:
    """Whether the parser, at depth 1 after ``data``, holds nothing of the next stanza. "<" cannot
    occur in text or attribute values, so the last one starts the last tag; when it is cut (or not
    in ``data`` at all) the answer is no, and the parser stays until a later chunk ends cleanly."""
    last = data.rfind(b"<")
    return last >= 0 and _WHOLE_LAST_TAG.match(data, last) is not None

