"""Every dedup store through the same behaviours: claims, expiry, races between
threads and between processes, and handled once through a DeduplicatingRegistry.

Memory, SQLite, a real Redis and the Django ORM (the test project's database,
with real transactions), as tests/test_cursor_stores.py runs the cursor stores.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import redis

from agentstream import Registry
from agentstream.models import TaskEvent, parse_event
from agentstream.webhooks import (
    Claim,
    DeduplicatingRegistry,
    DedupStore,
    MemoryDedupStore,
    Outcome,
    RedisDedupStore,
    SQLiteDedupStore,
)

from .child_output import ask, read_line, start_children, stop_children
from .redis_server import RedisServers
from .webhook_fixtures import Recorder, body_of, envelope


@dataclass
class DedupCase:
    """One dedup store under test: ``open()`` a new store object over the same
    data (as another process would); ``child_spec`` opens it in
    tests/store_child.py (None: one process only)."""

    open: Callable[[], DedupStore]
    persistent: bool = True
    child_spec: Optional[dict[str, Any]] = None
    opened: list[Any] = field(default_factory=list)

    def new_store(self) -> DedupStore:
        store = self.open()
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            close = getattr(store, "close", None)
            if close is not None:
                close()


def memory_case(request: pytest.FixtureRequest) -> DedupCase:
    shared = MemoryDedupStore()
    return DedupCase(lambda: shared, persistent=False)


def sqlite_case(request: pytest.FixtureRequest) -> DedupCase:
    path = request.getfixturevalue("tmp_path") / "app.sqlite3"
    spec = {"kind": "sqlite", "path": str(path), "dedup": True}
    return DedupCase(lambda: SQLiteDedupStore(path), child_spec=spec)


def redis_case(request: pytest.FixtureRequest) -> DedupCase:
    server = request.getfixturevalue("redis_server")
    prefix = f"dedup-{uuid.uuid4().hex[:12]}:"  # one session server, kept apart by prefix
    spec = {"kind": "redis", "url": server.url, "prefix": prefix, "dedup": True}
    return DedupCase(lambda: RedisDedupStore(server.url, prefix=prefix), child_spec=spec)


def django_case(request: pytest.FixtureRequest) -> DedupCase:
    # DjangoDedupStore in the test project's database (tests/django_project), with
    # real transactions (the django_db mark): each thread and child has its own connection.
    from django.db import connection

    from agentstream.contrib.django.store import DjangoDedupStore

    spec = {"kind": "django", "db": str(connection.settings_dict["NAME"]), "dedup": True}
    return DedupCase(DjangoDedupStore, child_spec=spec)


CASES: dict[str, tuple[Callable[[pytest.FixtureRequest], DedupCase], tuple[Any, ...]]] = {
    "memory": (memory_case, ()),
    "sqlite": (sqlite_case, ()),
    "redis": (redis_case, ()),
}

try:
    from .django_project import setup as setup_django
except ImportError:  # Django is not installed: run the other stores
    pass
else:
    setup_django()
    CASES["django"] = (django_case, (pytest.mark.django_db(transaction=True),))


def _case(request: pytest.FixtureRequest) -> Iterator[DedupCase]:
    made = CASES[request.param][0](request)
    try:
        yield made
    finally:
        made.close_all()


def params(*, shared_only: bool = False) -> list[Any]:
    return [
        pytest.param(kind, marks=marks)
        for kind, (_, marks) in CASES.items()
        if not (shared_only and kind == "memory")
    ]


@pytest.fixture(params=params())
def case(request: pytest.FixtureRequest) -> Iterator[DedupCase]:
    """Each dedup store."""
    yield from _case(request)


@pytest.fixture(params=params(shared_only=True))
def shared_case(request: pytest.FixtureRequest) -> Iterator[DedupCase]:
    """Each dedup store that several processes share."""
    yield from _case(request)


@pytest.fixture
def store(case: DedupCase) -> DedupStore:
    return case.new_store()


def test_is_a_dedup_store(store: DedupStore) -> None:
    assert isinstance(store, DedupStore)


def test_a_claim_is_held_then_handled_or_released(store: DedupStore) -> None:
    assert store.claim("evt_1", 30) is Claim.CLAIMED
    assert store.claim("evt_1", 30) is Claim.IN_PROGRESS
    store.release("evt_1")
    assert store.claim("evt_1", 30) is Claim.CLAIMED
    store.complete("evt_1", 30)
    assert store.claim("evt_1", 30) is Claim.HANDLED
    store.release("evt_1")  # a handled id is not released
    assert store.claim("evt_1", 30) is Claim.HANDLED
    assert store.claim("evt_2", 30) is Claim.CLAIMED
    store.release("evt_never_claimed")  # a no-op


def test_complete_without_a_claim_records_it_handled(store: DedupStore) -> None:
    # A claim that expired (and was swept) while its handlers ran still completes.
    store.complete("evt_late", 30)
    assert store.claim("evt_late", 30) is Claim.HANDLED


def test_claims_and_handled_ids_expire(store: DedupStore) -> None:
    assert store.claim("evt_1", 0.05) is Claim.CLAIMED
    assert store.claim("evt_2", 30) is Claim.CLAIMED
    store.complete("evt_2", 0.05)
    pause = threading.Event()
    deadline = time.monotonic() + 5
    while store.claim("evt_1", 30) is not Claim.CLAIMED and time.monotonic() < deadline:
        pause.wait(0.01)
    while store.claim("evt_2", 30) is not Claim.CLAIMED and time.monotonic() < deadline:
        pause.wait(0.01)
    assert time.monotonic() < deadline, "claims did not expire"
    assert store.claim("evt_1", 30) is Claim.IN_PROGRESS  # claimed again, and held


def test_handled_ids_outlive_the_store_object(case: DedupCase) -> None:
    first = case.new_store()
    assert first.claim("evt_1", 30) is Claim.CLAIMED
    first.complete("evt_1", 30)
    assert first.claim("evt_2", 30) is Claim.CLAIMED
    again = case.new_store()  # another process would open it the same way
    assert again.claim("evt_1", 30) is Claim.HANDLED
    assert again.claim("evt_2", 30) is Claim.IN_PROGRESS


def test_concurrent_claims_from_threads_grant_one(store: DedupStore) -> None:
    results: list[Claim] = []
    lock = threading.Lock()
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            start.wait(5)
            outcome = store.claim("evt_race", 30)
            with lock:
                results.append(outcome)
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_thread_connection()

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors, errors
    assert sorted(results) == sorted([Claim.CLAIMED] + [Claim.IN_PROGRESS] * 7)


def close_thread_connection() -> None:
    """A thread's own Django connection is closed by it (none leaks past the test)."""
    if "django" in sys.modules and "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


