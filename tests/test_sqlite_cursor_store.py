"""SQLiteCursorStore specifics: its settings, fork safety, and stores from before leases.

The behaviours every store shares are in tests/test_cursor_stores.py.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from agentstream.cursors import SQLiteCursorStore
from agentstream.errors import LeaseLostError

from .test_file_cursor_store import run_in_fork


def test_wal_and_busy_timeout(tmp_path: Path) -> None:
    store = SQLiteCursorStore(tmp_path / "c.sqlite3")
    try:
        conn = store._db.connection
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == store.busy_timeout_ms
    finally:
        store.close()


def test_opens_a_database_from_before_leases(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE cursors (name TEXT PRIMARY KEY, cursor TEXT NOT NULL)")
        conn.execute("INSERT INTO cursors VALUES ('orders', 'evt_9')")
    conn.close()
    store = SQLiteCursorStore(path)
    try:
        assert store.load("orders") == "evt_9"
        token = store.acquire("orders", "a", 30)
        assert token == 1
        store.save_fenced("orders", "evt_10", token)
        assert store.load("orders") == "evt_10"
    finally:
        store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_uses_its_own_connection(tmp_path: Path) -> None:
    store = SQLiteCursorStore(tmp_path / "c.sqlite3")
    try:
        token = store.acquire("orders", "parent", 30)
        assert token is not None
        store.save_fenced("orders", "evt_1", token)

        def child() -> int:
            if store.load("orders") != "evt_1":
                return 4
            if store.acquire("orders", "child", 30) is not None:
                return 5  # the parent's lease is live: refused
            store.release("orders", "parent", token)  # the parent's lease, given up
            child_token = store.acquire("orders", "child", 30)
            if child_token != token + 1:
                return 6
            store.save_fenced("orders", "evt_2", child_token)
            return 0

        assert run_in_fork(child) == 0
        assert store.load("orders") == "evt_2"
        with pytest.raises(LeaseLostError):
            store.save_fenced("orders", "evt_0", token)
        holder = store.lease_holder("orders")
        assert holder is not None
        assert holder[:2] == ("child", token + 1)
    finally:
        store.close()
