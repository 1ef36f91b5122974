"""CursorTracker: how far the cursor may advance, without threads."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from agentstream._tracking import CursorTracker


def test_the_cursor_moves_over_the_completed_run_only() -> None:
    tracker = CursorTracker(cursor="evt_0")
    for sequence in (1, 2, 3):
        tracker.begin(sequence, f"evt_{sequence}")
    assert tracker.outstanding == 3
    assert not tracker.complete(2)  # 1 is still running
    assert (tracker.cursor, tracker.sequence) == ("evt_0", -1)
    assert tracker.highest_done == 2
    assert tracker.complete(1)  # 1 and 2 are done: the cursor jumps to 2
    assert (tracker.cursor, tracker.sequence) == ("evt_2", 2)
    assert tracker.outstanding == 1
    assert tracker.complete(3)
    assert (tracker.cursor, tracker.sequence, tracker.outstanding) == ("evt_3", 3, 0)


def test_needed_is_what_the_cursor_must_pass_to_cover_every_completed_event() -> None:
    tracker = CursorTracker()
    for sequence in range(1, 6):
        tracker.begin(sequence, f"evt_{sequence}")
    tracker.complete(4)
    assert [s for s in range(1, 6) if tracker.needed(s)] == [1, 2, 3]
    assert not tracker.needed(5)  # beyond every completed event: may be left for later


def test_complete_next_is_begin_and_complete_in_stream_order() -> None:
    tracker = CursorTracker()
    tracker.complete_next(7, "evt_7")
    assert (tracker.cursor, tracker.sequence, tracker.highest_done) == ("evt_7", 7, 7)
    assert tracker.outstanding == 0


@given(st.integers(min_value=1, max_value=60), st.randoms(use_true_random=False))
def test_in_any_completion_order_the_cursor_is_the_end_of_the_completed_prefix(
    count: int, rand: random.Random
) -> None:
    tracker = CursorTracker()
    for sequence in range(count):
        tracker.begin(sequence, f"evt_{sequence}")
    order = list(range(count))
    rand.shuffle(order)
    done: set[int] = set()
    for sequence in order:
        tracker.complete(sequence)
        done.add(sequence)
        prefix = 0
        while prefix in done:
            prefix += 1
        assert tracker.sequence == prefix - 1
        assert tracker.outstanding == count - prefix
        assert tracker.cursor == (f"evt_{prefix - 1}" if prefix else None)
