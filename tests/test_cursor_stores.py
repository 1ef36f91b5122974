"""Every cursor store through the same behaviours: cursors, leases, fencing, races.

The stores come from tests/cursor_store_cases.py (add one there to run it
through all of this). Leases use short TTLs; waits poll the real condition
with a deadline.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from agentstream.cursors import CursorStore, LeaseStore
from agentstream.errors import LeaseLostError

from .child_output import ask, read_line, start_children, stop_children
from .cursor_store_cases import CASES, StoreCase
from .server_fixtures import wait_until

SHORT_TTL = 0.2
LONG_TTL = 30.0


def _case(request: pytest.FixtureRequest) -> Iterator[StoreCase]:
    store_case = CASES[request.param].make(request)
    try:
        yield store_case
    finally:
        store_case.close_all()


@pytest.fixture(params=[what.param(kind) for kind, what in CASES.items()])
def case(request: pytest.FixtureRequest) -> Iterator[StoreCase]:
    """Each store."""
    yield from _case(request)


@pytest.fixture(params=[what.param(kind) for kind, what in CASES.items() if what.persistent])
def persistent_case(request: pytest.FixtureRequest) -> Iterator[StoreCase]:
    """Each store whose data outlives the store object."""
    yield from _case(request)


@pytest.fixture(params=[what.param(kind) for kind, what in CASES.items() if what.processes])
def process_case(request: pytest.FixtureRequest) -> Iterator[StoreCase]:
    """Each store that several processes share."""
    yield from _case(request)


@pytest.fixture
def store(case: StoreCase) -> LeaseStore:
    return case.new_store()


def expired(store: LeaseStore, name: str) -> bool:
    return store.lease_holder(name) is None


# ---------------------------------------------------------------- cursors


def test_is_a_lease_store(store: LeaseStore) -> None:
    assert isinstance(store, CursorStore)
    assert isinstance(store, LeaseStore)


def test_load_save_roundtrip(store: LeaseStore) -> None:
    assert store.load("orders") is None
    store.save("orders", "evt_1")
    store.save("billing", "evt_9")
    store.save("orders", "evt_2")
    assert store.load("orders") == "evt_2"
    assert store.load("billing") == "evt_9"
    assert store.load("other") is None


def test_cursor_and_tokens_outlive_the_store_object(persistent_case: StoreCase) -> None:
    case = persistent_case
    first = case.new_store()
    token = first.acquire("orders", "a", LONG_TTL)
    assert token is not None
    first.save_fenced("orders", "evt_5", token)
    first.release("orders", "a", token)
    case.close(first)
    second = case.new_store()
    assert second.load("orders") == "evt_5"
    again = second.acquire("orders", "b", LONG_TTL)
    assert again is not None
    assert again > token


# ---------------------------------------------------------------- leases


def test_acquire_renew_release(store: LeaseStore) -> None:
    token = store.acquire("orders", "a", LONG_TTL)
    assert isinstance(token, int)
    assert token >= 1
    holder = store.lease_holder("orders")
    assert holder is not None
    assert holder[:2] == ("a", token)
    assert 0 < holder[2] <= LONG_TTL
    # Acquiring again as the same holder extends the lease, same token.
    assert store.acquire("orders", "a", LONG_TTL) == token
    assert store.renew("orders", "a", token, LONG_TTL)
    store.release("orders", "a", token)
    assert store.lease_holder("orders") is None
    assert not store.renew("orders", "a", token, LONG_TTL)


def test_renew_extends_the_lease(store: LeaseStore) -> None:
    token = store.acquire("orders", "a", SHORT_TTL)
    assert token is not None
    assert store.renew("orders", "a", token, LONG_TTL)
    holder = store.lease_holder("orders")
    assert holder is not None
    assert holder[2] > SHORT_TTL


def test_a_second_holder_is_refused_while_the_lease_is_live(store: LeaseStore) -> None:
    token = store.acquire("orders", "a", LONG_TTL)
    assert token is not None
    assert store.acquire("orders", "b", LONG_TTL) is None
    assert not store.renew("orders", "b", token, LONG_TTL)
    store.release("orders", "b", token)  # not b's: a no-op
    holder = store.lease_holder("orders")
    assert holder is not None
    assert holder[:2] == ("a", token)
    # Leases are per name.
    assert store.acquire("billing", "b", LONG_TTL) is not None


def test_renew_with_a_wrong_token_fails(store: LeaseStore) -> None:
    token = store.acquire("orders", "a", LONG_TTL)
    assert token is not None
    assert not store.renew("orders", "a", token + 1, LONG_TTL)
    assert not store.renew("orders", "a", token - 1, LONG_TTL)
    store.release("orders", "a", token - 1)  # a no-op
    assert store.lease_holder("orders") is not None


def test_expiry_then_takeover_with_a_larger_token(store: LeaseStore) -> None:
    old = store.acquire("orders", "a", SHORT_TTL)
    assert old is not None
    store.save_fenced("orders", "evt_1", old)
    assert wait_until(lambda: expired(store, "orders"), timeout=5)
    new = store.acquire("orders", "b", LONG_TTL)
    assert new is not None
    assert new > old
    store.save_fenced("orders", "evt_2", new)
    # The old holder wakes up: it can neither renew nor move the cursor.
    assert not store.renew("orders", "a", old, LONG_TTL)
    with pytest.raises(LeaseLostError) as caught:
        store.save_fenced("orders", "evt_0", old)
    assert store.load("orders") == "evt_2"
    assert caught.value.name == "orders"
    assert (caught.value.token, caught.value.current_token) == (old, new)
    assert "'orders'" in str(caught.value)
    assert f"token {old}" in str(caught.value)
    assert str(new) in str(caught.value)


def test_renew_just_after_expiry_succeeds_when_nobody_took_over(store: LeaseStore) -> None:
    token = store.acquire("orders", "a", SHORT_TTL)
    assert token is not None
    assert wait_until(lambda: expired(store, "orders"), timeout=5)
    assert store.renew("orders", "a", token, LONG_TTL)
    holder = store.lease_holder("orders")
    assert holder is not None
    assert holder[:2] == ("a", token)
    assert store.acquire("orders", "b", LONG_TTL) is None


def test_fenced_save_with_an_old_token_is_refused_and_changes_nothing(
    store: LeaseStore,
) -> None:
    first = store.acquire("orders", "a", LONG_TTL)
    assert first is not None
    store.save_fenced("orders", "evt_1", first)
    store.release("orders", "a", first)
    second = store.acquire("orders", "b", LONG_TTL)
    assert second is not None
    store.save_fenced("orders", "evt_2", second)
    for stale in (first, second - 1, 0, second + 1):
        with pytest.raises(LeaseLostError):
            store.save_fenced("orders", "evt_bad", stale)
    assert store.load("orders") == "evt_2"


def test_fenced_save_before_any_grant_is_refused(store: LeaseStore) -> None:
    with pytest.raises(LeaseLostError) as caught:
        store.save_fenced("orders", "evt_1", 1)
    assert caught.value.current_token is None
    assert store.load("orders") is None


def test_release_then_immediate_takeover(store: LeaseStore) -> None:
    first = store.acquire("orders", "a", LONG_TTL)
    assert first is not None
    store.release("orders", "a", first)
    store.release("orders", "a", first)  # twice: still a no-op
    second = store.acquire("orders", "b", LONG_TTL)
    assert second == first + 1
    # The released holder cannot bring its lease back.
    assert not store.renew("orders", "a", first, LONG_TTL)
    holder = store.lease_holder("orders")
    assert holder is not None
    assert holder[:2] == ("b", second)


# ---------------------------------------------------------------- races


def test_concurrent_acquire_from_threads_exactly_one_wins(store: LeaseStore) -> None:
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: dict[str, Any] = {}

    def contend(holder: str) -> None:
        barrier.wait(5)
        results[holder] = store.acquire("orders", holder, LONG_TTL)

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == threads_count
    winners = {holder: token for holder, token in results.items() if token is not None}
    assert len(winners) == 1, results
    (holder, token), = winners.items()  # fmt: skip
    lease = store.lease_holder("orders")
    assert lease is not None
    assert lease[:2] == (holder, token)


def test_leases_exclude_each_other_under_contention(store: LeaseStore) -> None:
    """Threads grab, save under and release the lease in a loop: never two holders
    at once, every grant a new, larger token, and every fenced save of a holder
    lands (nobody else was granted in between)."""
    threads_count, rounds = 4, 15
    inside: list[str] = []
    overlaps: list[list[str]] = []
    grants: list[int] = []
    guard = threading.Lock()
    errors: list[BaseException] = []

    def work(holder: str) -> None:
        try:
            done = 0
            while done < rounds:
                token = store.acquire("orders", holder, LONG_TTL)
                if token is None:
                    continue
                with guard:
                    inside.append(holder)
                    if len(inside) > 1:
                        overlaps.append(list(inside))
                    grants.append(token)
                store.save_fenced("orders", f"{holder}-{done}", token)
                with guard:
                    inside.remove(holder)
                store.release("orders", holder, token)
                done += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"h{i}",)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert not overlaps
    assert len(grants) == threads_count * rounds
    assert grants == sorted(grants)
    assert len(set(grants)) == len(grants)


def test_concurrent_acquire_from_processes_exactly_one_wins(process_case: StoreCase) -> None:
    assert process_case.child_spec is not None
    children = start_children(process_case.child_spec, 3)
    try:
        # All are ready and waiting on stdin: send every request before
        # reading any answer, so that the acquires race in the store.
        for index, child in enumerate(children):
            assert child.stdin is not None
            child.stdin.write(json.dumps(["acquire", "orders", f"p{index}", LONG_TTL]) + "\n")
        for child in children:
            assert child.stdin is not None
            child.stdin.flush()
        answers = []
        for child in children:
            assert child.stdout is not None
            answers.append(json.loads(read_line(child.stdout)))
        winners = [(index, token) for index, token in enumerate(answers) if token is not None]
        assert len(winners) == 1, answers
        (index, token), = winners  # fmt: skip
        # Only the winner's fenced save lands; a loser guessing the token of an
        # older grant is refused.
        assert ask(children[index], "save_fenced", "orders", "evt_7", token) == "ok"
        loser = children[(index + 1) % len(children)]
        assert ask(loser, "save_fenced", "orders", "evt_0", token - 1) == "lost"
        assert ask(loser, "load", "orders") == "evt_7"
    finally:
        stop_children(children)
