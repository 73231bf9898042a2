"""The webhook's message queue that survives a restart: SQLite under ``[storage] data_dir``.

A message is written before its first delivery attempt and deleted once the webhook took it (or it
was bounced): a message in flight when the process stops is delivered again after the restart
(at least once; the ``X-Delivery-Id`` header lets the receiver drop a repeat)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ...errors import HttpError
from ...storage import SqliteFile

STORE_NAME = "webhooks.sqlite3"


@dataclass
class Queued:
    row: int
    delivery_id: str
    stanza: str  # the message as XML (jabber:client)
    created: float  # wall-clock time it arrived
    attempts: int = 0


class QueueStore:
    def __init__(self, path: Path):
        self.path = path
        # WAL with NORMAL sync: a commit costs no fsync, and survives a crash of the process
        # (only a power cut may lose the last commits).
        self._file = SqliteFile(path, (
            "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
            "CREATE TABLE IF NOT EXISTS queue (row INTEGER PRIMARY KEY AUTOINCREMENT, delivery_id TEXT NOT NULL, "
            "stanza TEXT NOT NULL, created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)"),
            lambda e: HttpError(500, f"Cannot open the webhook queue {path}: {e}"))

    def load(self) -> list[Queued]:
        try:
            rows = self._file.connection().execute(
                "SELECT row, delivery_id, stanza, created, attempts FROM queue ORDER BY row").fetchall()
        except sqlite3.Error as e:
            raise HttpError(500, f"Cannot read the webhook queue {self.path}: {e}") from None
        return [Queued(*row) for row in rows]

    def add(self, delivery_id: str, stanza: str, created: float) -> Queued:
        cursor = self._write("INSERT INTO queue (delivery_id, stanza, created) VALUES (?, ?, ?)",
                             (delivery_id, stanza, created))
        return Queued(cursor.lastrowid or 0, delivery_id, stanza, created)

    def attempted(self, entry: Queued) -> None:
        self._write("UPDATE queue SET attempts = ? WHERE row = ?", (entry.attempts, entry.row))

    def delete(self, entry: Queued) -> None:
        self._write("DELETE FROM queue WHERE row = ?", (entry.row,))

    def _write(self, sql: str, args: tuple) -> sqlite3.Cursor:
        try:
            return self._file.connection().execute(sql, args)
        except sqlite3.Error as e:
            raise HttpError(500, f"Cannot write the webhook queue {self.path}: {e}") from None

    def close(self) -> None:
        self._file.close()
