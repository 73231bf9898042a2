"""The HTTP side: every request under the context path is dispatched to a handler script.

Order per request (Tigase's): route -> API key -> login and role -> body -> handler -> result.
Every error is answered in the format the client negotiated, with the reason in the body.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import HttpVersion11, web
from aiohttp.abc import AbstractAccessLogger

from slixmpp.jid import JID

from .. import coding
from ..coding import negotiated_format
from ..config import Config, folder_unwritable
from ..errors import HttpError, challenge, public
from ..handlers import Result, build_args
from ..loader import RouteTable
from ..logs import REQUEST_ID
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..metrics import HttpStats, Metrics
from ..service import Parts, Service
from ..xmpp.sessions import Caller
from .auth import ApiKeyChecker, basic_credentials, caller_jid, request_api_key
from .connections import INFO, HttpServer, Request, RequestInfo
from .index import CSP, STATIC_FILES, render_index
from .openapi import openapi_document
from .proxies import CLIENT_KEY, client_address

log = logging.getLogger(__name__)

# A handler that returns without answering gets this long beyond the IQ timeout to call back.
CALLBACK_GRACE = 5.0

# X-Request-Id from the client is kept when it is this short and plain; else one is made up.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,64}").fullmatch
_REQUEST_IDS = itertools.count(1)
_REQUEST_ID_PREFIX = secrets.token_hex(4)  # ids stay unique across restarts and instances
_NO_INFO = RequestInfo("-")  # written to by requests that did not come through handle() (tests)


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

    def __init__(self, current: Callable[[], Current], authenticate: Authenticate, parts: Parts,
                 metrics: Metrics | None = None):
        self.current = current
        self.authenticate = authenticate
        self.parts = parts
        self.metrics = metrics or Metrics(current().config.metrics.allow)
        self.server: HttpServer | None = None  # the one web_server() made, for the connection gauges
        # Outside the context path, no API key or login: probes and metrics.
        self._outside: dict[str, tuple[str, Callable[[Current, web.BaseRequest], web.StreamResponse]]] = {
            "/metrics": ("metrics", self._metrics), "/livez": ("livez", _livez), "/readyz": ("readyz", self._readyz)}
        # Under the context path, served when no script route matches: the document and the console.
        self._extras: dict[str, tuple[str, Callable[[Current, web.BaseRequest], web.StreamResponse]]] = {
            "/openapi.json": ("openapi", _openapi),
            **{f"/static/{name}": ("static", _static(path)) for name, path in STATIC_FILES.items()}}
        self._openapi_cache: tuple[object, bytes] | None = None

    def server_kwargs(self) -> dict[str, Any]:
        """Arguments for ``web.Server`` (or aiohttp's ``RawTestServer``)."""
        log = self.current().config.log  # [log] changes need a restart
        access_log = type("AccessLogger", (AccessLogger,), {
            "stats": self.metrics.http, "lines": log.access, "structured": log.format == "json"})
        return {"request_factory": self.make_request, "access_log_class": access_log,
                "keepalive_timeout": self.current().config.http.keepalive_timeout}

    def web_server(self) -> HttpServer:
        """The aiohttp server to run: connections bounded in number and in the time a head may take."""
        http = self.current().config.http  # [http] changes need a restart
        self.server = HttpServer(self.handle, header_timeout=http.header_timeout,
                                 max_connections=http.max_connections, **self.server_kwargs())
        return self.server

    def make_request(self, message, payload, protocol, writer, task) -> web.BaseRequest:
        return Request(message, payload, protocol, writer, task, asyncio.get_running_loop(),
                       client_max_size=self.current().config.http.max_body_bytes)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        # The request id: in every log line of this request (a context variable: tasks it starts
        # inherit it), in the access log and metrics (RequestInfo), and in the response's
        # X-Request-Id (set by Request._prepare_hook, also on responses a handler prepared itself).
        request_id = request.headers.get("X-Request-Id")
        if request_id is None or _CLIENT_REQUEST_ID(request_id) is None:
            request_id = f"{_REQUEST_ID_PREFIX}-{next(_REQUEST_IDS):x}"
        info = request[INFO] = RequestInfo(request_id)
        token = REQUEST_ID.set(request_id)
        try:
            return await self._route(request, info)
        finally:
            REQUEST_ID.reset(token)

    async def _route(self, request: web.BaseRequest, info: RequestInfo) -> web.StreamResponse:
        current = self.current()
        ctx = current.config.http.prefix
        path = request.path
        expect = request.headers.get("Expect")
        if expect is not None:
            refused = await _expect(request, expect)
            if refused is not None:
                return refused
        outside = self._outside.get(path)
        if outside is not None and request.method in ("GET", "HEAD"):
            info.handler = outside[0]
            return outside[1](current, request)
        if len(path) > len(ctx) + 1 and path.startswith(ctx + "/"):
            return await self.dispatch(current, request)
        if request.method in ("GET", "HEAD") and path in (ctx or "/", ctx + "/"):
            info.handler = "index"
            return index(current, request, self.parts.health())
        return outside_context(current.config, request)

    def _metrics(self, current: Current, request: web.BaseRequest) -> web.StreamResponse:
        if not self.metrics.allowed(request.remote):
            return error_response(HttpError(403, "Your address may not read the metrics ([metrics] allow)"),
                                  negotiated_format(request))
        return web.Response(body=self.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    def _readyz(self, current: Current, request: web.BaseRequest) -> web.StreamResponse:
        ready, report = readiness(current, self.parts)
        return web.Response(status=200 if ready else 503, text=json.dumps(report),
                            headers={"Content-Type": "application/json; charset=utf-8",
                                     "Cache-Control": "no-store", **({} if ready else {"Retry-After": "5"})})

    async def dispatch(self, current: Current, request: web.BaseRequest) -> web.StreamResponse:
        fmt = negotiated_format(request)
        try:
            return await self._dispatch(current, request, fmt)
        except HttpError as e:
            if e.status >= 500:
                # The log has the whole reason; the client gets it without internal addresses.
                log.warning("%s %s -> %d %s%s", request.method, request.path, e.status, e.reason,
                            f" ({e.detail})" if e.detail else "")
            if e.status == 401 and "X-Requested-With" in request.headers:
                # A script in a browser (the console) handles the 401 itself: no Basic challenge,
                # which would open the browser's own login dialog (and stall a headless one).
                e = HttpError(401, e.reason, condition=e.condition, text=e.text,
                              headers={k: v for k, v in e.headers.items() if k != "WWW-Authenticate"})
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
        info = request.get(INFO) or _NO_INFO
        resolved = current.routes.resolve(path, request.method)
        if resolved is None:
            extra = self._extras.get(path)
            if extra is not None and request.method in ("GET", "HEAD"):
                info.handler = extra[0]
                return extra[1](current, request)
            raise HttpError(404, f"No handler for {request.path}")
        route, groups = resolved
        info.handler = route.label
        handler = route.handler
        func = handler.exec_for(request.method)
        if func is None:
            # Tigase answers 404 (not 405) for a method the handler does not implement.
            raise HttpError(404, f"{request.method} is not supported on {request.path} "
                                 f"(supported: {', '.join(current.routes.methods_at(path))})")

        key = None
        if handler.api_key:
            # Tigase 2.x (authRequired): where a key replaces the login, a login replaces a missing key too.
            key_optional = handler.api_key_replaces_login and request_api_key(request) is None \
                and basic_credentials(request) is not None
            if not key_optional:
                key = current.api_keys.check_key(request)  # 403 for a wrong key; None: open access
        key_ok = key is not None
        if key is not None:
            info.key = current.api_keys.label(key)

        caller = password = None
        if handler.required_role and not (handler.api_key_replaces_login and key_ok):
            credentials = basic_credentials(request)
            if credentials is None:
                raise HttpError(401, "Authentication required: HTTP Basic auth with your bare JID and XMPP password",
                                headers=challenge())
            user, password = credentials
            caller = await self.authenticate(caller_jid(user), password, client)
            info.caller = caller.jid
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
    return web.Response(text=html, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})


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
    """One line per request, and its count and latency in the metrics.

    The line: client address, method, path, status, time, bytes, caller JID and API key name
    (``-`` when none), request id; never the query string (it may carry ``api-key``), headers or
    the key itself. ``RestServer.server_kwargs`` gives each server a subclass with its ``stats``."""

    stats: HttpStats | None = None
    lines = True  # [log] access
    structured = False  # [log] format = "json": the fields go along as ``extra["http"]``

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_taken: float) -> None:
        info: RequestInfo = request.get(INFO) or _NO_INFO
        status = response.status
        if self.stats is not None:
            self.stats.observe(info.handler, request.method, status, time_taken)
        if not self.lines or not self.logger.isEnabledFor(logging.INFO):
            return
        ms = round(time_taken * 1000, 1)
        size = response.body_length
        client = request.get(CLIENT_KEY) or request.remote
        extra: dict[str, Any] = {"request_id": info.request_id}
        if self.structured:
            extra["http"] = {"method": request.method, "path": request.path, "status": status, "duration_ms": ms,
                             "bytes": size, "caller": info.caller, "key": info.key, "client": client,
                             "handler": info.handler}
        self.logger.info("%s %s %s %d %.1fms %dB caller=%s key=%s", client, request.method, request.path,
                         status, ms, size, info.caller, info.key, extra=extra)

    @property
    def enabled(self) -> bool:
        return True  # the metrics count every request; log() checks the log level itself


