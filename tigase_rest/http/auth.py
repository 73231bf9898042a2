"""API keys and Basic auth, checked in Tigase's order: the API key first, then the login.

API keys come from the ``Api-Key`` header or the ``api-key`` query parameter. A key may be limited
to HTTP Host names and to path regexes (full match against the path including the context, as
Tigase's ApiKeyItem), and to HTTP methods (ours: a read-only key for avatars cannot PUT). A key literally named ``open_access`` is used for requests that carry no key,
and ``open_access = true`` disables keys entirely. Keys are compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from aiohttp import web
from slixmpp.jid import JID

from ..config import ApiKey, AuthConfig
from ..errors import HttpError, challenge
from ..xmpp.stanzas import parse_bare_jid

OPEN_ACCESS_KEY = "open_access"


def request_api_key(request: web.BaseRequest) -> str | None:
    return request.headers.get("Api-Key") or request.query.get("api-key") or None


def key_label(key: ApiKey) -> str:
    """What logs and metrics call a key: its ``name``, else the first 8 hex digits of its sha256
    (enough to tell keys apart, useless to recover one)."""
    return key.name or hashlib.sha256(key.key.encode()).hexdigest()[:8]


class ApiKeyChecker:
    def __init__(self, config: AuthConfig):
        self.open_access = config.open_access
        self.keys = [(k, [re.compile(p) for p in k.paths]) for k in config.api_keys if k.key != OPEN_ACCESS_KEY]
        open_keys = [k for k in config.api_keys if k.key == OPEN_ACCESS_KEY]
        self.open_key = (open_keys[0], [re.compile(p) for p in open_keys[0].paths]) if open_keys else None
        self.labels = {k.key: key_label(k) for k in config.api_keys}

    def check(self, request: web.BaseRequest) -> bool:
        """True when the request carries a valid key (or access is open); raises 403 otherwise."""
        return self.check_key(request) is not None

    def check_key(self, request: web.BaseRequest) -> ApiKey | None:
        """The valid key the request carries, None when it needs none (open access, the
        ``open_access`` key); raises 403 otherwise."""
        if self.open_access:
            return None
        given = request_api_key(request)
        host = request_host(request)
        path = request.path  # from the request target, as the host of an absolute-form target
        method = request.method
        if given is None:
            if self.open_key and _allows(self.open_key, host, path) and _allows_method(self.open_key[0], method):
                return None
            raise HttpError(403, "Missing required 'Api-Key' header (or 'api-key' query parameter)")
        matched = None
        for entry in self.keys:
            # compare every key, so the time taken does not tell which key was close
            # surrogateescape: aiohttp keeps undecodable header bytes as surrogates (they never match).
            if hmac.compare_digest(entry[0].key.encode(), given.encode("utf-8", "surrogateescape")):
                matched = entry
        if matched is None or not _allows(matched, host, path):
            raise HttpError(403, f"Provided Api-Key is not authorized to access {path}")
        if not _allows_method(matched[0], method):
            raise HttpError(403, f"Provided Api-Key is not authorized to use {method} on {path} "
                                 f"(only {', '.join(matched[0].methods)})")
        return matched[0]


def request_host(request: web.BaseRequest) -> str:
    """The host a request names, without the port: the authority of an absolute-form target
    (``GET http://host/rest/...``, RFC 9112 3.2.2: it replaces Host), else the Host header.
    Routing takes the path from that same target, so the key check and the route agree.
    Either way it is what the client says: a boundary only when a proxy in front sets it."""
    raw = request.raw_path
    if not raw.startswith("/") and "://" in raw:  # absolute-form; "*" (OPTIONS *) has no host
        authority = raw.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        return _host_name(authority.rpartition("@")[2])  # no userinfo
    return _host_name(request.host or "")


def _host_name(host: str) -> str:
    """The Host header without its port, also for an IPv6 literal ("[::1]:8080" -> "[::1]")."""
    if host.startswith("["):
        return host[:host.find("]") + 1].lower() if "]" in host else host.lower()
    return host.rsplit(":", 1)[0].lower()


def _allows(entry: tuple[ApiKey, list[re.Pattern]], host: str, path: str) -> bool:
    key, patterns = entry
    if key.domains and host not in (d.lower() for d in key.domains):
        return False
    return not patterns or any(p.fullmatch(path) for p in patterns)


def _allows_method(key: ApiKey, method: str) -> bool:
    return not key.methods or method in key.methods


def basic_credentials(request: web.BaseRequest) -> tuple[str, str] | None:
    """(bare JID, password) from the Authorization header, or None when there is none."""
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise HttpError(401, f"Unsupported authorization scheme {scheme!r}: use Basic", headers=challenge())
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # bad base64 (binascii.Error), non-ASCII text, or not UTF-8: all ValueErrors
        raise HttpError(401, "Malformed Basic authorization header", headers=challenge()) from None
    user, sep, password = decoded.partition(":")
    if not sep or not user or not password:
        raise HttpError(401, "Basic authorization needs 'bare-jid:password'", headers=challenge())
    return user, password


def caller_jid(user: str) -> JID:
    try:
        return parse_bare_jid(user, "the Basic auth user name")
    except HttpError as e:
        raise HttpError(401, e.reason, headers=challenge()) from None

