"""The Handler base class that scripts under ``scripts/rest/<prefix>/`` subclass.

It keeps Tigase's model (``tigase.http.rest.Handler``): a regex matched against the path after the
folder prefix, a required role, and ``exec_get``/``exec_put``/``exec_post``/``exec_delete`` called
with a dynamic argument list::

    service, callback, [user], [request], [content], *regex_groups

- ``user`` (a bare JID string, or None when an API key alone was accepted) only when
  ``required_role`` is set;
- ``request`` (the aiohttp request) only when the method declares a parameter named ``request``
  right after those (Tigase: a parameter typed HttpServletRequest);
- ``content`` (parsed JSON/XML, or the raw request when ``decode_content`` is False).
  Deviation: when the method declares a slot for it, it is always passed, as None when there is
  no body, so a POST without a body never shifts the regex groups (Tigase shifts them and fails).

The method may be ``async``. It answers by calling ``callback(result)`` or by returning the result.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

METHODS = ("GET", "PUT", "POST", "DELETE")
ROLES = (None, "user", "admin")


@dataclass(frozen=True)
class Result:
    """A binary answer with its content type (Tigase's ``Handler.Result``)."""

    data: bytes
    content_type: str
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()


class Handler:
    #: Regex fully matched against the path after ``/<context>/<folder>``; groups are arguments.
    regex: ClassVar[str] = ""
    #: None (no login), "user" or "admin" (Basic auth with the caller's XMPP account).
    required_role: ClassVar[str | None] = None
    #: True: the method may return before calling ``callback`` (it is awaited, bounded).
    is_async: ClassVar[bool] = True
    #: False: ``content`` is the raw aiohttp request instead of parsed JSON/XML.
    decode_content: ClassVar[bool] = True
    #: Whether a valid API key is required (Tigase default: true).
    api_key: ClassVar[bool] = True
    #: Tigase 2.x ``authRequired`` override: a valid API key alone is enough, no Basic auth.
    api_key_replaces_login: ClassVar[bool] = False
    #: For the index page: {"regex": "/{jid}", "GET": {"info": "...", "description": "..."}, ...}
    description: ClassVar[dict | None] = None

    exec_get: Callable[..., Any] | None = None
    exec_put: Callable[..., Any] | None = None
    exec_post: Callable[..., Any] | None = None
    exec_delete: Callable[..., Any] | None = None

    def exec_for(self, method: str) -> Callable[..., Any] | None:
        return getattr(self, "exec_" + method.lower(), None) if method in METHODS else None

    def methods(self) -> list[str]:
        return [m for m in METHODS if self.exec_for(m) is not None]


@dataclass(frozen=True)
class Signature:
    """How to call one exec method: computed once at load time, not per request."""

    wants_request: bool
    content_slot: bool  # True: always pass content (None without a body); False: Tigase rule
    varargs: bool
    positional: int  # declared positional parameters (self excluded)
    fixed: int  # service, callback, [user], [request]


def signature_of(handler: Handler, method: str, group_count: int) -> Signature:
    func = handler.exec_for(method)
    assert func is not None, method  # only called for the methods the handler implements
    params = list(inspect.signature(func).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    fixed = 2 + (1 if handler.required_role else 0)
    wants_request = len(positional) > fixed and positional[fixed].name == "request"
    if wants_request:
        fixed += 1
    content_slot = not varargs and len(positional) >= fixed + 1 + group_count
    return Signature(wants_request, content_slot, varargs, len(positional), fixed)


def build_args(
    sig: Signature,
    *,
    service: Any,
    callback: Callable[[Any], None],
    with_user: bool,
    user: str | None,
    request: Any,
    has_body: bool,
    content: Any,
    groups: tuple,
) -> list:
    args: list = [service, callback]
    if with_user:
        args.append(user)
    if sig.wants_request:
        args.append(request)
    if sig.content_slot or (sig.varargs and has_body):
        args.append(content if has_body else None)
    args.extend(groups)
    return args
