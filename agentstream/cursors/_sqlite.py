"""Cursors and leases in an SQLite database: several processes on one host."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Optional, Union

from .._sqlite import DEFAULT_BUSY_TIMEOUT_MS, SharedConnection
from ..errors import LeaseLostError
from ._protocol import TokenWatermark

__all__ = ["SQLiteCursorStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, cursor TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
    "token INTEGER NOT NULL, expires_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tokens (name TEXT PRIMARY KEY, last_token INTEGER NOT NULL)",
)


class SQLiteCursorStore:
    """Cursors and leases in an SQLite database (WAL): several processes on one host.

    Every operation is one ``BEGIN IMMEDIATE`` transaction, so the check and
    the write of a lease grant or a fenced save cannot interleave with another
    process's. Lease expiry is judged by the host's ``time.time()``: share one
    database between processes of one host only (SQLite over a network file
    system is neither safe nor on one clock). A store used in a child after
    ``os.fork()`` opens its own connection there.
    """

    busy_timeout_ms = DEFAULT_BUSY_TIMEOUT_MS

    def __init__(self, path: Union[str, os.PathLike[str]]) -> None:
        self.path: str = str(path)
        self._tokens = TokenWatermark()
        self._db = SharedConnection(self.path, busy_timeout_ms=self.busy_timeout_ms)
        self._transaction = self._db.transaction
        with self._transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def __repr__(self) -> str:
        return f"SQLiteCursorStore({self.path!r})"

    def load(self, name: str) -> Optional[str]:
        with self._transaction() as conn:
            row = conn.execute("SELECT cursor FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def save(self, name: str, cursor: str) -> None:
        with self._transaction() as conn:
            self._write_cursor(conn, name, cursor)

    @staticmethod
    def _write_cursor(conn: sqlite3.Connection, name: str, cursor: str) -> None:
        conn.execute(
            "INSERT INTO cursors (name, cursor) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET cursor = excluded.cursor",
            (name, cursor),
        )

    def acquire(self, name: str, holder: str, ttl: float) -> Optional[int]:
        with self._transaction() as conn:
            now = time.time()
            row = conn.execute(
                "SELECT holder, token, expires_at FROM leases WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and row[2] > now:
                if row[0] != holder:
                    return None
                conn.execute("UPDATE leases SET expires_at = ? WHERE name = ?", (now + ttl, name))
                token, new_grant = int(row[1]), False
            else:
                last = conn.execute(
                    "SELECT last_token FROM tokens WHERE name = ?", (name,)
                ).fetchone()
                token, new_grant = (0 if last is None else int(last[0])) + 1, True
                conn.execute(
                    "INSERT INTO tokens (name, last_token) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET last_token = excluded.last_token",
                    (name, token),
                )
                conn.execute(
                    "INSERT INTO leases (name, holder, token, expires_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
                    "token = excluded.token, expires_at = excluded.expires_at",
                    (name, holder, token, now + ttl),
                )
        return self._tokens.check(name, token, new_grant=new_grant)

    def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        # The lease row is replaced on every grant: a matching row means nobody
        # else was granted the lease since, even if it expired a moment ago.
        with self._transaction() as conn:
            updated = conn.execute(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND token = ?",
                (time.time() + ttl, name, holder, token),
            ).rowcount
        return updated == 1

    def release(self, name: str, holder: str, token: int) -> None:
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM leases WHERE name = ? AND holder = ? AND token = ?",
                (name, holder, token),
            )

    def save_fenced(self, name: str, cursor: str, token: int) -> None:
        with self._transaction() as conn:
            row = conn.execute("SELECT last_token FROM tokens WHERE name = ?", (name,)).fetchone()
            current = None if row is None else int(row[0])
            if current != token:
                raise LeaseLostError(name, token, current)
            self._write_cursor(conn, name, cursor)

    def lease_holder(self, name: str) -> Optional[tuple[str, int, float]]:
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT holder, token, expires_at FROM leases WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        left = float(row[2]) - time.time()
        return (str(row[0]), int(row[1]), left) if left > 0 else None

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()
