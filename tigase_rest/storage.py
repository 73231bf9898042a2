"""Storage. ``open_sqlite``: one instance's files in ``data_dir`` (the features' SQLite stores).
And the shared database of a deployment (``[storage] url = "postgresql://..."``): one asyncpg pool,
and one listening connection that tells the features what other instances changed.

asyncpg is an optional extra (``pip install 'tigase-rest[postgresql]'``), imported only here and
only when a PostgreSQL URL is configured (config.validate names the extra when it is missing).
The pool opens on first use: a database that is down at start-up makes the calls that need it
answer 503 until it is back, it does not stop the process.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .config import redacted_url
from .errors import HttpError

log = logging.getLogger(__name__)

def open_sqlite(path: Path, *statements: str) -> sqlite3.Connection:
    """An SQLite file in autocommit mode (one statement per change), its folder made when missing,
    then ``statements`` run (pragmas, CREATE TABLE IF NOT EXISTS). Raises OSError or sqlite3.Error:
    each store says which store failed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            db.execute(statement)
    except BaseException:
        db.close()
        raise
    return db


class SqliteFile:
    """The SQLite file of one store, opened on first use by ``open_sqlite`` with ``statements``.
    ``failure(error)`` is the store's own exception for a file that cannot be opened."""

    def __init__(self, path: Path, statements: tuple[str, ...], failure: Callable[[BaseException], Exception]):
        self.path = path
        self._statements = statements
        self._failure = failure
        self._db: sqlite3.Connection | None = None

    def connection(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._db = open_sqlite(self.path, *self._statements)
            except (OSError, sqlite3.Error) as e:
                raise self._failure(e) from None
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


LISTEN_RETRY_MAX = 30.0  # seconds between attempts to listen again, at most
CONNECT_TIMEOUT = 5.0


class Database:
    def __init__(self, url: str, max_connections: int = 4):
        self.url = url
        self.max_connections = max_connections
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._setups: list[Callable[[Any], Awaitable[None]]] = []
        self._listeners: dict[str, Callable[[str], None]] = {}
        self._listening: asyncio.Task | None = None
        self._closed = False

    @property
    def where(self) -> str:
        return redacted_url(self.url)

    def on_open(self, setup: Callable[[Any], Awaitable[None]]) -> None:
        """``await setup(connection)`` once, when the pool opens (tables, under an advisory lock)."""
        self._setups.append(setup)

    async def pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                if self._closed:
                    raise HttpError(503, "The component is shutting down", condition="service-unavailable")
                import asyncpg  # the optional extra: only a PostgreSQL URL needs it

                try:
                    pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.max_connections,
                                                     timeout=CONNECT_TIMEOUT)
                    async with pool.acquire() as connection:
                        for setup in self._setups:
                            await setup(connection)
                except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                    raise unavailable(self.where, e) from None
                self._pool = pool
                log.info("Shared state in PostgreSQL at %s", self.where)
        return self._pool

    async def run(self, query: Callable[[Any], Awaitable[Any]]) -> Any:
        """``await query(connection)`` on a pooled connection; 503 when the database cannot be reached."""
        import asyncpg

        pool = await self.pool()
        try:
            async with pool.acquire(timeout=CONNECT_TIMEOUT) as connection:
                return await query(connection)
        except (OSError, asyncio.TimeoutError, asyncpg.InterfaceError,
                asyncpg.exceptions.PostgresConnectionError) as e:
            raise unavailable(self.where, e) from None

    # -- notifications --

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """``callback(payload)`` for each NOTIFY on ``channel``, and ``callback("")`` after every
        (re)connect of the listening connection (notifications may have been missed meanwhile)."""
        self._listeners[channel] = callback
        if self._listening is None:
            self._listening = asyncio.create_task(self._listen(), name="postgresql-listen")

    async def _listen(self) -> None:
        import asyncpg

        delay = 0.5
        while not self._closed:
            lost = asyncio.Event()
            connection = None
            try:
                await self.pool()  # the tables exist before anything listens
                connection = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
                connection.add_termination_listener(lambda _c: lost.set())
                for channel, callback in self._listeners.items():
                    await connection.add_listener(
                        channel, lambda _c, _pid, _channel, payload, callback=callback: callback(payload))
                for callback in self._listeners.values():
                    callback("")
                delay = 0.5
                await lost.wait()
                log.warning("PostgreSQL listening connection to %s lost; listening again", self.where)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure: retry with backoff, never give up
                log.warning("Cannot listen for changes in PostgreSQL at %s (retry in %.1fs): %s",
                            self.where, delay, e)
            finally:
                if connection is not None and not connection.is_closed():
                    await connection.close(timeout=2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_RETRY_MAX)

    async def close(self) -> None:
        self._closed = True
        if self._listening is not None:
            self._listening.cancel()
            await asyncio.gather(self._listening, return_exceptions=True)
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 5)
            except Exception:  # noqa: BLE001 - leaving anyway
                self._pool.terminate()
            self._pool = None


def unavailable(where: str, error: BaseException) -> HttpError:
    return HttpError(503, f"The shared state store (PostgreSQL at {where}) cannot be reached: "
                          f"{error or type(error).__name__}", condition="service-unavailable",
                     headers={"Retry-After": "5"})
