"""The Listener: a daemon thread that follows a stream and runs handlers.

::

    listener = client.listen(StreamOptions(heartbeat_seconds=30))
    listener.run_forever()          # a script: Ctrl-C or SIGTERM stops it cleanly

    with client.listen() as listener:   # an app: started, and stopped on exit
        ...

One reader thread owns the reconnecting stream. With one worker (the
default) that thread also runs the registry's handlers, event by event: a
slow handler holds the reading, so TCP pushes back on the server and nothing
is dropped. With ``workers > 1`` the reader puts events on bounded queues,
one per handler thread, and waits when a queue is full. Events of one task
are handled in stream order: while a task has events waiting or running they
all go to the same worker; a task with none goes to the least-loaded worker.
The cursor advances only past events whose handlers have all returned, and
is saved to the cursor store after each one.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from types import FrameType
from typing import TYPE_CHECKING, Any, Optional, Union

from blinker import NamedSignal

from . import signals
from .cursors import CursorStore, MemoryCursorStore
from .dispatch import DispatchResult, Registry, default_registry
from .errors import InvalidEventError
from .models import TaskEvent
from .sse import Comment, Connected, Disconnected, Failed, Happening, Retrying
from .stream import StreamOptions, TaskEventStream

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Listener", "ListenerStats"]

logger = logging.getLogger(__name__)


class _BatchQueue:
    """A FIFO of typed event batches between the reader and one worker,
    bounded in events.

    ``put`` waits until there is room: at most ``capacity`` events ever wait
    (a larger batch is queued in slices). ``None`` is the stop marker and is
    never refused.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Optional[list[Any]]] = deque()
        self._events = 0
        self._cond = threading.Condition()

    def put(self, batch: list[Any], stopping: threading.Event) -> bool:
        """Queue ``batch`` in order, filling whatever room there is and waiting
        for more; False if ``stopping`` is set first."""
        start, total = 0, len(batch)
        while start < total:
            with self._cond:
                while self._events >= self.capacity:
                    if stopping.is_set():
                        return False
                    self._cond.wait(0.1)
                room = self.capacity - self._events
                piece = batch if start == 0 and total <= room else batch[start : start + room]
                self._items.append(piece)
                self._events += len(piece)
                start += len(piece)
                self._cond.notify_all()
        return True

    def put_stop(self) -> None:
        with self._cond:
            self._items.append(None)
            self._cond.notify_all()

    def get(self) -> Optional[list[Any]]:
        with self._cond:
            while not self._items:
                self._cond.wait()
            batch = self._items.popleft()
            if batch is not None:
                self._events -= len(batch)
                self._cond.notify_all()
            return batch

    def qsize(self) -> int:
        """Events waiting."""
        with self._cond:
            return self._events


@dataclass(frozen=True)
class ListenerStats:
    """Counters of a listener (a snapshot)."""

    events_handled: int
    """Events whose handlers have all returned (or raised)."""
    handler_failures: int
    """Handler calls that raised."""
    reconnects: int
    """Connections made after the first one."""
    invalid_events: int
    """Events skipped because they could not be parsed."""
    last_event_at: Optional[float]
    """``time.time()`` when the last event was handled, or None."""


