"""HTTP connections: how many, how long a request head may take, and what the answers say of us.

This subclasses aiohttp's RequestHandler and BaseRequest and uses some of their private attributes
(``_messages``, ``_waiter``, ``_manager``, ``_kwargs``; ``_read_bytes``, ``_payload``,
``_client_max_size``): setup.cfg pins aiohttp below the next minor release, and
tests/http/test_http_connections.py fails if a release changes them.

aiohttp's low-level ``web.Server`` gives a connection as long as ``keepalive_timeout`` to send its
first request and no limit on the time a request head may trickle in, nor on how many connections
are open. ``HttpServer`` adds, cheaply (one timer per connection, only while a head is awaited;
no task):
- ``http.header_timeout``: a request head must be complete this many seconds after the connection
  opened, or after its first byte on a kept-alive connection; else the connection is closed;
- ``http.max_connections``: past it a new connection gets a bare 503 and is closed at once;
- ``Server: tigase-rest`` on every answer, aiohttp's own error pages included (aiohttp would name
  the Python and aiohttp versions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

SERVER_NAME = "tigase-rest"
_FULL = (b"HTTP/1.1 503 Service Unavailable\r\nServer: " + SERVER_NAME.encode() + b"\r\n"
         b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")


class RequestInfo:
    """What the access log and the metrics need to know of a request beyond aiohttp's request:
    set by ``RestServer`` as the request goes (handler label, caller JID, API key name)."""

    __slots__ = ("request_id", "handler", "caller", "key")

    def __init__(self, request_id: str):
        self.request_id = request_id
        self.handler = "unknown"  # the route's folder/Class, or index, metrics, ...: a bounded label
        self.caller = "-"
        self.key = "-"


# The request's RequestInfo, in the request's mapping (a typed key where aiohttp has them).
INFO: Any = web.RequestKey("tigase_rest_info", RequestInfo) if hasattr(web, "RequestKey") else "tigase_rest_info"


class Request(web.BaseRequest):
    async def read(self) -> bytes:
        # A small body arrives with its head and is all buffered when the handler runs: take it in
        # one call. aiohttp's read() loops over readany() (two awaits) and cost ~8 us more per
        # request, measured in place (bench.inproc with the stream script's read timed).
        if self._read_bytes is None and self._payload.is_eof():
            body = self._payload.read_nowait()
            if self._client_max_size and len(body) > self._client_max_size:
                raise web.HTTPRequestEntityTooLarge(max_size=self._client_max_size, actual_size=len(body))
            self._read_bytes = body
        return await super().read()

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        # Called for every response before its headers go out, also for aiohttp's own 400/500 pages.
        response.headers["Server"] = SERVER_NAME
        info = self._state.get(INFO)
        if info is not None:
            response.headers["X-Request-Id"] = info.request_id
        await super()._prepare_hook(response)


class HttpServer(web.Server):
    """``web.Server`` whose connections are ``Connection``s, at most ``max_connections`` open."""

    def __init__(self, handler: Any, *, header_timeout: float, max_connections: int, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.open_connections = 0
        self.refused_connections = 0
        self._refusal_logged = 0.0

    def __call__(self) -> RequestHandler:  # type: ignore[override]  # or a _Refused stand-in
        if self.open_connections >= self.max_connections:
            self.refused_connections += 1
            now = time.monotonic()
            if now - self._refusal_logged > 10:  # a flood of connections must not flood the log too
                self._refusal_logged = now
                log.warning("%d connections open (http.max_connections): refusing new ones with 503 "
                            "(%d so far)", self.open_connections, self.refused_connections)
            return _Refused()  # type: ignore[return-value]
        # Counted here, not in connection_made: asyncio accepts a burst of connections (up to the
        # listen backlog) before it makes any of them, and the bound must hold for a burst too.
        self.open_connections += 1
        return Connection(self, loop=self._loop, **self._kwargs)


class _Refused(asyncio.Protocol):
    """Over the connection limit: a bare 503, then closed; nothing is read or allocated."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(_FULL)  # type: ignore[attr-defined]
        transport.close()


class Connection(RequestHandler):
    """aiohttp's request handler with a deadline for the request head and a place in the count."""

    __slots__ = ("_head_timer", "_counted")

    def __init__(self, manager: HttpServer, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._counted = True  # by HttpServer.__call__, until connection_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._arm(self._manager.header_timeout)  # type: ignore[union-attr,attr-defined]  # one that sends nothing goes too
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self._manager.open_connections -= 1  # type: ignore[union-attr,attr-defined]
            self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages:
            self._disarm()  # a whole head arrived: it waits for the handler
        elif self._head_timer is None and data and self._waiter is not None and self._manager is not None:
            # Idle between requests (start() waits for the next message) and bytes arrive: the
            # next head has begun. While a request is handled, bytes are its body (_waiter is None).
            self._arm(self._manager.header_timeout)  # type: ignore[attr-defined]

    def _arm(self, timeout: float) -> None:
        self._head_timer = self._loop.call_later(timeout, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self._messages and self._waiter is not None:  # still no whole head
            log.debug("Closing a connection whose request head did not arrive in time")
            self.force_close()
