"""One SQLite connection that the threads of a process share, and that a forked
child replaces with its own: what the cursor store and the dedup store both
open (``cursors.SQLiteCursorStore``, ``webhooks.SQLiteDedupStore``).

Below every layer: it imports nothing of agentstream.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Union

__all__ = ["DEFAULT_BUSY_TIMEOUT_MS", "SharedConnection"]

DEFAULT_BUSY_TIMEOUT_MS = 5000


class SharedConnection:
    """An SQLite database (WAL, ``synchronous=NORMAL``, a busy timeout) behind
    one connection and a lock: each :meth:`transaction` is one ``BEGIN
    IMMEDIATE`` transaction, so its reads and writes cannot interleave with
    another thread's or another process's.

    Fork-safe: a connection inherited across ``os.fork()`` must never be used
    nor closed in the child (SQLite's rule), so the first transaction in a
    child opens a new one and keeps the inherited one referenced (not
    garbage-collected, hence never closed). The lock is replaced there too,
    before it is taken: another thread of the parent may have held it at
    ``fork()`` time, and nobody in the child would release it. A child forked
    while another thread was inside a transaction still cannot write (SQLite's
    in-process lock state, copied by ``fork()``, has the inherited connection
    holding the write lock): it gets ``database is locked`` after the busy
    timeout instead of waiting forever. Fork with no transaction open (the
    Listener's ``restart_after_fork`` stops it before ``fork()``).
    """

    def __init__(
        self, path: Union[str, os.PathLike[str]], *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
    ) -> None:
        self.path: str = str(path)
        self.busy_timeout_ms: int = busy_timeout_ms
        self._lock = threading.Lock()
        self._inherited: list[sqlite3.Connection] = []  # kept across fork(), never used
        self._pid = os.getpid()
        self._conn = self._connect()

    def __repr__(self) -> str:
        return f"SharedConnection({self.path!r})"

    @property
    def connection(self) -> sqlite3.Connection:
        """This process's connection (for reading its settings; write through
        :meth:`transaction`)."""
        self._after_fork()
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            check_same_thread=False,
            isolation_level=None,
            timeout=self.busy_timeout_ms / 1000,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _after_fork(self) -> None:
        # Checked before taking the lock (see the class docstring).
        if self._pid != os.getpid():
            self._lock = threading.Lock()
            self._inherited.append(self._conn)
            self._pid = os.getpid()
            self._conn = self._connect()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` on this process's connection, one
        thread at a time; ``ROLLBACK`` if the block raises."""
        self._after_fork()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close this process's connection (never one inherited across fork():
        a child that opened none has nothing to close)."""
        if self._pid != os.getpid():
            return
        with self._lock:
            self._conn.close()
