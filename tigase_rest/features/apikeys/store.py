"""The API keys added with the ad-hoc commands: SQLite under ``[storage] data_dir``."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

from ...config import ApiKey
from ...storage import SqliteFile
from .request import KeyFieldError, parse_api_key

log = logging.getLogger(__name__)

STORE_NAME = "apikeys.sqlite3"


class StoreError(Exception):
    """The store cannot be read or written; the message names the file."""


class ApiKeyStore:
    """Writes are one small row, done inline on the event loop (admins add keys rarely)."""

    def __init__(self, path: Path):
        self.path = path
        self._file = SqliteFile(path, (
            "CREATE TABLE IF NOT EXISTS api_keys (key TEXT PRIMARY KEY, domains TEXT NOT NULL, paths TEXT NOT NULL, "
            "methods TEXT NOT NULL, changed_by TEXT NOT NULL, changed_at REAL NOT NULL)",),
            lambda e: StoreError(f"cannot open the API key store {path}: {e}"))

    def load(self) -> list[ApiKey]:
        """Every stored key, checked as the commands check them: a row that is no longer valid
        is skipped with a warning (it never works), and can still be removed."""
        try:
            rows = self._file.connection().execute(
                "SELECT key, domains, paths, methods FROM api_keys ORDER BY changed_at, rowid").fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"cannot read the API key store {self.path}: {e}") from None
        keys = []
        for n, (key, domains, paths, methods) in enumerate(rows, 1):
            try:
                keys.append(parse_api_key(key, json.loads(domains), json.loads(paths), json.loads(methods)))
            except (KeyFieldError, ValueError, TypeError) as e:
                log.warning("Stored API key #%d skipped, it does not work: %s (api-key-remove removes it)", n, e)
        return keys

    def keys(self) -> set[str]:
        """Every stored key as written, valid or not (what api-key-remove may remove)."""
        try:
            return {row[0] for row in self._file.connection().execute("SELECT key FROM api_keys")}
        except sqlite3.Error as e:
            raise StoreError(f"cannot read the API key store {self.path}: {e}") from None

    def put(self, key: ApiKey, by: str) -> None:
        self._write("INSERT OR REPLACE INTO api_keys VALUES (?, ?, ?, ?, ?, ?)",
                    (key.key, json.dumps(key.domains), json.dumps(key.paths), json.dumps(key.methods),
                     by, time.time()))

    def delete(self, key: str) -> None:
        self._write("DELETE FROM api_keys WHERE key = ?", (key,))

    def _write(self, sql: str, args: tuple) -> None:
        try:
            self._file.connection().execute(sql, args)
        except sqlite3.Error as e:
            raise StoreError(f"cannot write the API key store {self.path}: {e}") from None

    def close(self) -> None:
        self._file.close()