def _livez(current: Current, request: web.BaseRequest) -> web.Response:
    """The process serves HTTP (its event loop turns): nothing else is checked."""
    return web.Response(text='{"status": "live"}', headers={"Content-Type": "application/json; charset=utf-8",
                                                            "Cache-Control": "no-store"})


def readiness(current: Current, parts: Parts) -> tuple[bool, dict[str, Any]]:
    """Ready to take traffic: the XMPP link is up, handlers are loaded, data_dir is writable.
    Scripts that failed to load are counted but do not make the instance unready: the others serve
    (a broken custom script after a reload must not take every instance out of the balancer)."""
    routes = current.routes
    checks = {
        "xmpp_link": "up" if parts.link.connected else "down",
        "handlers": "loaded" if routes.by_folder else "none loaded",
        "data_dir": "writable" if folder_unwritable(current.config.data_path) is None else "not writable",
    }
    not_ready = [name for name, state in checks.items() if state not in ("up", "loaded", "writable")]
    report: dict[str, Any] = {"status": "ready" if not not_ready else "not ready: " + ", ".join(
        f"{name} {checks[name]}" for name in not_ready), **checks, "failed_scripts": len(routes.errors)}
    return not not_ready, report


def _openapi(current: Current, request: web.BaseRequest) -> web.Response:
    text = openapi_document(current.routes, current.config)
    return web.Response(body=text, headers={"Content-Type": "application/json; charset=utf-8"})


STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".png": "image/png", ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}


def _static(path: Path) -> Callable[[Current, web.BaseRequest], web.Response]:
    body = path.read_bytes()
    headers = {"Content-Type": STATIC_TYPES.get(path.suffix, "application/octet-stream"),
               "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return lambda current, request: web.Response(body=body, headers=headers)