class Listener:
    """Follows one stream on a daemon thread and dispatches each event.

    Create it with :meth:`Client.listen <agentstream.Client.listen>`.

    :param client: the client whose stream to follow.
    :param options: what to stream (:class:`~agentstream.StreamOptions`).
    :param registry: the handlers; default the module-level decorators' one.
    :param cursor_store: where the cursor is saved; with a durable store a
        restarted process resumes after the last handled event. Default: in
        memory.
    :param name: the key of this listener's cursor in the store.
    :param workers: handler threads; events of one task keep their order.
        With one, the reader thread runs the handlers itself.
    :param queue_size: with ``workers > 1``, events waiting per worker before
        the reader waits.
    """

    def __init__(
        self,
        client: Client,
        options: Optional[StreamOptions] = None,
        *,
        registry: Optional[Registry] = None,
        cursor_store: Optional[CursorStore] = None,
        name: str = "default",
        workers: int = 1,
        queue_size: int = 1000,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._client = client
        self.options = options or StreamOptions()
        self.registry = registry if registry is not None else default_registry
        self.cursor_store: CursorStore = cursor_store or MemoryCursorStore()
        self.name = name
        # One worker needs no queue: the reader thread runs the handlers.
        self._queues = [_BatchQueue(queue_size) for _ in range(workers)] if workers > 1 else []
        self._stream: Optional[TaskEventStream] = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._signalled = False
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._waiting = 0  # threads in wait_handled(): notify only when someone waits
        self._pending: OrderedDict[int, list[Any]] = OrderedDict()  # sequence -> [id, done]
        # A task with events in flight stays on one worker (its order is kept);
        # a task with none may go to the least-loaded worker next time.
        self._task_slots: dict[Optional[str], list[int]] = {}  # task -> [worker, in flight]
        self._worker_load = [0] * workers
        self._cursor: Optional[str] = None
        self._saved_sequence = -1
        self._running_workers = 0
        self._error: Optional[BaseException] = None
        self._handled = 0
        self._failures = 0
        self._connections = 0
        self._invalid = 0
        self._last_event_at: Optional[float] = None

    # -- state ------------------------------------------------------------------

    @property
    def cursor(self) -> Optional[str]:
        """The id of the last event whose handlers have all returned."""
        return self._cursor

    @property
    def error(self) -> Optional[BaseException]:
        """Why the listener stopped by itself (retry budget spent, 401, ...), or None."""
        return self._error

    @property
    def running(self) -> bool:
        """True between :meth:`start` and the end of the threads."""
        return bool(self._threads) and not self._finished.is_set()

    @property
    def stats(self) -> ListenerStats:
        """Counters: events handled, handler failures, reconnects, last event time."""
        with self._lock:
            return ListenerStats(
                events_handled=self._handled,
                handler_failures=self._failures,
                reconnects=max(0, self._connections - 1),
                invalid_events=self._invalid,
                last_event_at=self._last_event_at,
            )

    # -- control ----------------------------------------------------------------

    def start(self) -> Listener:
        """Connect and start the threads. Returns the listener."""
        if self._threads:
            raise RuntimeError("this listener was already started; create a new one")
        # The store's cursor wins: options.cursor is only where a listener with
        # nothing saved yet starts.
        cursor = self.cursor_store.load(self.name) or self.options.cursor
        self._cursor = cursor
        self._stream = self._client.stream_events(
            replace(self.options, cursor=cursor),
            on_happening=self._on_happening,
            on_invalid=self._on_invalid,
        )
        reader = self._read if self._queues else self._read_and_handle
        self._running_workers = len(self._queues) or 1
        for index, events in enumerate(self._queues):
            self._threads.append(
                threading.Thread(
                    target=self._work,
                    args=(events,),
                    name=f"agentstream-{self.name}-worker-{index}",
                    daemon=True,
                )
            )
        self._threads.append(
            threading.Thread(target=reader, name=f"agentstream-{self.name}-reader", daemon=True)
        )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Stop, from any thread; the handler in progress finishes.

        Events read but not yet handled are left for the next start (the
        cursor has not passed them). Returns True if every thread ended
        within ``timeout`` seconds (None: wait as long as it takes).
        """
        self._stopping.set()
        if self._stream is not None:
            self._stream.close()
        for events in self._queues:
            events.put_stop()
        return self.join(timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the threads to end (stopped, failed, or the stream ended)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            if thread is threading.current_thread():
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t.is_alive() for t in self._threads if t is not threading.current_thread())

    def wait_handled(self, event: Union[TaskEvent, int], timeout: float = 10.0) -> bool:
        """Wait until ``event`` (or every event up to this sequence) has been handled.

        True once the cursor has passed it; False if ``timeout`` seconds went
        by first, or the listener ended without handling it. For tests and
        for flushing before shutdown: no sleeping needed.
        """
        sequence = event if isinstance(event, int) else event.sequence
        deadline = time.monotonic() + timeout
        with self._progress:
            self._waiting += 1
            try:
                while self._saved_sequence < sequence:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._finished.is_set():
                        return self._saved_sequence >= sequence
                    self._progress.wait(remaining)  # notified on progress and at the end
                return True
            finally:
                self._waiting -= 1

    def run_forever(self) -> None:
        """Run until Ctrl-C or SIGTERM (then return), or until the listener fails.

        Meant as the last line of a script. On failure (retry budget spent, a
        401 or 403...) it raises ``SystemExit`` with a message saying why, so
        the script exits non-zero.
        """
        if not self._threads:
            self.start()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            while not self._signalled and not self._finished.wait(0.25):
                pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.stop()
        if self._error is not None:
            raise SystemExit(f"agentstream: listener {self.name!r} stopped: {self._error}")

    def __enter__(self) -> Listener:
        if not self._threads:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else ("stopped" if self._threads else "new")
        return f"<Listener {self.name!r} {state} cursor={self._cursor!r}>"

    # -- threads ------------------------------------------------------------------

    def _read_and_handle(self) -> None:
        """One worker: read, parse and handle on this one thread.

        Handing events to a second thread cost about 2 us per event (objects
        made on one core and freed on another; docs/decisions.md).
        """
        assert self._stream is not None
        dispatch = self.registry.dispatch
        complete = self._complete_one
        received = signals.event_received
        stopping = self._stopping
        try:
            for event in self._stream:
                if stopping.is_set():
                    return
                complete(event, dispatch(event, sender=self, signal=received))
        except Exception as exc:
            self._fail(exc)
        finally:
            self._worker_ended()

    def _read(self) -> None:
        assert self._stream is not None
        try:
            for batch in self._stream.batches():
                groups: dict[int, list[TaskEvent]] = {}
                with self._lock:
                    for event in batch:
                        self._pending[event.sequence] = [event.id, False]
                        groups.setdefault(self._assign(event.task_id), []).append(event)
                for worker, events in groups.items():
                    if not self._queues[worker].put(events, self._stopping):
                        return
        except Exception as exc:
            self._fail(exc)
        finally:
            for worker_queue in self._queues:
                worker_queue.put_stop()

    def _assign(self, task_id: Optional[str]) -> int:
        """The worker for an event of ``task_id`` (called with the lock held)."""
        slot = self._task_slots.get(task_id)
        if slot is None:
            load = self._worker_load
            slot = self._task_slots[task_id] = [load.index(min(load)), 0]
        slot[1] += 1
        self._worker_load[slot[0]] += 1
        return slot[0]

    def _work(self, events: _BatchQueue) -> None:
        dispatch = self.registry.dispatch
        stopping = self._stopping
        try:
            while True:
                batch = events.get()
                if batch is None:
                    return
                for event in batch:
                    if stopping.is_set():
                        return
                    self._complete(
                        event, dispatch(event, sender=self, signal=signals.event_received)
                    )
        finally:
            self._worker_ended()

    def _worker_ended(self) -> None:
        with self._lock:
            self._running_workers -= 1
            if self._running_workers == 0:
                self._finished.set()
                self._progress.notify_all()  # wait_handled() returns at once

    def _fail(self, exc: Exception) -> None:
        self._error = exc
        logger.error("listener %r stopped: %s", self.name, exc)

    def _complete_one(self, event: TaskEvent, result: DispatchResult) -> None:
        """Bookkeeping with one worker: events complete in stream order.

        This thread is the only writer of these attributes, so they are set
        without the lock (readers take a snapshot); the lock is taken only to
        wake a thread in :meth:`wait_handled`.
        """
        self._handled += 1
        if result.errors:
            self._failures += len(result.errors)
        self._last_event_at = time.time()
        self._cursor = event.id
        self._saved_sequence = event.sequence
        self._save(event.id)
        if self._waiting:
            with self._lock:
                self._progress.notify_all()

    def _complete(self, event: TaskEvent, result: DispatchResult) -> None:
        """Bookkeeping with several workers: advance over the handled prefix."""
        with self._lock:
            self._handled += 1
            self._failures += len(result.errors)
            self._last_event_at = time.time()
            self._pending[event.sequence][1] = True
            task_id = event.task_id
            slot = self._task_slots[task_id]
            self._worker_load[slot[0]] -= 1
            slot[1] -= 1
            if not slot[1]:
                del self._task_slots[task_id]
            advanced: Optional[tuple[int, str]] = None
            while self._pending:
                sequence, (event_id, done) = next(iter(self._pending.items()))
                if not done:
                    break
                self._pending.popitem(last=False)
                advanced = (sequence, event_id)
            if advanced is None:  # sequences only grow: an advance is always forward
                return
            self._saved_sequence, self._cursor = advanced
            if self._waiting:
                self._progress.notify_all()
            self._save(advanced[1])  # under the lock: saves stay in order

    def _save(self, cursor: str) -> None:
        try:
            self.cursor_store.save(self.name, cursor)
        except Exception:
            logger.exception("could not save the cursor of listener %r", self.name)

    # -- happenings to signals ------------------------------------------------------

    def _on_happening(self, happening: Happening) -> None:
        if isinstance(happening, Comment):
            self._send(signals.heartbeat, comment=happening.text)
        elif isinstance(happening, Connected):
            with self._lock:
                self._connections += 1
            self._send(signals.connected, url=happening.url, cursor=happening.last_event_id)
        elif isinstance(happening, Disconnected):
            self._send(signals.disconnected, reason=happening.reason, error=happening.error)
        elif isinstance(happening, Retrying):
            self._send(
                signals.retrying,
                delay=happening.delay,
                attempt=happening.attempt,
                error=happening.error,
            )
        elif isinstance(happening, Failed):
            self._send(signals.failed, error=happening.error)

    def _on_invalid(self, error: InvalidEventError) -> None:
        with self._lock:
            self._invalid += 1
        self._send(signals.invalid_event, error=error)

    def _send(self, signal: NamedSignal, **kwargs: Any) -> None:
        for receiver, exc in signals.send_each(signal, self, **kwargs):
            logger.error("%s receiver %r raised", signal.name, receiver, exc_info=exc)

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        # Runs between two bytecodes of the main thread, which may be inside
        # _finished.wait() holding that Event's lock: only set a flag here;
        # run_forever() sees it within 0.25 s and stops.
        self._signalled = True
