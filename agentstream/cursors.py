"""Durable cursors: where a listener resumes after a restart.

A listener saves the id of the last event whose handlers have all returned;
a new process with the same store and name resumes right after it. Events
handled but not yet saved when a process dies are delivered again
(at-least-once across processes); within one process each event reaches the
handlers exactly once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Optional, Protocol, Union, runtime_checkable

__all__ = ["CursorStore", "FileCursorStore", "MemoryCursorStore", "SQLiteCursorStore"]


@runtime_checkable
class CursorStore(Protocol):
    """Where cursors are kept, one per listener name."""

    def load(self, name: str) -> Optional[str]:
        """The saved cursor for ``name``, or None."""

    def save(self, name: str, cursor: str) -> None:
        """Remember ``cursor`` for ``name``. Called from listener threads."""


class MemoryCursorStore:
    """Cursors in memory: survives a listener restart in the same process, not
    a new process. Each :class:`~agentstream.Client` keeps one for its listeners."""

    def __init__(self) -> None:
        # One dict get or set per call: atomic without a lock, and save() runs
        # once per event handled (a lock was 3% of a Listener's time).
        self._cursors: dict[str, str] = {}

    def load(self, name: str) -> Optional[str]:
        return self._cursors.get(name)

    def save(self, name: str, cursor: str) -> None:
        self._cursors[name] = cursor


class FileCursorStore:
    """Cursors in a small JSON file, replaced atomically on every save.

    Suits one process; for several processes sharing a store use
    :class:`SQLiteCursorStore`.
    """

    def __init__(self, path: Union[str, os.PathLike[str]]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self, name: str) -> Optional[str]:
        with self._lock:
            value = self._read().get(name)
        return value if isinstance(value, str) else None

    def save(self, name: str, cursor: str) -> None:
        with self._lock:
            cursors = self._read()
            cursors[name] = cursor
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as handle:
                    json.dump(cursors, handle)
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise

    def _read(self) -> dict[str, object]:
        try:
            with self.path.open() as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}


class SQLiteCursorStore:
    """Cursors in an SQLite database (WAL): safe for several processes."""

    def __init__(self, path: Union[str, os.PathLike[str]]) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, cursor TEXT NOT NULL)"
        )

    def load(self, name: str) -> Optional[str]:
        with self._lock:
            row = self._conn.execute(
                "SELECT cursor FROM cursors WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else str(row[0])

    def save(self, name: str, cursor: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO cursors (name, cursor) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET cursor = excluded.cursor",
                (name, cursor),
            )

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()
