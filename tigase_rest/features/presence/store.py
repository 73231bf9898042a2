"""The external statuses that survive a restart, behind one small async interface:

- :class:`SqliteStatusStore` (``[storage] url = "sqlite"``, the default): a file under
  ``[storage] data_dir``, one instance. Each call is one small statement run inline on the event
  loop (no thread hop): the async methods cost a coroutine, not a context switch.
- :class:`PostgresStatusStore` (``postgresql://...``): shared by the instances of a deployment.
  Every write also NOTIFYs the channel ``tigase_rest_statuses`` with ``<instance> <user>``, so the
  other instances reload that user's statuses (``watch``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Protocol

from ...errors import HttpError
from ...storage import Database, SqliteFile
from .request import Status, check_resource, stored_status

log = logging.getLogger(__name__)

STORE_NAME = "statuses.sqlite3"
CHANNEL = "tigase_rest_statuses"


class StatusStore(Protocol):
    """Where the statuses live. ``shared``: other instances write to it too (the service then reads
    a user's rows before changing them, and follows ``watch``)."""

    shared: bool

    async def load(self) -> dict[str, dict[str, Status]]: ...

    async def load_user(self, user: str) -> dict[str, Status]: ...

    async def put(self, user: str, resource: str, status: Status) -> None: ...

    async def delete(self, user: str, resource: str) -> None: ...

    def watch(self, changed: Callable[[str | None], None]) -> None:
        """``changed(user)`` when another instance changed that user's statuses; ``changed(None)``
        when anything may have changed (the store reconnected)."""
        ...

    async def close(self) -> None: ...


def _status_of(user: str, resource: str, priority: int, show: str | None, status: str | None,
               activity: str | None) -> Status | None:
    try:
        check_resource(resource)
        return stored_status(priority, show, status, json.loads(activity) if activity else None)
    except (HttpError, ValueError, TypeError) as e:
        reason = e.reason if isinstance(e, HttpError) else f"unreadable activity ({e})"
        log.warning("Stored status of %s/%s skipped, it is never sent: %s (POST available=false "
                    "to remove it)", user, resource, reason)
        return None


def _activity_json(status: Status) -> str | None:
    return json.dumps(asdict(status.activity)) if status.activity else None


class SqliteStatusStore:
    """The statuses in SQLite. Writes are one small row: they run inline on the event loop."""

    shared = False

    def __init__(self, path: Path):
        self.path = path
        self._file = SqliteFile(path, (
            "CREATE TABLE IF NOT EXISTS statuses (user TEXT NOT NULL, resource TEXT NOT NULL, "
            "priority INTEGER NOT NULL, show TEXT, status TEXT, activity TEXT, PRIMARY KEY (user, resource))",),
            lambda e: HttpError(500, f"Cannot open the status store {path}: {e}"))

    async def load(self) -> dict[str, dict[str, Status]]:
        return self._read("", ())

    async def load_user(self, user: str) -> dict[str, Status]:
        return self._read(" WHERE user = ?", (user,)).get(user, {})

    def _read(self, where: str, args: tuple) -> dict[str, dict[str, Status]]:
        statuses: dict[str, dict[str, Status]] = {}
        try:
            rows = self._file.connection().execute(
                "SELECT user, resource, priority, show, status, activity FROM statuses" + where, args).fetchall()
        except sqlite3.Error as e:
            raise HttpError(500, f"Cannot read the status store {self.path}: {e}") from None
        for user, resource, *fields in rows:
            status = _status_of(user, resource, *fields)
            if status is not None:
                statuses.setdefault(user, {})[resource] = status
        return statuses

    async def put(self, user: str, resource: str, status: Status) -> None:
        self._write("INSERT OR REPLACE INTO statuses VALUES (?, ?, ?, ?, ?, ?)",
                    (user, resource, status.priority, status.show, status.status, _activity_json(status)))

    async def delete(self, user: str, resource: str) -> None:
        self._write("DELETE FROM statuses WHERE user = ? AND resource = ?", (user, resource))

    def watch(self, changed: Callable[[str | None], None]) -> None:
        pass  # one instance: nobody else writes

    def _write(self, sql: str, args: tuple) -> None:
        try:
            self._file.connection().execute(sql, args)
        except sqlite3.Error as e:
            raise HttpError(500, f"Cannot write the status store {self.path}: {e}") from None

    async def close(self) -> None:
        self._file.close()


class PostgresStatusStore:
    """The statuses in PostgreSQL, shared by a deployment. Each row names the instance that wrote it
    last (``instance``, for operators; any instance may withdraw or re-announce any row)."""

    shared = True

    def __init__(self, database: Database, instance: str):
        self.db = database
        self.instance = instance
        database.on_open(self._create)

    @staticmethod
    async def _create(connection: Any) -> None:
        async with connection.transaction():
            # Instances starting together would race on CREATE TABLE IF NOT EXISTS (pg_type's unique key).
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext('tigase_rest_statuses'))")
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS tigase_rest_statuses (jid TEXT NOT NULL, resource TEXT NOT NULL, "
                "priority INTEGER NOT NULL, show TEXT, status TEXT, activity TEXT, instance TEXT NOT NULL, "
                "updated TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (jid, resource))")

    async def load(self) -> dict[str, dict[str, Status]]:
        return await self._read("", ())

    async def load_user(self, user: str) -> dict[str, Status]:
        return (await self._read(" WHERE jid = $1", (user,))).get(user, {})

    async def _read(self, where: str, args: tuple) -> dict[str, dict[str, Status]]:
        rows = await self.db.run(lambda c: c.fetch(
            "SELECT jid, resource, priority, show, status, activity FROM tigase_rest_statuses" + where, *args))
        statuses: dict[str, dict[str, Status]] = {}
        for row in rows:
            status = _status_of(*row)
            if status is not None:
                statuses.setdefault(row[0], {})[row[1]] = status
        return statuses

    async def put(self, user: str, resource: str, status: Status) -> None:
        # One round trip: the write and its notification, in one statement (one transaction).
        await self.db.run(lambda c: c.execute(
            "WITH w AS (INSERT INTO tigase_rest_statuses (jid, resource, priority, show, status, activity, instance) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (jid, resource) DO UPDATE SET priority = $3, "
            "show = $4, status = $5, activity = $6, instance = $7, updated = now() RETURNING 1) "
            f"SELECT pg_notify('{CHANNEL}', $8) FROM w",
            user, resource, status.priority, status.show, status.status, _activity_json(status), self.instance,
            f"{self.instance} {user}"))

    async def delete(self, user: str, resource: str) -> None:
        await self.db.run(lambda c: c.execute(
            "WITH d AS (DELETE FROM tigase_rest_statuses WHERE jid = $1 AND resource = $2 RETURNING 1) "
            f"SELECT pg_notify('{CHANNEL}', $3) FROM d", user, resource, f"{self.instance} {user}"))

    def watch(self, changed: Callable[[str | None], None]) -> None:
        def notified(payload: str) -> None:
            instance, _, user = payload.partition(" ")
            if not payload:
                changed(None)
            elif instance != self.instance and user:
                changed(user)

        self.db.listen(CHANNEL, notified)

    async def close(self) -> None:
        pass  # the Database is closed by its owner (app.serve)