def test_concurrent_claims_from_processes_grant_one(shared_case: DedupCase) -> None:
    assert shared_case.child_spec is not None
    children = start_children(shared_case.child_spec, 3)
    try:
        # Every request is sent before any answer is read: the claims race in the store.
        for child in children:
            assert child.stdin is not None
            child.stdin.write(json.dumps(["claim", "evt_p", 30]) + "\n")
            child.stdin.flush()
        answers = []
        for child in children:
            assert child.stdout is not None
            answers.append(json.loads(read_line(child.stdout)))
        assert sorted(answers) == ["claimed", "in_progress", "in_progress"], answers
        winner = children[answers.index("claimed")]
        assert ask(winner, "complete", "evt_p", 30) == "ok"
        assert shared_case.new_store().claim("evt_p", 30) is Claim.HANDLED
    finally:
        stop_children(children)


def chunk(event_id: str) -> TaskEvent:
    return parse_event(body_of(envelope(event_id)).decode())


def test_a_deduplicating_registry_over_each_store_handles_an_event_once(
    case: DedupCase,
) -> None:
    recorder = Recorder()
    inner = Registry()
    inner.add(recorder)
    # Two registries over the store's data, as the web process and the listener.
    first = DeduplicatingRegistry(case.new_store(), inner)
    second = DeduplicatingRegistry(case.new_store(), inner)
    recorder.fail = lambda event: event.id == "evt_2" and recorder.calls[event.id] == 1
    assert first.dispatch_once(chunk("evt_1")).outcome is Outcome.HANDLED
    assert second.dispatch_once(chunk("evt_1")).outcome is Outcome.DUPLICATE
    assert second.dispatch(chunk("evt_1")).handled == 0
    assert first.dispatch_once(chunk("evt_2")).outcome is Outcome.FAILED  # released
    assert second.dispatch_once(chunk("evt_2")).outcome is Outcome.HANDLED
    assert first.dispatch_once(chunk("evt_2")).outcome is Outcome.DUPLICATE
    assert recorder.calls == {"evt_1": 1, "evt_2": 2}  # evt_2: once failed, once handled


# -- store specifics ---------------------------------------------------------------


def test_the_sqlite_store_shares_the_cursor_stores_database(tmp_path: Path) -> None:
    from agentstream.cursors import SQLiteCursorStore

    path = tmp_path / "app.sqlite3"
    cursors = SQLiteCursorStore(path)
    dedup = SQLiteDedupStore(path)
    cursors.save("default", "evt_9")
    assert dedup.claim("evt_9", 30) is Claim.CLAIMED
    dedup.complete("evt_9", 30)
    assert cursors.load("default") == "evt_9"
    for opened in (dedup, cursors):
        opened.close()


def test_the_redis_store_password_never_shows(redis_servers: RedisServers) -> None:
    server = redis_servers.start(password="s3cr3t-pass")
    store = RedisDedupStore(server.url.replace("s3cr3t-pass", "wrong-pass"))
    assert "s3cr3t" not in repr(store)
    assert "wrong-pass" not in repr(store)
    with pytest.raises(redis.AuthenticationError) as info:
        store.claim("evt_1", 30)
    assert "wrong-pass" not in str(info.value)
    store.close()
    good = RedisDedupStore(server.url)
    assert good.claim("evt_1", 30) is Claim.CLAIMED
    good.close()
