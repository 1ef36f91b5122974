"""Which worker handles what: :class:`TaskScheduler`.

Pure bookkeeping, no threads and no locks (the listener holds its lock
around every call). Each task has a mailbox of events in stream order; a
task with events and no worker on it is *ready*; a worker takes a ready
task's waiting events as one batch and gives the task back when it is done.
So a task's events are handled in order and by one worker at a time, and a
worker stuck in one task's handler holds only that task: the others go to
the free workers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Callable, Generic, Optional, Protocol, TypeVar

__all__ = ["TaskScheduler"]


class Sequenced(Protocol):
    """An item with its place in the stream (a :class:`~agentstream.TaskEvent`)."""

    @property
    def sequence(self) -> int: ...


T = TypeVar("T", bound=Sequenced)
TaskKey = Optional[str]


class TaskScheduler(Generic[T]):
    """Per-task mailboxes and the queue of tasks ready for a worker."""

    def __init__(self) -> None:
        self._mailboxes: dict[TaskKey, deque[T]] = {}
        self._busy: set[TaskKey] = set()
        self._ready: deque[TaskKey] = deque()

    def put(self, task: TaskKey, item: T) -> None:
        """Queue ``item`` after the task's other items."""
        mailbox = self._mailboxes.get(task)
        if mailbox is None:
            mailbox = self._mailboxes[task] = deque()
            if task not in self._busy:
                self._ready.append(task)
        mailbox.append(item)

    def take(
        self, first_needed: Optional[Callable[[int], bool]] = None
    ) -> Optional[tuple[TaskKey, list[T]]]:
        """A ready task and all its waiting items, now in a worker's hands;
        None if no task is ready. Give it back with :meth:`done`.

        With ``first_needed`` (a stopping listener), only a task whose first
        item's ``sequence`` it accepts is taken; the others stay ready.
        """
        ready = self._ready
        if first_needed is None:
            if not ready:
                return None
            task = ready.popleft()
        else:
            for task in ready:
                if first_needed(self._mailboxes[task][0].sequence):
                    break
            else:
                return None
            ready.remove(task)
        items = list(self._mailboxes.pop(task))
        self._busy.add(task)
        return task, items

    def done(self, task: TaskKey, unhandled: Sequence[T] = ()) -> None:
        """The worker finished with the task: ``unhandled`` items of its batch
        (it stopped before them) go back to the front, in order, and the task
        is ready again if it has items."""
        self._busy.discard(task)
        if unhandled:
            mailbox = self._mailboxes.setdefault(task, deque())
            mailbox.extendleft(reversed(unhandled))
        if task in self._mailboxes:
            self._ready.append(task)

    @property
    def busy(self) -> bool:
        """True while some task is in a worker's hands."""
        return bool(self._busy)

    @property
    def waiting(self) -> int:
        """Items queued and not yet taken."""
        return sum(len(mailbox) for mailbox in self._mailboxes.values())

    @property
    def idle(self) -> bool:
        """True when nothing waits and no task is in a worker's hands."""
        return not self._mailboxes and not self._busy
