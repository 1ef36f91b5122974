"""The stores that tests/test_cursor_stores.py runs through the same behaviours.

To add a store, write a function that takes the test's ``request`` and returns
a :class:`StoreCase`, and add it to ``CASES`` with what it can do (leave it
out of ``CASES`` when what it needs is not importable).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pytest

from agentstream.cursors import (
    FileCursorStore,
    LeaseStore,
    MemoryCursorStore,
    RedisCursorStore,
    SQLiteCursorStore,
)


@dataclass
class StoreCase:
    """One store under test.

    ``open()`` makes a new store object over the same data, as a restarted
    process would (after ``close(store)`` of the old one); ``child_spec`` lets
    tests/store_child.py open the same store in another process (None: the
    store serves one process only).
    """

    id: str
    open: Callable[[], LeaseStore]
    close: Callable[[Any], None] = field(default=lambda store: None)
    child_spec: Optional[dict[str, Any]] = None
    opened: list[Any] = field(default_factory=list)

    def new_store(self) -> LeaseStore:
        store = self.open()
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            self.close(store)


def _close(store: Any) -> None:
    store.close()


def memory_case(request: pytest.FixtureRequest) -> StoreCase:
    shared = MemoryCursorStore()
    return StoreCase("memory", open=lambda: shared)


def file_case(request: pytest.FixtureRequest) -> StoreCase:
    path = request.getfixturevalue("tmp_path") / "cursors.json"
    return StoreCase("file", open=lambda: FileCursorStore(path), close=_close)


def sqlite_case(request: pytest.FixtureRequest) -> StoreCase:
    path = request.getfixturevalue("tmp_path") / "cursors.sqlite3"
    return StoreCase(
        "sqlite",
        open=lambda: SQLiteCursorStore(path),
        close=_close,
        child_spec={"kind": "sqlite", "path": str(path)},
    )


def redis_case(request: pytest.FixtureRequest) -> StoreCase:
    server = request.getfixturevalue("redis_server")
    prefix = f"test-{uuid.uuid4().hex[:12]}:"  # one session server, kept apart by prefix
    return StoreCase(
        "redis",
        open=lambda: RedisCursorStore(server.url, prefix=prefix),
        close=_close,
        child_spec={"kind": "redis", "url": server.url, "prefix": prefix},
    )


@dataclass(frozen=True)
class CaseKind:
    """A store's factory and what it can do: ``persistent`` (its data outlives
    the store object), ``processes`` (several processes share it)."""

    make: Callable[[pytest.FixtureRequest], StoreCase]
    persistent: bool = True
    processes: bool = True
    marks: tuple[Any, ...] = ()

    def param(self, kind: str) -> Any:
        """``kind`` as a fixture parameter, with this store's marks."""
        return pytest.param(kind, marks=self.marks)


def django_case(request: pytest.FixtureRequest) -> StoreCase:
    # DjangoCursorStore in the test project's database (tests/django_project),
    # with real transactions (the django_db mark): each thread and each child
    # has its own connection.
    from django.db import connection

    from agentstream.contrib.django.store import DjangoCursorStore

    return StoreCase(
        "django",
        open=DjangoCursorStore,
        child_spec={"kind": "django", "db": str(connection.settings_dict["NAME"])},
    )


CASES: dict[str, CaseKind] = {
    "memory": CaseKind(memory_case, persistent=False, processes=False),
    "file": CaseKind(file_case, processes=False),
    "sqlite": CaseKind(sqlite_case),
    "redis": CaseKind(redis_case),
}

try:
    from .django_project import setup as setup_django
except ImportError:  # Django is not installed: run the other stores
    pass
else:
    setup_django()
    CASES["django"] = CaseKind(django_case, marks=(pytest.mark.django_db(transaction=True),))
