"""API keys and Basic auth, checked in Tigase's order: the API key first, then the login.

API keys come from the ``Api-Key`` header or the ``api-key`` query parameter. A key may be limited
to HTTP Host names and to path regexes (full match against the path including the context, as
Tigase's ApiKeyItem), and to HTTP methods (ours: a read-only key for avatars cannot PUT). A key
literally named ``open_access`` is used for requests that carry no key, and ``open_access = true``
disables keys entirely. Keys are compared in constant time, over all keys (the config's and those
added with the ``api-key-add`` command).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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


Entry = tuple[ApiKey, list[re.Pattern]]


@dataclass(frozen=True)
class KeySet:
    """Keys compiled for checking: built once when the keys change, never per request."""

    keys: tuple[Entry, ...] = ()
    open_keys: tuple[Entry, ...] = ()  # keys named ``open_access``: for requests without a key
    by_host: bool = False  # some key is limited to Host names: only then is the Host read

    @classmethod
    def of(cls, keys: Iterable[ApiKey]) -> KeySet:
        compiled = [(k, [re.compile(p) for p in k.paths]) for k in keys]
        return cls(tuple(e for e in compiled if e[0].key != OPEN_ACCESS_KEY),
                   tuple(e for e in compiled if e[0].key == OPEN_ACCESS_KEY),
                   any(k.domains for k, _ in compiled))

    def __bool__(self) -> bool:
        return bool(self.keys or self.open_keys)


EMPTY = KeySet()


class ApiKeyChecker:
    """The keys of the config (replaced as a whole by a reload) and the keys stored by the
    ``api-key-*`` commands, with the same rules. ``stored()`` returns the same tuple until the stored
    keys change (kept in memory by their owner): the merged set is compiled once per change, never
    per request. ``bootstrap`` (env TIGASE_REST_BOOTSTRAP_API_KEY, Tigase's HTTP_API_KEY_BOOTSTRAP)
    is a key without limits that is valid only while no other key exists."""

    def __init__(self, config: AuthConfig, stored: Callable[[], tuple[ApiKey, ...]] = lambda: (),
                 bootstrap: str = ""):
        self.open_access = config.open_access
        open_keys = [k for k in config.api_keys if k.key == OPEN_ACCESS_KEY]
        # the config's first open_access key only, as before
        self.config_keys = tuple(k for k in config.api_keys if k.key != OPEN_ACCESS_KEY) + tuple(open_keys[:1])
        self.stored = stored
        self.bootstrap = KeySet.of([ApiKey(bootstrap)]) if bootstrap and bootstrap != OPEN_ACCESS_KEY else EMPTY
        self._merged_from: tuple[ApiKey, ...] | None = None
        self._merged = EMPTY
        self._labels: dict[str, str] = {}

    def keys(self) -> KeySet:
        """Config keys first, then the stored ones; the bootstrap key when there are none."""
        stored = self.stored()
        if stored is not self._merged_from:  # compiled again only when the stored keys changed
            merged = KeySet.of(self.config_keys + stored)
            self._merged, self._merged_from = (merged or self.bootstrap), stored
        return self._merged

    def label(self, key: ApiKey) -> str:
        """What logs and metrics call ``key`` (memoized: a sha256 per request is avoidable)."""
        label = self._labels.get(key.key)
        if label is None:
            if len(self._labels) > 10_000:  # keys come and go with api-key-add/remove: stay bounded
                self._labels.clear()
            label = self._labels[key.key] = key_label(key)
        return label

    def check(self, request: web.BaseRequest) -> bool:
        """True when the request carries a valid key (or access is open); raises 403 otherwise."""
        return self.check_key(request) is not None

    def check_key(self, request: web.BaseRequest) -> ApiKey | None:
        """The valid key the request carries, None when it needs none (open access, the
        ``open_access`` key); raises 403 otherwise."""
        if self.open_access:
            return None
        keys = self.keys()
        given = request_api_key(request)
        host = request_host(request) if keys.by_host else ""
        path = request.path  # from the request target, as the host of an absolute-form target
        method = request.method
        if given is None:
            if any(_allows(e, host, path) and _allows_method(e[0], method) for e in keys.open_keys):
                return None
            raise HttpError(403, "Missing required 'Api-Key' header (or 'api-key' query parameter)")
        matched = None
        given_bytes = given.encode("utf-8", "surrogateescape")
        for entry in keys.keys:
            # compare every key, so the time taken does not tell which key was close
            # surrogateescape: aiohttp keeps undecodable header bytes as surrogates (they never match).
            if hmac.compare_digest(entry[0].key.encode(), given_bytes) and matched is None:
                matched = entry  # a config key wins over a stored key of the same value
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


def _allows(entry: Entry, host: str, path: str) -> bool:
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

