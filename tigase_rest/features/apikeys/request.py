"""Validation of the fields the api-key commands receive (pure: no I/O)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from ...config import ApiKey

# The methods a stored key may be limited to (the config takes any upper-case word).
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
MAX_KEY_CHARS = 256
MAX_ITEMS = 100  # domains, paths or methods per key
MAX_PATTERN_CHARS = 1000
_HOST = re.compile(r"(?:\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?)")


class KeyFieldError(ValueError):
    """A field an admin sent cannot make a key; the message names the field."""


def new_key() -> str:
    """The default of api-key-add's key field: a random UUID, as Tigase."""
    return str(uuid.uuid4())


def parse_key(value: str | None) -> str:
    key = (value or "").strip()
    if not key:
        raise KeyFieldError("API Key: empty")
    if len(key) > MAX_KEY_CHARS:
        raise KeyFieldError(f"API Key: longer than {MAX_KEY_CHARS} characters")
    if any(c.isspace() or not c.isprintable() for c in key):
        raise KeyFieldError("API Key: spaces and control characters cannot be sent in an Api-Key header")
    return key


def parse_domains(values: Iterable[str]) -> tuple[str, ...]:
    domains = _items(values, "Domains")
    for domain in domains:
        if not _HOST.fullmatch(domain.lower()):
            raise KeyFieldError(f"Domains: {domain!r} is not a host name (as in the Host header, without a port)")
    return tuple(dict.fromkeys(d.lower() for d in domains))


def parse_paths(values: Iterable[str]) -> tuple[str, ...]:
    paths = _items(values, "Paths")
    for pattern in paths:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise KeyFieldError(f"Paths: a regex longer than {MAX_PATTERN_CHARS} characters")
        try:
            re.compile(pattern)
        except re.error as e:
            raise KeyFieldError(f"Paths: invalid regex {pattern!r}: {e}") from None
    return tuple(dict.fromkeys(paths))


def parse_methods(values: Iterable[str]) -> tuple[str, ...]:
    """Methods from a list-multi field; "GET, PUT" or "GET PUT" in one value are taken too."""
    methods = tuple(m.upper() for m in _items((w for v in values for w in re.split(r"[\s,]+", v)), "Methods"))
    for method in methods:
        if method not in METHODS:
            raise KeyFieldError(f"Methods: {method!r} is not one of {', '.join(METHODS)}")
    return tuple(dict.fromkeys(methods))


def parse_api_key(key: str | None, domains: Iterable[str] = (), paths: Iterable[str] = (),
                  methods: Iterable[str] = ()) -> ApiKey:
    return ApiKey(parse_key(key), parse_domains(domains), parse_paths(paths), parse_methods(methods))


def _items(values: Iterable[str], name: str) -> list[str]:
    """Non-empty, stripped lines (a text-multi field's values may also hold several lines each)."""
    items = [line.strip() for v in values for line in (v or "").splitlines() if line.strip()]
    if len(items) > MAX_ITEMS:
        raise KeyFieldError(f"{name}: more than {MAX_ITEMS}")
    return items


def masked(key: str) -> str:
    """A config key as the list command shows it: its last 4 characters, when it is long enough
    that they tell little ("open_access" is a name, shown as it is)."""
    if key == "open_access":
        return key
    return "****" + key[-4:] if len(key) >= 16 else "****"
