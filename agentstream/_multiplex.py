"""Many ``task.events()`` iterators over one upstream connection.

A :class:`SharedTaskStreams` belongs to one client. Its reader thread owns one
unscoped stream (all of the key's events) and hands each event to the
bounded buffer of every :class:`TaskSubscription` following that event's task.

How an iterator joins without a gap or a duplicate: it first reads its own
task-scoped stream (the *catch-up*), which starts at the task's first event
(or after the iterator's cursor). After each catch-up event it asks to join:

- no shared stream yet: one is opened with ``cursor`` = that event's id, so it
  delivers exactly the events after it; the iterator switches at once;
- a shared stream is open: the subscription is registered (once) at the
  shared reader's position ``P`` (the sequence of the last event it handed
  out); from then on every event of the task above ``P`` goes to the buffer.
  As soon as the catch-up has delivered an event with ``sequence >= P``, the
  buffer holds everything after it: the catch-up is closed and the iterator
  reads the buffer, skipping what it already yielded (by sequence).

A task that stays idle keeps its catch-up connection until its next event
(which then arrives on both, and the switch is exact).

A full buffer (a slow consumer) never blocks the reader and never loses an
event: the subscription stops buffering and is marked *overflowed*; once its
iterator has yielded what the buffer holds, it goes back to a catch-up from its
last event and joins again. The shared stream closes ``linger`` seconds after
its last subscription ends; an error that ends it (retry budget spent, 401...)
is raised in every iterator that is reading from it.

Another thread can end an iterator with an :class:`IteratorStop` passed to
:meth:`SharedTaskStreams.events`: a read blocked on the catch-up connection or
on the buffer wakes at once, the iterator returns and its subscription is
released (the live-page helpers of :mod:`agentstream.contrib` do this when a
browser goes away).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterator
from typing import Optional

from .event_types import EventType
from .models import TaskEvent
from .stream import StreamOpener, StreamOptions, TaskEventStream

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_LINGER",
    "SHARED_HEARTBEAT_SECONDS",
    "IteratorStop",
    "SharedTaskStreams",
    "TaskSubscription",
]

logger = logging.getLogger(__name__)

DEFAULT_BUFFER_SIZE = 1000
"""Events one iterator may have waiting before it falls back to its own catch-up."""

DEFAULT_LINGER = 1.0
"""Seconds the shared connection stays open after its last iterator ends."""

SHARED_HEARTBEAT_SECONDS = 15
"""Heartbeat interval the shared stream asks for (a dead connection is noticed in ~31 s)."""

_FINISHED = EventType.TASK_FINISHED


class TaskSubscription:
    """One iterator's place on the shared stream: its task, its buffer, its state.

    The reader thread calls :meth:`offer`; the iterator's thread calls :meth:`take`.
    """

    def __init__(self, task_id: str, position: int, capacity: int) -> None:
        self.task_id = task_id
        self.position = position  # events above this sequence are buffered
        self._capacity = capacity
        self._events: collections.deque[TaskEvent] = collections.deque()
        self._cond = threading.Condition()
        self.overflowed = False
        self.error: Optional[BaseException] = None
        self.ended = False  # the shared stream ended (error or close)
        self.stopped = False  # its iterator was stopped from another thread

    def offer(self, event: TaskEvent) -> None:
        """Buffer an event (reader thread); never blocks."""
        with self._cond:
            if self.overflowed or event.sequence <= self.position:
                return
            if len(self._events) >= self._capacity:
                self.overflowed = True  # the iterator catches up from its cursor
            else:
                self._events.append(event)
            self._cond.notify()

    def end(self, error: Optional[BaseException]) -> None:
        """The shared stream is over for this subscription (reader thread or close)."""
        with self._cond:
            self.ended = True
            self.error = error
            self._cond.notify()

    def stop(self) -> None:
        """Wake :meth:`take` for good: its iterator is being stopped (any thread)."""
        with self._cond:
            self.stopped = True
            self._cond.notify()

    def take(self) -> Optional[TaskEvent]:
        """The next buffered event, waiting for one. None once the buffer is drained
        and it overflowed or the shared stream was closed: the iterator catches up
        on its own. None at once after :meth:`stop`. Raises the error that ended
        the shared stream."""
        with self._cond:
            while True:
                if self.stopped:
                    return None
                if self._events:
                    return self._events.popleft()
                if self.overflowed:
                    return None
                if self.ended:
                    if self.error is not None:
                        raise self.error
                    return None
                self._cond.wait()

    def buffered(self) -> int:
        """How many events wait in the buffer."""
        with self._cond:
            return len(self._events)


class IteratorStop:
    """Ends one :meth:`SharedTaskStreams.events` iterator from any thread.

    :meth:`set` returns at once: the iterator's catch-up connection is shut
    (a blocked read wakes) and its wait on the shared stream's buffer is
    woken; the iterating thread's ``next()`` then raises ``StopIteration``
    and the subscription is released. Setting it before the iterator starts,
    or after it ended, is harmless.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._stream: Optional[TaskEventStream] = None
        self._subscription: Optional[TaskSubscription] = None

    def set(self) -> None:
        """Stop the iterator (see the class doc)."""
        with self._lock:
            self._set = True
            stream, subscription = self._stream, self._subscription
        if stream is not None:
            stream.close()
        if subscription is not None:
            subscription.stop()

    def is_set(self) -> bool:
        """True once :meth:`set` was called."""
        with self._lock:
            return self._set

    def _watch_stream(self, stream: TaskEventStream) -> bool:
        """Have :meth:`set` close ``stream``; False if it was already set."""
        with self._lock:
            self._stream = stream
            return not self._set

    def _watch_subscription(self, subscription: TaskSubscription) -> bool:
        """Have :meth:`set` wake ``subscription``; False if it was already set."""
        with self._lock:
            self._subscription = subscription
            return not self._set


