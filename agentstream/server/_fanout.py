"""The fan-out: one thread reads each new event from the store once and hands it to every
live stream that wants it.

Before, every commit woke every stream thread (``notify_all`` on one
condition) and each ran its own query under the store lock: the store work of
one event grew with the number of streams. Now only the :class:`Broadcaster`
waits on the store; it reads the new rows in one query and offers them to the
:class:`Subscription` of each matching stream. A caught-up stream's socket is
written by the broadcaster itself, without blocking (``_http.DirectWriter``),
so no thread wakes per event per stream; when a socket is full the stream's
own thread takes over and the broadcaster queues for it. That queue is
bounded: a stream whose client reads slower than events arrive is ended (its
client resumes from its cursor and replays what it missed from the store), so
it never holds up the others or grows without limit.

Replay is not the broadcaster's job: a stream with an old cursor reads the
store itself, in batches, until it is close to the live end, and only then
subscribes; :meth:`Broadcaster.subscribe` fills the last few events between
the two under its lock, so the switch can neither skip nor repeat one.

Anything else that wants the live events (webhook delivery, say) can
subscribe the same way and :meth:`Subscription.wait` on its own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Callable, Optional

from ._errors import StoreClosedError
from ._events import StoredEvent
from ._store import EventStore

if TYPE_CHECKING:
    from ._http import DirectWriter

__all__ = ["Broadcaster", "Subscription"]

logger = logging.getLogger(__name__)

_READ_BATCH = 1024  # rows per broadcaster query
_CATCH_UP = 256  # a stream further behind than this replays more before it subscribes


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

    def offer(self, events: list[StoredEvent]) -> bool:
        """Queue ``events`` (already filtered) and wake the stream; False if it overflowed.

        Events at or before :attr:`position` are skipped: a stream that replayed
        past where the broadcaster was when it subscribed already sent them.
        """
        if events[0].sequence <= self.position:
            events = [e for e in events if e.sequence > self.position]
            if not events:
                return True
        self.position = events[-1].sequence
        with self._lock:
            if self.ended is not None:
                return True
            if self._direct and not self._events:
                assert self.writer is not None
                status = self.writer.try_send(b"".join([e.frame for e in events]))
                if status == "sent":
                    self.last_direct_write = time.monotonic()
                    return True
                self._direct = False  # the stream's thread writes from here on
                if status == "partial":  # the rest waits in writer.pending for the thread
                    self.last_direct_write = time.monotonic()
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
    """The one reader of new events; feeds every :class:`Subscription`.

    :param store: the event log. The broadcaster starts at its head.
    :param backlog: default for :meth:`subscribe`'s bound.
    """

    def __init__(self, store: EventStore, *, backlog: int) -> None:
        self._store = store
        self._backlog = backlog
        self._lock = threading.Lock()
        self._subscriptions: set[Subscription] = set()
        self._position = store.head_sequence
        self._closed = False
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
        with self._lock:  # the broadcaster cannot move while the gap is filled
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

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and end every subscription ("closed")."""
        with self._lock:
            self._closed = True
            subscriptions = list(self._subscriptions)
            self._subscriptions.clear()
        self._store.wake_waiters()
        for subscription in subscriptions:
            subscription.end("closed")
        self._thread.join(timeout)

    def _run(self) -> None:
        store = self._store
        while True:
            try:
                store.wait_for_events(self._position, None, lambda: self._closed)
                if self._closed or store.closed:
                    break
                with self._lock:
                    if not self._subscriptions:  # nobody to hand rows to: skip them unread
                        self._position = store.head_sequence
                        continue
                batch = store.read_after(self._position, limit=_READ_BATCH)
            except StoreClosedError:
                break
            except Exception:  # pragma: no cover - a bug here must not end every stream
                logger.exception("the fan-out failed to read the store")
                continue
            with self._lock:
                if batch.gap:
                    # Retention deleted rows before they were handed out: every live
                    # stream would miss them. End them all; their clients reconnect
                    # with their cursors and get 410 rather than a silent gap.
                    logger.warning("the fan-out fell behind retention; ending live streams")
                    ended = list(self._subscriptions)
                    self._subscriptions.clear()
                    self._position = batch.head
                else:
                    ended = []
                    if batch.events:
                        self._hand_out(batch.events)
                        self._position = batch.events[-1].sequence
            for subscription in ended:
                subscription.end("gap")

    def _hand_out(self, events: list[StoredEvent]) -> None:
        """Offer ``events`` to every subscription (under the lock); drop those that overflow
        (the offer ended them)."""
        overflowed: list[Subscription] = []
        for subscription in self._subscriptions:
            if subscription.types is None and subscription.task_id is None:
                wanted = (
                    events
                    if subscription.organization_id is None
                    else [e for e in events if e.organization_id == subscription.organization_id]
                )
            else:
                wanted = [e for e in events if subscription.matches(e)]
            if wanted and not subscription.offer(wanted):
                overflowed.append(subscription)
        for subscription in overflowed:
            self._subscriptions.discard(subscription)
            logger.info("a stream fell %d events behind: disconnected", subscription.backlog)
