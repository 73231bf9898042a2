"""The HTTP side: every request under the context path is dispatched to a handler script.

Order per request (Tigase's): route -> API key -> login and role -> body -> handler -> result.
Every error is answered in the format the client negotiated, with the reason in the body.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import HttpVersion11, web
from aiohttp.abc import AbstractAccessLogger

from slixmpp.jid import JID

from .. import coding
from ..coding import negotiated_format
from ..config import Config
from ..errors import HttpError, challenge, public
from ..handlers import Result, build_args
from ..loader import RouteTable
from ..service import Parts, Service
from ..xmpp.sessions import Caller
from .auth import ApiKeyChecker, basic_credentials, caller_jid, request_api_key
from .connections import HttpServer, Request
from .index import render_index
from .proxies import CLIENT_KEY, client_address

log = logging.getLogger(__name__)

# A handler that returns without answering gets this long beyond the IQ timeout to call back.
CALLBACK_GRACE = 5.0


@dataclass(frozen=True)
class Current:
    """What a SIGHUP replaces as a whole: a request keeps the one it started with."""

    config: Config
    routes: RouteTable
    api_keys: ApiKeyChecker


# Verifies Basic-auth credentials (bare JID, password, client address): the caller, or HttpError 401/429/5xx.
Authenticate = Callable[[JID, str, str], Awaitable[Caller]]


class RestServer:
    """The request handler of aiohttp's low-level ``web.Server``.

    Not a ``web.Application``: its router, per-request ``web.Request`` and signal machinery cost
    ~7 us per request (15% of a trivial request) and we route by folder ourselves (loader.RouteTable).
    What the Application did that we need is done here: the three URL spaces (index, API,
    outside), ``Expect: 100-continue``, and the body size limit (``make_request``)."""

    def __init__(self, current: Callable[[], Current], authenticate: Authenticate, parts: Parts):
        self.current = current
        self.authenticate = authenticate
        self.parts = parts

    def server_kwargs(self) -> dict[str, Any]:
        """Arguments for ``web.Server`` (or aiohttp's ``RawTestServer``)."""
        return {"request_factory": self.make_request, "access_log_class": AccessLogger,
                "keepalive_timeout": self.current().config.http.keepalive_timeout}

    def web_server(self) -> HttpServer:
        """The aiohttp server to run: connections bounded in number and in the time a head may take."""
        http = self.current().config.http  # [http] changes need a restart
        return HttpServer(self.handle, header_timeout=http.header_timeout, max_connections=http.max_connections,
                          **self.server_kwargs())

    def make_request(self, message, payload, protocol, writer, task) -> web.BaseRequest:
        return Request(message, payload, protocol, writer, task, asyncio.get_running_loop(),
                       client_max_size=self.current().config.http.max_body_bytes)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        current = self.current()
        ctx = current.config.http.prefix
        path = request.path
        expect = request.headers.get("Expect")
        if expect is not None:
            refused = await _expect(request, expect)
            if refused is not None:
                return refused
        if len(path) > len(ctx) + 1 and path.startswith(ctx + "/"):
            return await self.dispatch(current, request)
        if request.method in ("GET", "HEAD") and path in (ctx or "/", ctx + "/"):
            return index(current, request, self.parts.health())
        return outside_context(current.config, request)

    async def dispatch(self, current: Current, request: web.BaseRequest) -> web.StreamResponse:
        fmt = negotiated_format(request)
        try:
            return await self._dispatch(current, request, fmt)
        except HttpError as e:
            if e.status >= 500:
                # The log has the whole reason; the client gets it without internal addresses.
                log.warning("%s %s -> %d %s%s", request.method, request.path, e.status, e.reason,
                            f" ({e.detail})" if e.detail else "")
            return error_response(public(e), fmt)
        except web.HTTPRequestEntityTooLarge:
            # A chunked body (no Content-Length) over the limit, found while reading it.
            limit = current.config.http.max_body_bytes
            return error_response(HttpError(413, f"Request body is larger than {limit} bytes"), fmt)
        except asyncio.CancelledError:
            raise  # the client went away; nothing to answer
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError is one too
            # The client left while we read its body: one line, not a handler failure with a traceback.
            log.info("%s %s: the client closed the connection before sending its whole body",
                     request.method, request.path)
            return web.Response(status=499)  # nginx's "client closed request", only ever seen in the access log
        except Exception as e:  # noqa: BLE001 - a handler bug must not take the server down
            log.exception("Handler failed for %s %s", request.method, request.path)
            return error_response(HttpError(500, f"Internal error in the handler: {type(e).__name__}"), fmt)


    async def _dispatch(self, current: Current, request: web.BaseRequest, fmt: str) -> web.StreamResponse:
        config = current.config
        request[CLIENT_KEY] = client = client_address(request, config.http.trusted_proxies)
        path = request.path[len(config.http.prefix):]
        resolved = current.routes.resolve(path, request.method)
        if resolved is None:
            raise HttpError(404, f"No handler for {request.path}")
        route, groups = resolved
        handler = route.handler
        func = handler.exec_for(request.method)
        if func is None:
            # Tigase answers 404 (not 405) for a method the handler does not implement.
            raise HttpError(404, f"{request.method} is not supported on {request.path} "
                                 f"(supported: {', '.join(current.routes.methods_at(path))})")

        key_ok = False
        if handler.api_key:
            # Tigase 2.x (authRequired): where a key replaces the login, a login replaces a missing key too.
            key_optional = handler.api_key_replaces_login and request_api_key(request) is None \
                and basic_credentials(request) is not None
            if not key_optional:
                key_ok = current.api_keys.check(request)

        caller = password = None
        if handler.required_role and not (handler.api_key_replaces_login and key_ok):
            credentials = basic_credentials(request)
            if credentials is None:
                raise HttpError(401, "Authentication required: HTTP Basic auth with your bare JID and XMPP password",
                                headers=challenge())
            user, password = credentials
            caller = await self.authenticate(caller_jid(user), password, client)
            if handler.required_role == "admin" and not caller.is_admin:
                raise HttpError(403, f"{caller.jid} is not an admin: this resource needs the admin role")

        content_length = request.content_length
        if content_length is not None and content_length > config.http.max_body_bytes:
            raise HttpError(413, f"Request body of {content_length} bytes is larger than {config.http.max_body_bytes}")
        has_body = request.body_exists
        content: Any = None
        if has_body and handler.decode_content:
            body = await coding.read_body(request, config.http.body_timeout, self.parts.stopping)
            has_body = bool(body)
            if has_body:
                body_fmt = coding.body_format(request.headers.get("Content-Type"), body)
                if body_fmt is None:
                    raise HttpError(415, f"Cannot decode a {request.headers.get('Content-Type')!r} body: send JSON or XML")
                content = coding.decode_body(body, body_fmt)
        elif has_body:
            content = request

        service = Service(self.parts, config, caller, password)
        loop = asyncio.get_running_loop()
        answered = loop.create_future()

        def callback(result: Any = None) -> None:
            if not answered.done():
                answered.set_result(result)

        args = build_args(route.signatures[request.method], service=service, callback=callback,
                          with_user=handler.required_role is not None, user=caller.jid if caller else None,
                          request=request, has_body=has_body, content=content, groups=groups)
        returned = func(*args)
        if inspect.isawaitable(returned):
            returned = await returned
        if answered.done():
            result = answered.result()
        elif returned is not None:
            result = returned
        elif handler.is_async:
            try:
                result = await asyncio.wait_for(answered, config.xmpp.iq_timeout + CALLBACK_GRACE)
            except asyncio.TimeoutError:
                raise HttpError(504, "The handler did not answer in time") from None
        else:
            raise HttpError(500, f"{type(handler).__name__} returned without calling back")
        return await render_result(result, request, fmt)


async def _expect(request: web.BaseRequest, expect: str) -> web.Response | None:
    """What aiohttp's Application does for ``Expect``: 100 Continue, or 417 for anything else."""
    if request.version != HttpVersion11:
        return None
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim response is not part of the response size
        return None
    return error_response(HttpError(417, f"Unknown Expect: {expect}"), negotiated_format(request))


def error_response(error: HttpError, fmt: str) -> web.Response:
    return web.Response(
        status=error.status,
        text=coding.encode(error.as_data(), fmt),
        headers={**error.headers, "Content-Type": coding.CONTENT_TYPES[fmt]},
    )


def index(current: Current, request: web.BaseRequest, health: dict | None = None) -> web.Response:
    html = render_index(current.routes, current.config, request, health)
    return web.Response(text=html, content_type="text/html", charset="utf-8")


def outside_context(config: Config, request: web.BaseRequest) -> web.Response:
    index_path = config.http.prefix + "/"
    if request.path.rstrip("/") + "/" == index_path:  # the index with another method than GET or HEAD
        error = HttpError(404, f"{request.method} is not supported on {request.path} (supported: GET, HEAD)")
    else:
        error = HttpError(404, f"Not found: the REST API is under {index_path}")
    return error_response(error, negotiated_format(request))


async def render_result(result: Any, request: web.BaseRequest, fmt: str) -> web.StreamResponse:
    if result is None:
        raise HttpError(404, f"Nothing found at {request.path}")
    if isinstance(result, web.StreamResponse):
        return result
    if isinstance(result, Result):
        return web.Response(status=result.status, body=result.data,
                            headers={**dict(result.headers), "Content-Type": result.content_type})
    if isinstance(result, str):
        return web.Response(text=result, content_type="text/plain", charset="utf-8")
    if isinstance(result, (bytes, bytearray)):
        return web.Response(body=bytes(result), content_type="application/octet-stream")
    if isinstance(result, (dict, list)):
        return web.Response(text=coding.encode(result, fmt), headers={"Content-Type": coding.CONTENT_TYPES[fmt]})
    if callable(result):
        response = result(request)
        if inspect.isawaitable(response):
            response = await response
        if not isinstance(response, web.StreamResponse):
            raise HttpError(500, "A callable result must return an aiohttp response")
        return response
    raise HttpError(500, f"Unsupported handler result type {type(result).__name__}")


class AccessLogger(AbstractAccessLogger):
    """method, path, status, time: never the query string (it may carry ``api-key``) or headers."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_taken: float) -> None:
        self.logger.info("%s %s %s %d %.1fms", request.get(CLIENT_KEY) or request.remote, request.method, request.path,
                         response.status, time_taken * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
