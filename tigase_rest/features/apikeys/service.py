"""The stored API keys: kept in memory (one tuple, replaced on every change, which is what the
key checker reads per request), written through to the store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ...config import ApiKey
from .request import masked
from .store import ApiKeyStore

log = logging.getLogger(__name__)


class ApiKeyRefused(Exception):
    """A change the commands answer with an error note (the message says why)."""


@dataclass(frozen=True)
class Listed:
    shown: str  # the stored key in full, a config key masked
    source: str  # "config" or "stored"
    key: ApiKey


class ApiKeys:
    """``config_keys()`` is the running config's [auth] api_keys (a reload replaces them);
    ``on_change()`` runs after every change (the log redaction learns the new keys)."""

    def __init__(self, store: ApiKeyStore, config_keys: Callable[[], tuple[ApiKey, ...]],
                 on_change: Callable[[], None] = lambda: None):
        self.store = store
        self.config_keys = config_keys
        self.on_change = on_change
        self._keys: tuple[ApiKey, ...] = ()

    def load(self) -> None:
        self._keys = tuple(self.store.load())
        if self._keys:
            log.info("API keys: %d stored keys (added with api-key-add)", len(self._keys))

    def stored(self) -> tuple[ApiKey, ...]:
        """The same tuple until a change: the checker compiles the keys again only then."""
        return self._keys

    def find(self, key: str) -> ApiKey | None:
        return next((k for k in self._keys if k.key == key), None)

    def add(self, key: ApiKey, by: str) -> None:
        self.refuse_config_key(key.key, "added")
        if key.key in self.store.keys():
            raise ApiKeyRefused("This API key exists already: change it with api-key-update")
        self.store.put(key, by)
        self._set(self._keys + (key,))
        log.info("API key added by %s: %s", by, describe(key))

    def update(self, key: ApiKey, by: str) -> None:
        self.refuse_config_key(key.key, "changed")
        if self.find(key.key) is None:
            raise ApiKeyRefused("No such stored API key (api-key-list lists them)")
        self.store.put(key, by)
        self._set(tuple(key if k.key == key.key else k for k in self._keys))
        log.info("API key changed by %s: %s", by, describe(key))

    def remove(self, key: str, by: str) -> None:
        self.refuse_config_key(key, "removed")
        if key not in self.store.keys():
            raise ApiKeyRefused("No such stored API key (api-key-list lists them)")
        self.store.delete(key)
        self._set(tuple(k for k in self._keys if k.key != key))
        log.info("API key removed by %s", by)

    def listing(self) -> list[Listed]:
        return ([Listed(masked(k.key), "config", k) for k in self.config_keys()]
                + [Listed(k.key, "stored", k) for k in self._keys])

    def refuse_config_key(self, key: str, done: str) -> None:
        if any(k.key == key for k in self.config_keys()):
            raise ApiKeyRefused(f"This API key is in the configuration ([auth] api_keys): it cannot be {done} "
                                "with a command; edit the config file and reload (SIGHUP)")

    def _set(self, keys: tuple[ApiKey, ...]) -> None:
        self._keys = keys
        self.on_change()

    def close(self) -> None:
        self.store.close()


def describe(key: ApiKey) -> str:
    """A key's limits for the log, never the key itself."""
    return (f"domains {list(key.domains) or 'any'}, paths {list(key.paths) or 'any'}, "
            f"methods {list(key.methods) or 'any'}")