class SharedTaskStreams:
    """The shared upstream of one client's ``task.events()`` iterators.

    :param opener: what opens streams (the client).
    :param buffer_size: events one iterator may have waiting (see the module doc).
    :param linger: seconds the connection stays open after the last iterator ends.
    """

    def __init__(
        self,
        opener: StreamOpener,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        linger: float = DEFAULT_LINGER,
    ) -> None:
        self._opener = opener
        self.buffer_size = buffer_size
        self.linger = linger
        self._lock = threading.Lock()
        self._subs: dict[str, list[TaskSubscription]] = {}
        self._count = 0
        self._stream: Optional[TaskEventStream] = None
        self._position = -1
        self._generation = 0
        self._idle_timer: Optional[threading.Timer] = None
        self.connections_opened: int = 0

    @property
    def is_open(self) -> bool:
        """True while the shared stream is open."""
        with self._lock:
            return self._stream is not None

    # -- the iterator -------------------------------------------------------

    def events(
        self,
        task_id: str,
        *,
        cursor: Optional[str],
        heartbeat_seconds: Optional[int],
        stop: Optional[IteratorStop] = None,
    ) -> Iterator[TaskEvent]:
        """Follow one task from its first event (or after ``cursor``) to ``task.finished``.

        ``stop``, when given, ends the iterator from another thread (see
        :class:`IteratorStop`).
        """
        last_sequence = -1
        subscription: Optional[TaskSubscription] = None
        try:
            while True:
                # Catch up on the task's own stream until the shared one covers the rest.
                options = StreamOptions(
                    task_id=task_id, cursor=cursor, heartbeat_seconds=heartbeat_seconds
                )
                joined = False
                switch_at: Optional[TaskEvent] = None
                with self._opener.stream_events(options) as catch_up:
                    if stop is not None and not stop._watch_stream(catch_up):
                        return
                    for event in catch_up:
                        if event.sequence <= last_sequence:
                            continue
                        if subscription is not None and subscription.ended:
                            subscription = None  # that shared stream is gone: join a new one
                        if subscription is not None and event.sequence >= subscription.position:
                            # Leave the catch-up before yielding: a consumer that
                            # takes its time must not hold this connection open.
                            switch_at, joined = event, True
                            break
                        last_sequence, cursor = event.sequence, event.id
                        yield event
                        if event.type == _FINISHED:
                            return
                        if subscription is None or subscription.ended:
                            # Subscribed after the first event is yielded, so that an
                            # iterator abandoned at once never opens the shared stream.
                            subscription = self._subscribe(task_id, event)
                            if stop is not None and not stop._watch_subscription(subscription):
                                return
                        if event.sequence >= subscription.position:
                            joined = True
                            break
                if not joined or (stop is not None and stop.is_set()):
                    return  # the task stream ended (204: nothing after the cursor), or stopped
                if switch_at is not None:
                    last_sequence, cursor = switch_at.sequence, switch_at.id
                    yield switch_at
                    if switch_at.type == _FINISHED:
                        return
                assert subscription is not None
                # Read the shared stream's buffer.
                while True:
                    shared = subscription.take()
                    if shared is None:
                        break
                    if shared.sequence <= last_sequence:
                        continue
                    last_sequence, cursor = shared.sequence, shared.id
                    yield shared
                    if shared.type == _FINISHED:
                        return
                if subscription.stopped:
                    return
                logger.info(
                    "task %s: %s; catching up from %s",
                    task_id,
                    "it fell behind" if subscription.overflowed else "the shared stream ended",
                    cursor,
                )
                self._unsubscribe(subscription)
                subscription = None
        finally:
            if subscription is not None:
                self._unsubscribe(subscription)

    # -- registry -------------------------------------------------------------

    def _subscribe(self, task_id: str, event: TaskEvent) -> TaskSubscription:
        """Register a subscription for ``task_id``, whose iterator has yielded ``event``;
        opens the shared stream right after ``event`` when none is open."""
        with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            if self._stream is None:
                self._open(event)
            subscription = TaskSubscription(task_id, self._position, self.buffer_size)
            self._subs.setdefault(task_id, []).append(subscription)
            self._count += 1
            return subscription

    def _unsubscribe(self, subscription: TaskSubscription) -> None:
        with self._lock:
            subs = self._subs.get(subscription.task_id)
            if subs is None or subscription not in subs:
                return
            subs.remove(subscription)
            if not subs:
                del self._subs[subscription.task_id]
            self._count -= 1
            if self._count == 0 and self._stream is not None:
                generation = self._generation
                timer = threading.Timer(self.linger, self._close_if_idle, (generation,))
                timer.daemon = True
                self._idle_timer = timer
                timer.start()

    def subscriptions(self) -> int:
        """How many iterators are on the shared stream."""
        with self._lock:
            return self._count

    # -- the shared stream ----------------------------------------------------

    def _open(self, after: TaskEvent) -> None:
        """Open the shared stream right after ``after`` (lock held)."""
        stream = self._opener.stream_events(
            StreamOptions(cursor=after.id, heartbeat_seconds=SHARED_HEARTBEAT_SECONDS)
        )
        self._stream = stream
        self._position = after.sequence
        self._generation += 1
        self.connections_opened += 1
        thread = threading.Thread(
            target=self._read,
            args=(stream, self._generation),
            name="agentstream-shared-task-events",
            daemon=True,
        )
        thread.start()

    def _read(self, stream: TaskEventStream, generation: int) -> None:
        error: Optional[BaseException] = None
        try:
            for event in stream:
                with self._lock:
                    if generation != self._generation:
                        return
                    self._position = event.sequence
                    subs = self._subs.get(event.task_id) if event.task_id else None
                    targets = list(subs) if subs else ()
                for subscription in targets:
                    subscription.offer(event)
        except Exception as exc:  # the budget is spent, or an error that is not retried
            error = exc
            logger.warning("the shared task stream ended: %s", exc)
        finally:
            stream.close()
            with self._lock:
                ended = []
                if generation == self._generation:
                    self._stream = None
                    self._generation += 1
                    for subs in self._subs.values():
                        ended.extend(subs)
                    self._subs.clear()
                    self._count = 0
            for subscription in ended:
                subscription.end(error)

    def _close_if_idle(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation or self._count or self._stream is None:
                return
            stream = self._stream
            self._stream = None
            self._generation += 1
            self._idle_timer = None
        stream.close()

    def close(self) -> None:
        """Close the shared stream now. Iterators reading from it go on, each on its
        own catch-up stream (and may open a shared one again)."""
        with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            stream = self._stream
            self._stream = None
            self._generation += 1
            ended = [s for subs in self._subs.values() for s in subs]
            self._subs.clear()
            self._count = 0
        if stream is not None:
            stream.close()
        for subscription in ended:
            subscription.end(None)
