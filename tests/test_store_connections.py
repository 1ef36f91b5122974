"""The connection helpers both kinds of store open: agentstream/_sqlite.py (one
fork-safe SQLite connection) and agentstream/_redis.py (a redis-py client that
never shows its password), and that the cursor and the dedup stores use them."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from agentstream._redis import RedactedRedis, redacted_url, secrets_of_url
from agentstream._sqlite import SharedConnection
from agentstream.cursors import RedisCursorStore, SQLiteCursorStore
from agentstream.webhooks import Claim, RedisDedupStore, SQLiteDedupStore

from .redis_server import RedisServer
from .server_fixtures import wait_until

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def wait_child(pid: int, timeout: float = 20) -> int:
    """The exit code of the forked child ``pid``; killed (and -9) if it hangs."""
    found: list[int] = []

    def exited() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            found.append(os.waitstatus_to_exitcode(status))
        return bool(done)

    if not wait_until(exited, timeout=timeout):
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return -9
    return found[0]


@needs_fork
def test_a_child_forked_while_a_thread_is_inside_a_transaction_fails_fast_not_forever(
    tmp_path: Path,
) -> None:
    # A thread of the parent holds the connection's lock, inside a transaction,
    # at fork() time. The child must not wait forever on that lock (nobody there
    # would release it): it opens its own connection and lock. It cannot write
    # (SQLite's in-process lock state, copied by fork(), says the inherited
    # connection holds the write lock, and it never will release it there), so
    # it gets "database is locked" after the busy timeout.
    shared = SharedConnection(tmp_path / "x.sqlite3", busy_timeout_ms=200)
    with shared.transaction() as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
    parents = shared.connection
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with shared.transaction() as conn:
            conn.execute("INSERT INTO t VALUES ('parent')")
            inside.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            with shared.transaction() as conn:
                conn.execute("INSERT INTO t VALUES ('child')")
            code = 3
        except sqlite3.OperationalError as exc:
            code = 0 if "locked" in str(exc) and shared.connection is not parents else 4
        finally:
            os._exit(code)
    try:
        assert wait_child(pid) == 0
    finally:
        leave.set()
        holder.join(10)
    with shared.transaction() as conn:  # the parent's connection is unharmed
        conn.execute("INSERT INTO t VALUES ('after')")
        rows = sorted(r[0] for r in conn.execute("SELECT v FROM t"))
    assert rows == ["after", "parent"]
    assert shared.connection is parents
    shared.close()


def test_a_transaction_rolls_back_when_its_block_raises(tmp_path: Path) -> None:
    shared = SharedConnection(tmp_path / "x.sqlite3")
    with shared.transaction() as conn:
        conn.execute("CREATE TABLE t (v TEXT)")

    def insert_then_fail() -> None:
        with shared.transaction() as conn:
            conn.execute("INSERT INTO t VALUES ('lost')")
            raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        insert_then_fail()
    with shared.transaction() as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    assert shared.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    shared.close()
    with pytest.raises(sqlite3.ProgrammingError):
        shared.connection.execute("SELECT 1")


@pytest.mark.parametrize("kind", ["cursor", "dedup"])
def test_both_sqlite_stores_open_the_shared_connection(tmp_path: Path, kind: str) -> None:
    store: Any = (SQLiteCursorStore if kind == "cursor" else SQLiteDedupStore)(tmp_path / "a.db")
    assert isinstance(store._db, SharedConnection)
    busy = store._db.connection.execute("PRAGMA busy_timeout").fetchone()[0]
    assert busy == store.busy_timeout_ms
    store.close()


@needs_fork
def test_the_dedup_store_in_a_forked_child_claims_in_the_same_database(tmp_path: Path) -> None:
    store = SQLiteDedupStore(tmp_path / "app.sqlite3")
    assert store.claim("evt_parent", 30) is Claim.CLAIMED
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            seen = store.claim("evt_parent", 30)
            got = store.claim("evt_child", 30)
            store.complete("evt_child", 30)
            code = 0 if (seen, got) == (Claim.IN_PROGRESS, Claim.CLAIMED) else 3
        finally:
            os._exit(code)
    assert wait_child(pid) == 0
    assert store.claim("evt_child", 30) is Claim.HANDLED
    store.close()


# -- Redis ------------------------------------------------------------------------


def test_the_password_of_a_url_is_found_and_redacted() -> None:
    url = "redis://user:p4ss@127.0.0.1:6379/0?password=q5ss"
    assert secrets_of_url(url) == ("p4ss", "q5ss")
    shown = redacted_url(url, secrets_of_url(url))
    assert "p4ss" not in shown
    assert "q5ss" not in shown
    assert shown.startswith("redis://user:<redacted>@127.0.0.1:6379/0")


@pytest.mark.parametrize("store_class", [RedisCursorStore, RedisDedupStore])
def test_both_redis_stores_open_the_redacting_client(
    redis_server: RedisServer, store_class: Any
) -> None:
    url = redis_server.url.replace("redis://", "redis://:not-the-password@")
    store = store_class(url, prefix="conn-test:")
    assert isinstance(store._connection, RedactedRedis)
    assert "not-the-password" not in repr(store)
    assert "not-the-password" not in repr(store._connection)
    store.close()
