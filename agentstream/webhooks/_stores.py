"""Dedup stores in the databases the cursor stores already use: SQLite and Redis."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Union

from ..cursors._redis import _redacted_error, _redacted_url, _secrets_of_url
from ..errors import ConfigurationError
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

    busy_timeout_ms = 5000

    def __init__(self, path: Union[str, os.PathLike[str]], *, table: str = "webhook_dedup") -> None:
        if not table.isidentifier():
            raise ValueError("table must be an SQL identifier")
        self.path: str = str(path)
        self.table: str = table
        self._lock = threading.Lock()
        self._inherited: list[sqlite3.Connection] = []  # kept across fork(), never used
        self._conn = self._connect()
        self._next_sweep = 0.0
        with self._transaction() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (event_id TEXT PRIMARY KEY, "
                "state TEXT NOT NULL, expires_at REAL NOT NULL)"
            )
            conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_expires ON {table} (expires_at)")

    def __repr__(self) -> str:
        return f"SQLiteDedupStore({self.path!r})"

    def _connect(self) -> sqlite3.Connection:
        self._pid = os.getpid()
        conn = sqlite3.connect(
            self.path,
            check_same_thread=False,
            isolation_level=None,
            timeout=self.busy_timeout_ms / 1000,
        )
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._pid != os.getpid():
            # Forked: checked before taking the lock, which another thread of the
            # parent may have held at fork() time and nobody here would release.
            self._lock = threading.Lock()
            self._inherited.append(self._conn)
            self._conn = self._connect()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

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
        with self._lock:
            self._conn.close()


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
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "RedisDedupStore needs redis-py: pip install 'agentstream[redis]'"
            ) from exc
        self.prefix = prefix
        if isinstance(url_or_client, str):
            self._secrets = _secrets_of_url(url_or_client)
            self._where = _redacted_url(url_or_client, self._secrets)
            self._redis: redis.Redis = self._call(
                redis.Redis.from_url,
                url_or_client,
                socket_timeout=5.0,
                socket_connect_timeout=5.0,
            )
        else:
            self._redis = url_or_client
            kwargs = url_or_client.connection_pool.connection_kwargs
            password = kwargs.get("password")
            self._secrets = (password,) if isinstance(password, str) and password else ()
            where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
            self._where = f"<client {where}/{kwargs.get('db', 0)}>"
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"RedisDedupStore({self._where!r}, prefix={self.prefix!r})"

    def _call(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return operation(*args, **kwargs)
        except Exception as exc:
            replacement = _redacted_error(exc, self._secrets)
            if replacement is None:
                raise
        raise replacement  # outside the except block: the original is not attached

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
        self._call(self._redis.close)
