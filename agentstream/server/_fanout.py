"""The fan-out: each new event, handed over by the store as it commits, goes to every live
stream that wants it; no query, no thread woken per event or per stream.

Before, every commit woke every stream thread (``notify_all`` on one
condition) and each ran its own query under the store lock: the store work of
one event grew with the number of streams. Then one broadcaster thread woke
at each commit and read the new rows once. Now the store hands the events it
just committed to the :class:`Broadcaster` (an ``AppendListener``, under its
lock, so in order and with none missing), and the thread that committed them
hands them out to the :class:`Subscription` of each matching stream, right
after its commit: the write's own thread does the fan-out, so an event sent
alone wakes no other thread at all, and the store is never read for a live
event. Measured (``bench/server_fanout.py``, docs/performance.md): the
broadcaster thread's wake-up per commit, with its hand-off of the GIL and of
the store lock, cost more than the hand-out itself.

The hand-out coalesces. A round hands out every queued event; rounds are
at least ``interval`` apart (``ServerConfig.fanout_interval``, 5 ms by
default). An event committed when the last round is older than that goes out
at once, in its writer's thread; one committed sooner waits in the queue for
the broadcaster's thread, which runs the next round when the interval is up.
So a lone event wakes no thread and waits for nothing, and under a steady
flow every stream gets one ``send`` per interval with all the events since,
instead of one per event: measured with 100 tailers at 1,000 events/s, the
writes per event (and the kernel's work, on both sides of each socket) fall
by the number of events per round, for at most ``interval`` more latency
(docs/performance.md). A thread that finds the lock held by another round
leaves its events queued; whoever lets go of the lock passes what is left to
the broadcaster's thread, so no event is left behind.

A caught-up stream's socket is written without blocking
(``_http.DirectWriter``); when a socket is full the stream's own thread takes
over and the fan-out queues for it. That queue is bounded: a stream whose
client reads slower than events arrive is ended (its client resumes from its
cursor and replays what it missed from the store), so it never holds up the
others or grows without limit.

Replay is not the fan-out's job: a stream with an old cursor reads the store
itself, in batches, until it is close to the live end, and only then
subscribes; :meth:`Broadcaster.subscribe` fills the last few events between
the two under the fan-out's lock, so the switch can neither skip nor repeat
one.

Anything else that wants the live events can subscribe the same way and
:meth:`Subscription.wait` on its own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Callable, Optional

from ._errors import StoreClosedError
from ._events import StoredEvent
from ._http import chunk_frame
from ._store import EventStore

if TYPE_CHECKING:
    from ._http import DirectWriter

__all__ = ["Broadcaster", "Subscription"]

logger = logging.getLogger(__name__)

_CATCH_UP = 256  # a stream further behind than this replays more before it subscribes


class _Batch:
    """Events handed out together, with their frames joined and chunk-framed once for
    every stream that takes them all."""

    __slots__ = ("chunked", "data", "events")

    def __init__(self, events: list[StoredEvent]) -> None:
        self.events = events
        self.data = b"".join([e.frame for e in events])
        self.chunked = chunk_frame(self.data)


class Subscription:
    """One live stream's place in the fan-out: what it wants, what waits for it, its wake-up.

    The stream's thread calls :meth:`wait`; the broadcaster calls
    :meth:`offer`; either side may :meth:`end` it, with a reason.
    """

    __slots__ = (
        "_direct",
        "_event",
        "_events",
        "_lock",
        "backlog",
        "ended",
        "last_direct_write",
        "on_end",
        "organization_id",
        "position",
        "task_id",
        "types",
        "writer",
    )

    def __init__(
        self,
        *,
        types: Optional[Collection[str]],
        task_id: Optional[str],
        organization_id: Optional[str],
        backlog: int,
        position: int = 0,
    ) -> None:
        self.position = position  # the last sequence this stream has (or will be) sent
        self.types = None if types is None else frozenset(types)
        self.task_id = task_id
        self.organization_id = organization_id
        self.backlog = backlog
        self.ended: Optional[str] = None  # why it ended: "overflow", "gap", "closed", ...
        self.on_end: Optional[Callable[[str], None]] = None
        self.writer: Optional[DirectWriter] = None
        self.last_direct_write = 0.0
        self._direct = False  # the broadcaster may write to the socket itself
        self._events: list[StoredEvent] = []
        self._lock = threading.Lock()
        self._event = threading.Event()

    def matches(self, event: StoredEvent) -> bool:
        """True when this stream wants ``event``."""
        return (
            (self.types is None or event.type in self.types)
            and (self.task_id is None or event.task_id == self.task_id)
            and (self.organization_id is None or event.organization_id == self.organization_id)
        )

    def offer(
        self, events: list[StoredEvent], batch: Optional[_Batch] = None, now: float = 0.0
    ) -> bool:
        """Queue ``events`` (already filtered) and wake the stream; False if it overflowed.

        Events at or before :attr:`position` are skipped: a stream that replayed
        past where the broadcaster was when it subscribed already sent them.
        ``batch``, when given, holds exactly ``events`` (their frames joined once
        for every stream); ``now``, when given, is ``time.monotonic()`` (read once
        per round).
        """
        if events[0].sequence <= self.position:
            events = [e for e in events if e.sequence > self.position]
            if not events:
                return True
            batch = None
        self.position = events[-1].sequence
        with self._lock:
            if self.ended is not None:
                return True
            if self._direct and not self._events:
                writer = self.writer
                assert writer is not None
                if batch is None:
                    batch = _Batch(events)
                status = writer.try_send(batch.data, batch.chunked)
                if status == "sent":
                    self.last_direct_write = now or time.monotonic()
                    return True
                self._direct = False  # the stream's thread writes from here on
                if status == "partial":  # the rest waits in writer.pending for the thread
                    self.last_direct_write = now or time.monotonic()
                    self._event.set()
                    return True
            if len(self._events) + len(events) > self.backlog:
                overflow = True
            else:
                overflow = False
                self._events.extend(events)
                if not self._event.is_set():
                    self._event.set()
        if overflow:
            self.end("overflow")
            return False
        return True

    def resume_direct(self) -> None:
        """Let the broadcaster write directly again, once nothing is queued (stream thread)."""
        if self.writer is None:
            return
        with self._lock:
            if not self._events and not self.writer.pending:
                self._direct = True

    def pause_direct(self) -> None:
        """Take the socket back from the broadcaster (stream thread, before it writes)."""
        with self._lock:
            self._direct = False

    def end(self, reason: str) -> None:
        """End the stream (idempotent): drop its backlog, wake it, tell ``on_end``.

        Under the lock, so no direct write is under way once it returns.
        """
        with self._lock:
            if self.ended is not None:
                return
            self.ended = reason
            self._direct = False
            self._events = []
            self._event.set()
        if self.on_end is not None:
            self.on_end(reason)

    def wake(self) -> None:
        """Wake the stream's thread so that it re-checks why it should stop."""
        self._event.set()

    def wait(self, timeout: Optional[float]) -> list[StoredEvent]:
        """The events queued so far, waiting up to ``timeout`` seconds for the first one.

        Returns an empty list on timeout, on :meth:`wake` and once ended.
        """
        self._event.wait(timeout)
        with self._lock:
            self._event.clear()
            if self.ended is not None:
                return []
            events, self._events = self._events, []
        return events


