"""How far a listener's cursor may advance: :class:`CursorTracker`.

Pure bookkeeping, no threads and no locks (the listener holds its lock
around the calls that need one). Events *begin* when they are read and
*complete* when their handlers have all returned; the cursor moves over the
longest run of completed events from the start, so it never passes an event
that is still waiting or running, whatever order the workers finish in.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

__all__ = ["CursorTracker"]


class CursorTracker:
    """The cursor of a listener, and the events read but not yet passed by it.

    ::

        tracker = CursorTracker(cursor="evt_9")
        tracker.begin(10, "evt_10")
        tracker.begin(11, "evt_11")
        tracker.complete(11)          # False: 10 is still running
        tracker.complete(10)          # True: the cursor moves to evt_11
        tracker.cursor, tracker.sequence   # ("evt_11", 11)
    """

    __slots__ = ("_pending", "cursor", "highest_done", "sequence")

    def __init__(self, cursor: Optional[str] = None) -> None:
        self.cursor = cursor
        """The id of the last event of the completed run (where to resume)."""
        self.sequence = -1
        """The sequence of :attr:`cursor`'s event (-1 before the first)."""
        self.highest_done = -1
        """The highest sequence completed so far, in the run or beyond it."""
        self._pending: OrderedDict[int, list[object]] = OrderedDict()  # sequence -> [id, done]

    @property
    def outstanding(self) -> int:
        """Events begun and not yet passed by the cursor (waiting, running, or
        completed beyond one that is not)."""
        return len(self._pending)

    def begin(self, sequence: int, event_id: str) -> None:
        """An event was read and will be handled. Sequences begin in stream order."""
        self._pending[sequence] = [event_id, False]

    def complete(self, sequence: int) -> bool:
        """The event's handlers have all returned. True if the cursor moved."""
        self._pending[sequence][1] = True
        if sequence > self.highest_done:
            self.highest_done = sequence
        pending = self._pending
        advanced = False
        while pending:
            first = next(iter(pending))
            event_id, done = pending[first]
            if not done:
                break
            del pending[first]
            self.cursor, self.sequence = str(event_id), first
            advanced = True
        return advanced

    def complete_next(self, sequence: int, event_id: str) -> None:
        """Begin and complete, in one step, an event that has none outstanding
        before it (the one-worker listener: events complete in stream order)."""
        self.cursor = event_id
        self.sequence = self.highest_done = sequence

    def needed(self, sequence: int) -> bool:
        """Whether the cursor must pass this event before it can cover every
        completed one: True for an event before the highest completed.

        A stopping listener handles only these, so that what it already
        handled is behind its saved cursor and is not handled again.
        """
        return sequence < self.highest_done
