"""The external statuses that survive a restart: SQLite under ``[storage] data_dir``."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import asdict
from pathlib import Path

from ...errors import HttpError
from .request import Status, check_resource, stored_status

log = logging.getLogger(__name__)

STORE_NAME = "statuses.sqlite3"


class StatusStore:
    """The statuses in SQLite. Writes are one small row: they run inline on the event loop."""

    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: one statement per change
                db.execute("CREATE TABLE IF NOT EXISTS statuses (user TEXT NOT NULL, resource TEXT NOT NULL, "
                           "priority INTEGER NOT NULL, show TEXT, status TEXT, activity TEXT, "
                           "PRIMARY KEY (user, resource))")
            except (OSError, sqlite3.Error) as e:
                raise HttpError(500, f"Cannot open the status store {self.path}: {e}") from None
            self._db = db
        return self._db

    def load(self) -> dict[str, dict[str, Status]]:
        statuses: dict[str, dict[str, Status]] = {}
        try:
            rows = self._connection().execute(
                "SELECT user, resource, priority, show, status, activity FROM statuses").fetchall()
        except sqlite3.Error as e:
            raise HttpError(500, f"Cannot read the status store {self.path}: {e}") from None
        for user, resource, priority, show, status, activity in rows:
            try:
                check_resource(resource)
                statuses.setdefault(user, {})[resource] = stored_status(
                    priority, show, status, json.loads(activity) if activity else None)
            except (HttpError, ValueError, TypeError) as e:
                reason = e.reason if isinstance(e, HttpError) else f"unreadable activity ({e})"
                log.warning("Stored status of %s/%s skipped, it is never sent: %s (POST available=false "
                            "to remove it)", user, resource, reason)
        return {user: resources for user, resources in statuses.items() if resources}

    def put(self, user: str, resource: str, status: Status) -> None:
        activity = json.dumps(asdict(status.activity)) if status.activity else None
        self._write("INSERT OR REPLACE INTO statuses VALUES (?, ?, ?, ?, ?, ?)",
                    (user, resource, status.priority, status.show, status.status, activity))

    def delete(self, user: str, resource: str) -> None:
        self._write("DELETE FROM statuses WHERE user = ? AND resource = ?", (user, resource))

    def _write(self, sql: str, args: tuple) -> None:
        try:
            self._connection().execute(sql, args)
        except sqlite3.Error as e:
            raise HttpError(500, f"Cannot write the status store {self.path}: {e}") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


