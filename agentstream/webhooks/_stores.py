"""Dedup stores in the databases the cursor stores already use: SQLite and Redis."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Union

from .._redis import RedactedRedis
from .._sqlite import DEFAULT_BUSY_TIMEOUT_MS, SharedConnection
from ._dedup import Claim

if TYPE_CHECKING:
    import redis

__all__ = ["RedisDedupStore", "SQLiteDedupStore"]

_SWEEP_INTERVAL = 60.0  # seconds between two deletions of expired ids


class SQLiteDedupStore:
    """Claims in an SQLite database: several processes on one host.

    Give it the path of the :class:`~agentstream.cursors.SQLiteCursorStore`'s
    database to keep everything in one file: its table is ``webhook_dedup``,
    beside the cursor store's tables. Each claim is one ``BEGIN IMMEDIATE``
    transaction (WAL, the same busy timeout); expired ids are deleted at most
    once a minute. Expiry is judged by the host's ``time.time()``.
    """

    busy_timeout_ms = DEFAULT_BUSY_TIMEOUT_MS

    def __init__(self, path: Union[str, os.PathLike[str]], *, table: str = "webhook_dedup") -> None:
        if not table.isidentifier():
            raise ValueError("table must be an SQL identifier")
        self.path: str = str(path)
        self.table: str = table
        self._db = SharedConnection(self.path, busy_timeout_ms=self.busy_timeout_ms)
        self._transaction = self._db.transaction
        self._next_sweep = 0.0
        with self._transaction() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (event_id TEXT PRIMARY KEY, "
                "state TEXT NOT NULL, expires_at REAL NOT NULL)"
            )
            conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_expires ON {table} (expires_at)")

    def __repr__(self) -> str:
        return f"SQLiteDedupStore({self.path!r})"

    def claim(self, event_id: str, ttl: float) -> Claim:
        now = time.time()
        table = self.table
        with self._transaction() as conn:
            if now >= self._next_sweep:
                conn.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))
                self._next_sweep = now + _SWEEP_INTERVAL
            row = conn.execute(
                f"SELECT state FROM {table} WHERE event_id = ? AND expires_at > ?",
                (event_id, now),
            ).fetchone()
            if row is not None:
                return Claim(row[0])
            conn.execute(
                f"INSERT OR REPLACE INTO {table} (event_id, state, expires_at) VALUES (?, ?, ?)",
                (event_id, Claim.IN_PROGRESS.value, now + ttl),
            )
        return Claim.CLAIMED

    def complete(self, event_id: str, retention: float) -> None:
        with self._transaction() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO {self.table} (event_id, state, expires_at) "
                "VALUES (?, ?, ?)",
                (event_id, Claim.HANDLED.value, time.time() + retention),
            )

    def release(self, event_id: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                f"DELETE FROM {self.table} WHERE event_id = ? AND state = ?",
                (event_id, Claim.IN_PROGRESS.value),
            )

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


# KEYS: the id's key. ARGV: ttl_ms, in-progress marker. -> the state found, or false.
_CLAIM = """
local state = redis.call('GET', KEYS[1])
if state then return state end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
return false
"""

# KEYS: the id's key. ARGV: in-progress marker.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisDedupStore:
    """Claims in Redis: several processes on several hosts.

    ``url_or_client`` as for :class:`~agentstream.cursors.RedisCursorStore`
    (the same URL puts both in one database); each id is the key
    ``{prefix}dedup:{event_id}`` with the server's own expiry (PX), so
    nothing needs sweeping. A claim is one Lua script. The password never
    appears in the repr nor in an error.
    """

    def __init__(
        self, url_or_client: Union[str, redis.Redis], *, prefix: str = "agentstream:"
    ) -> None:
        self.prefix = prefix
        self._connection = RedactedRedis(url_or_client, owner="RedisDedupStore")
        self._redis: redis.Redis = self._connection.client
        self._call = self._connection.call
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"RedisDedupStore({self._connection.where!r}, prefix={self.prefix!r})"

    def _key(self, event_id: str) -> str:
        return f"{self.prefix}dedup:{event_id}"

    def claim(self, event_id: str, ttl: float) -> Claim:
        ttl_ms = max(1, int(ttl * 1000))
        reply = self._call(
            self._claim, keys=[self._key(event_id)], args=[ttl_ms, Claim.IN_PROGRESS.value]
        )
        if reply is None:
            return Claim.CLAIMED
        return Claim(reply.decode() if isinstance(reply, bytes) else str(reply))

    def complete(self, event_id: str, retention: float) -> None:
        ttl_ms = max(1, int(retention * 1000))
        self._call(self._redis.set, self._key(event_id), Claim.HANDLED.value, px=ttl_ms)

    def release(self, event_id: str) -> None:
        self._call(self._release, keys=[self._key(event_id)], args=[Claim.IN_PROGRESS.value])

    def close(self) -> None:
        """Close the client's connections."""
        self._connection.close()