class Broadcaster:
    """Hands each committed event to every :class:`Subscription` that wants it.

    :param store: the event log; the broadcaster listens to its commits from
        the head on.
    :param backlog: default for :meth:`subscribe`'s bound.
    :param interval: seconds between two rounds of hand-out at least (see the
        module docstring).
    """

    def __init__(self, store: EventStore, *, backlog: int, interval: float) -> None:
        self._store = store
        self._backlog = backlog
        self._interval = interval
        self._last_round = 0.0  # time.monotonic() when the last round began
        # The hand-out lock: one round at a time, the subscription set, the position.
        self._lock = threading.Lock()
        # Guards only _pending; nothing else is taken while it is held.
        self._pending_lock = threading.Lock()
        self._pending: list[StoredEvent] = []
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        self._wake = threading.Event()  # something is queued for the thread
        self._closing = threading.Event()
        self._position = store.add_listener(self)  # atomically: no commit in between
        self._thread = threading.Thread(target=self._run, name="agentstream-fanout", daemon=True)
        self._thread.start()

    @property
    def position(self) -> int:
        """The last sequence handed out."""
        with self._lock:
            return self._position

    @property
    def subscriber_count(self) -> int:
        """How many live streams are subscribed."""
        with self._lock:
            return len(self._subscriptions)

    # ------------------------------------------------------------------ the store's side

    def appended(self, events: list[StoredEvent]) -> None:
        """Queue events just committed (the store calls this under its lock, in order)."""
        with self._pending_lock:
            self._pending.extend(events)

    def committed(self) -> None:
        """After the store's lock: hand out what is queued, in the committing thread, if the
        last round is ``interval`` old; else leave it to the broadcaster's thread."""
        if time.monotonic() - self._last_round >= self._interval:
            self._round(wait=False)
        else:
            self._wake.set()

    # ------------------------------------------------------------------ subscribers

    def subscribe(
        self,
        after: int,
        *,
        types: Optional[Collection[str]] = None,
        task_id: Optional[str] = None,
        organization_id: Optional[str] = None,
    ) -> Optional[Subscription]:
        """A subscription that receives every matching event after ``after``, in order.

        None when ``after`` is more than a few hundred events behind the live
        end: the caller should read those from the store first, then call
        again. Raises :class:`StoreClosedError` once the store is closed.
        """
        subscription = Subscription(
            types=types,
            task_id=task_id,
            organization_id=organization_id,
            backlog=self._backlog,
            position=after,
        )
        try:
            with self._lock:  # no hand-out while the gap is filled
                if self._closed:
                    raise StoreClosedError("the event store is closed")
                behind = self._position - after
                if behind > _CATCH_UP:
                    return None
                if behind > 0:
                    batch = self._store.read_after(
                        after,
                        types=subscription.types,
                        task_id=task_id,
                        organization_id=organization_id,
                        limit=_CATCH_UP,
                    )
                    if batch.gap:
                        subscription.end("gap")
                        return subscription
                    missed = [
                        e
                        for e in batch.events
                        if e.sequence <= self._position and subscription.matches(e)
                    ]
                    if missed:
                        subscription.offer(missed)
                self._subscriptions.add(subscription)
            return subscription
        finally:
            self._after_lock()

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)
        self._after_lock()

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening to the store and end every subscription ("closed")."""
        self._store.remove_listener(self)
        with self._lock:
            self._closed = True
            subscriptions = list(self._subscriptions)
            self._subscriptions.clear()
            with self._pending_lock:
                self._pending = []
        self._closing.set()
        self._wake.set()
        for subscription in subscriptions:
            subscription.end("closed")
        self._thread.join(timeout)

    # ------------------------------------------------------------------ hand-out

    def _after_lock(self) -> None:
        """After holding the lock: what writers queued meanwhile (they found the lock
        taken and left it) goes to the broadcaster's thread."""
        if self._pending:
            self._wake.set()

    def _round(self, wait: bool) -> None:
        """One round: hand out every queued event, if the lock is free (or once it is, with
        ``wait``); what is queued by the end goes to the broadcaster's thread.

        A writer that finds the lock taken returns at once: the holder sees its
        events when it lets go of the lock.
        """
        if not self._lock.acquire(blocking=wait):
            return
        try:
            # Reading _pending without its lock is safe: a stale "empty" is caught by the
            # check after the release, which every append that was missed precedes.
            if self._pending:
                with self._pending_lock:
                    events, self._pending = self._pending, []
                self._last_round = time.monotonic()
                self._hand_out(events)
        finally:
            self._lock.release()
        self._after_lock()

    def _run(self) -> None:
        """The broadcaster's thread: a round for what writers left queued, each when the
        interval since the last one is up."""
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            delay = self._last_round + self._interval - time.monotonic()
            if delay > 0 and self._closing.wait(delay):
                return
            try:
                self._round(wait=True)
            except Exception:  # pragma: no cover - a bug here must not end the fan-out
                logger.exception("the fan-out failed")

    def _hand_out(self, events: list[StoredEvent]) -> None:
        """Offer ``events`` to every subscription (under the lock); drop those that overflow
        (the offer ended them)."""
        self._position = events[-1].sequence
        if not self._subscriptions:
            return
        overflowed: list[Subscription] = []
        shared: dict[Optional[str], tuple[list[StoredEvent], Optional[_Batch]]] = {}
        now = time.monotonic()
        for subscription in self._subscriptions:
            if subscription.types is None and subscription.task_id is None:
                # The common case: every event of one organization. The events and their
                # frames, joined, are computed once per organization, not per stream.
                organization = subscription.organization_id
                entry = shared.get(organization)
                if entry is None:
                    wanted = (
                        events
                        if organization is None
                        else [e for e in events if e.organization_id == organization]
                    )
                    entry = shared[organization] = (wanted, _Batch(wanted) if wanted else None)
                wanted, batch = entry
                if wanted and not subscription.offer(wanted, batch, now):
                    overflowed.append(subscription)
                continue
            wanted = [e for e in events if subscription.matches(e)]
            if wanted and not subscription.offer(wanted, None, now):
                overflowed.append(subscription)
        for subscription in overflowed:
            self._subscriptions.discard(subscription)
            logger.info("a stream fell %d events behind: disconnected", subscription.backlog)
