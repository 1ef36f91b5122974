"""DjangoCursorStore: the lease protocol of docs (STORES) in a real database.

The same behaviours as every other store's (tests/test_cursor_stores.py),
against the test project's SQLite database through the ORM; threads stand in
for processes (each has its own database connection).
"""

from __future__ import annotations

import threading

import pytest

from .django_project import setup

setup()

from agentstream.contrib.django.models import ListenerCursor  # noqa: E402
from agentstream.contrib.django.store import (  # noqa: E402
    DjangoCursorStore,
    LeaseLostError,
    StoreResetError,
)

from .server_fixtures import wait_until  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def store() -> DjangoCursorStore:
    return DjangoCursorStore()


def test_cursors_are_saved_and_loaded_per_name(store: DjangoCursorStore) -> None:
    assert store.load("a") is None
    store.save("a", "evt_1")
    store.save("b", "evt_9")
    store.save("a", "evt_2")
    assert store.load("a") == "evt_2"
    assert store.load("b") == "evt_9"
    assert DjangoCursorStore().load("a") == "evt_2"  # in the database, not the object


def test_a_lease_has_one_holder_until_it_is_released(store: DjangoCursorStore) -> None:
    token = store.acquire("n", "h1", ttl=30)
    assert token is not None
    assert token >= 1
    assert store.acquire("n", "h2", ttl=30) is None
    assert store.acquire("n", "h1", ttl=30) == token  # the holder again: extended, same token
    holder = store.lease_holder("n")
    assert holder is not None
    assert holder[:2] == ("h1", token)
    assert 29 < holder[2] <= 30
    store.release("n", "h1", token)
    assert store.lease_holder("n") is None
    second = store.acquire("n", "h2", ttl=30)
    assert second is not None
    assert second > token  # the counter survives a release


def test_an_expired_lease_goes_to_the_next_holder_with_a_larger_token(
    store: DjangoCursorStore,
) -> None:
    first = store.acquire("n", "h1", ttl=0.2)
    assert first is not None
    assert store.acquire("n", "h2", ttl=30) is None
    assert wait_until(lambda: store.lease_holder("n") is None, timeout=5)
    second = store.acquire("n", "h2", ttl=30)
    assert second is not None
    assert second > first
    assert not store.renew("n", "h1", first, ttl=30)  # the old holder must stop


def test_renew_extends_only_the_holders_own_lease(store: DjangoCursorStore) -> None:
    token = store.acquire("n", "h1", ttl=0.2)
    assert token is not None
    assert not store.renew("n", "h2", token, ttl=30)
    assert not store.renew("n", "h1", token + 1, ttl=30)
    assert wait_until(lambda: store.lease_holder("n") is None, timeout=5)
    # Expired a moment ago, but nobody was granted it since: renewing still works.
    assert store.renew("n", "h1", token, ttl=30)
    assert store.lease_holder("n") is not None
    store.release("n", "h1", token)
    assert not store.renew("n", "h1", token, ttl=30)


def test_release_by_someone_else_changes_nothing(store: DjangoCursorStore) -> None:
    token = store.acquire("n", "h1", ttl=30)
    assert token is not None
    store.release("n", "h2", token)
    store.release("n", "h1", token + 1)
    holder = store.lease_holder("n")
    assert holder is not None
    assert holder[:2] == ("h1", token)


def test_a_fenced_save_with_an_old_token_is_refused_and_changes_nothing(
    store: DjangoCursorStore,
) -> None:
    old = store.acquire("n", "h1", ttl=0.2)
    assert old is not None
    store.save_fenced("n", "evt_1", old)
    assert store.load("n") == "evt_1"
    assert wait_until(lambda: store.lease_holder("n") is None, timeout=5)
    new = store.acquire("n", "h2", ttl=30)
    assert new is not None
    store.save_fenced("n", "evt_5", new)
    with pytest.raises(LeaseLostError) as caught:
        store.save_fenced("n", "evt_2", old)  # the paused holder wakes up
    assert caught.value.name == "n"
    assert str(old) in str(caught.value)
    assert str(new) in str(caught.value)
    assert store.load("n") == "evt_5"


def test_tokens_only_grow_across_store_objects(store: DjangoCursorStore) -> None:
    tokens = []
    for holder in ("h1", "h2", "h3"):
        fresh = DjangoCursorStore()  # as a restarted process would
        token = fresh.acquire("n", holder, ttl=30)
        assert token is not None
        tokens.append(token)
        fresh.release("n", holder, token)
    assert tokens == sorted(set(tokens))


def test_a_store_whose_data_was_lost_raises_instead_of_reusing_tokens(
    store: DjangoCursorStore,
) -> None:
    token = store.acquire("n", "h1", ttl=30)
    assert token is not None
    store.release("n", "h1", token)
    ListenerCursor.objects.all().delete()  # the table was emptied (a restore, a flush)
    with pytest.raises(StoreResetError) as caught:
        store.acquire("n", "h1", ttl=30)
    assert "lost its data" in str(caught.value)


def test_racing_holders_get_exactly_one_lease(store: DjangoCursorStore) -> None:
    holders = 8
    barrier = threading.Barrier(holders)
    granted: list[tuple[str, int]] = []
    failures: list[BaseException] = []

    def contend(holder: str) -> None:
        from django.db import connection

        try:
            mine = DjangoCursorStore()
            barrier.wait(5)
            token = mine.acquire("race", holder, ttl=30)
            if token is not None:
                granted.append((holder, token))
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(holders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures
    assert len(granted) == 1, granted
    holder = store.lease_holder("race")
    assert holder is not None
    assert holder[:2] == granted[0]


def test_fenced_saves_racing_a_takeover_never_move_the_new_holders_cursor(
    store: DjangoCursorStore,
) -> None:
    old = store.acquire("n", "h1", ttl=0.2)
    assert old is not None
    assert wait_until(lambda: store.lease_holder("n") is None, timeout=5)
    new = store.acquire("n", "h2", ttl=30)
    assert new is not None
    refused: list[int] = []

    def stale_saves() -> None:
        from django.db import connection

        mine = DjangoCursorStore()
        try:
            for i in range(20):
                try:
                    mine.save_fenced("n", f"stale_{i}", old)
                except LeaseLostError:
                    refused.append(i)
        finally:
            connection.close()

    thread = threading.Thread(target=stale_saves)
    thread.start()
    for i in range(20):
        store.save_fenced("n", f"evt_{i}", new)
    thread.join(30)
    assert len(refused) == 20
    assert store.load("n") == "evt_19"
