"""The Listener: daemon threads that follow a stream and run handlers.

::

    listener = client.listen(StreamOptions(heartbeat_seconds=30))
    listener.run_forever()          # a script: Ctrl-C or SIGTERM stops it cleanly

    with client.listen() as listener:   # an app: started, and stopped on exit
        ...

One reader thread owns the reconnecting stream, which never gives up by
default. With one worker (the default) that thread also runs the registry's
handlers, event by event: a slow handler holds the reading, so TCP pushes
back on the server and nothing is dropped. With ``workers > 1`` the reader
hands events to a :class:`~agentstream._scheduling.TaskScheduler`: each
task's events are handled in stream order by one worker at a time, and a
worker stuck in one task's handler holds only that task. At most
``queue_size`` events are read ahead of the cursor; then the reader waits.

The cursor (:class:`~agentstream._tracking.CursorTracker`) advances only
past events whose handlers have all returned. A keeper thread writes it to
the cursor store at most every ``save_interval`` seconds, off the event
path, and once more when the listener stops.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
import weakref
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any, Callable, Optional, Union

from blinker import NamedSignal

from . import signals
from ._connection_log import ConnectionLog
from ._leasing import LeaseClock
from ._scheduling import TaskScheduler
from ._tracking import CursorTracker
from .cursors import CursorStore, LeaseStore, MemoryCursorStore
from .dispatch import DispatchResult, Registry, default_registry
from .errors import CursorMissingError, InvalidEventError, LeaseLostError, StoreResetError
from .health import ListenerHealth, ListenerState
from .models import TaskEvent
from .sse import Comment, Connected, Disconnected, Failed, Happening, Retrying, RetryPolicy
from .stream import StreamOpener, StreamOptions, TaskEventStream

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_SAVE_INTERVAL",
    "DEFAULT_STOP_TIMEOUT",
    "HandlerContext",
    "Listener",
    "ListenerStats",
]

logger: logging.Logger = logging.getLogger(__name__)

DEFAULT_SAVE_INTERVAL = 1.0
"""Seconds between two cursor saves (``docs/decisions.md``: why one second)."""

DEFAULT_LEASE_TTL = 15.0
"""Seconds a lease lasts without renewal (``docs/decisions.md``: why 15)."""

DEFAULT_STOP_TIMEOUT = 10.0
"""Seconds :meth:`Listener.run_forever` waits for running handlers on shutdown."""

HandlerContext = Callable[[TaskEvent], AbstractContextManager[Any]]
"""Makes the context manager entered around one event's handlers (an app context)."""

_Dispatch = Callable[..., DispatchResult]


@dataclass(frozen=True)
class ListenerStats:
    """Counters of a listener (a snapshot); :meth:`Listener.health` has more."""

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
    """Follows one stream on daemon threads and dispatches each event.

    Create it with :meth:`Client.listen <agentstream.Client.listen>`.

    :param streams: what opens the stream: anything with the
        :class:`~agentstream.stream.StreamOpener` method ``stream_events``
        (a :class:`~agentstream.Client` is one).
    :param options: what to stream (:class:`~agentstream.StreamOptions`).
    :param registry: the handlers; default the module-level decorators' one.
    :param cursor_store: where the cursor is saved; with a durable store a
        restarted process resumes after the last saved event. Default: in
        memory.
    :param name: the key of this listener's cursor in the store.
    :param workers: handler threads; events of one task keep their order.
        With one, the reader thread runs the handlers itself.
    :param queue_size: with ``workers > 1``, the most events read and not yet
        passed by the cursor; then the reader waits (memory stays bounded
        whatever the handlers do).
    :param save_interval: seconds between two writes of the cursor to the
        store (and one more on stop). A process that dies redelivers, at its
        next start, the events handled since the last write.
    :param retry: the reconnect policy; default
        :meth:`RetryPolicy.forever() <agentstream.sse.RetryPolicy.forever>`.
    :param handler_context: called with each event; the context manager it
        returns is entered around that event's handlers (the Flask and Django
        integrations push their app context and database hygiene this way).
    :param lease_ttl: with a :class:`~agentstream.cursors.LeaseStore` (SQLite,
        Redis, Django, ...), the listener holds a lease on ``name`` before it
        connects, so that one listener per name and store consumes, across
        processes and hosts; the others wait in state ``standby`` and take
        over when the lease expires or is released. Renewed every
        ``lease_ttl / 4``; a holder that could not renew stops dispatching
        ``lease_ttl * 3 / 4`` after its last renewal. None: no lease.
    :param on_missing_cursor: what an unscoped listener does when the store
        has no cursor for ``name`` and ``options.cursor`` is None: ``"live"``
        starts at the live end (with a WARNING, as for a new subscription),
        ``"error"`` fails with :class:`~agentstream.errors.CursorMissingError`
        (for a deployment whose store must never come back empty).
    :param restart_after_fork: the listener follows ``os.fork()`` into the
        children (``gunicorn --preload``: created and started at import in the
        master, run in the workers): before a fork the parent's copy is
        stopped, releasing its lease, and each forked child starts its own
        (see ``docs/deploying.md``). Without it the parent's copy runs on.
        Either way the child's copy is reset to ``new``: never a listener
        that says it runs with threads that did not survive the fork.
    """

    def __init__(
        self,
        streams: StreamOpener,
        options: Optional[StreamOptions] = None,
        *,
        registry: Optional[Registry] = None,
        cursor_store: Optional[CursorStore] = None,
        name: str = "default",
        workers: int = 1,
        queue_size: int = 1000,
        save_interval: float = DEFAULT_SAVE_INTERVAL,
        retry: Optional[RetryPolicy] = None,
        handler_context: Optional[HandlerContext] = None,
        lease_ttl: Optional[float] = DEFAULT_LEASE_TTL,
        on_missing_cursor: str = "live",
        restart_after_fork: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if not save_interval > 0:
            raise ValueError("save_interval must be more than 0 seconds")
        if on_missing_cursor not in ("live", "error"):
            raise ValueError('on_missing_cursor must be "live" or "error"')
        self._streams = streams
        self.options: StreamOptions = options or StreamOptions()
        self.registry: Registry = registry if registry is not None else default_registry
        self.cursor_store: CursorStore = cursor_store or MemoryCursorStore()
        self.name = name
        self.workers = workers
        self.queue_size = queue_size
        self.save_interval = save_interval
        self.retry_policy: RetryPolicy = retry or RetryPolicy.forever()
        self._handler_context = handler_context

        self.on_missing_cursor = on_missing_cursor
        self.restart_after_fork = restart_after_fork
        self._moved_by_fork = False  # stopped before a fork, to run in the children
        store = self.cursor_store
        self._lease_store: Optional[LeaseStore] = (
            store if lease_ttl is not None and isinstance(store, LeaseStore) else None
        )
        self._lease_ttl = lease_ttl
        self._fresh_state()
        _ALL_LISTENERS.add(self)

    def _fresh_state(self) -> None:
        """Everything that lives while the listener runs (again after a fork)."""
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)  # workers wait for a task
        self._room = threading.Condition(self._lock)  # the reader waits for room
        self._progress = threading.Condition(self._lock)  # wait_handled() waits
        self._waiting = 0  # threads in wait_handled(): notify only when someone waits
        self._stopping = threading.Event()
        self._aborting = False  # stop dispatching now: nothing more is handled
        self._paused = False  # lease lost: nothing is handled until it is held again
        self._handlers_ended = threading.Event()  # reader and workers all ended
        self._finished = threading.Event()  # ... and the last save is done
        self._save_lock = threading.Lock()
        self._signals_received = 0

        self._tracker = CursorTracker()
        self._scheduler: TaskScheduler[TaskEvent] = TaskScheduler()
        self._stream: Optional[TaskEventStream] = None
        self._threads: list[threading.Thread] = []
        self._keeper: Optional[threading.Thread] = None
        self._handler_threads_running = 0
        self._reading = False
        self._connection_log = ConnectionLog(self.name, logger)
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease = LeaseClock(self._lease_ttl or DEFAULT_LEASE_TTL)
        self._lease_deadline: Optional[float] = None  # the hot path's copy of valid_until
        self._store_trouble_logged = False

        self._state = ListenerState.NEW
        self._since = time.time()
        self._error: Optional[BaseException] = None
        self._last_error: Optional[str] = None
        self._handled = 0
        self._failures = 0
        self._connection_failures = 0
        self._connections = 0
        self._invalid = 0
        self._last_event: Optional[TaskEvent] = None
        self._last_event_at: Optional[float] = None
        self._cursor_saved: Optional[str] = None
        self._saved_at: Optional[float] = None
        self._started_in_pid: Optional[int] = None

    # -- state ------------------------------------------------------------------

    @property
    def state(self) -> ListenerState:
        """Where the listener is: see :class:`~agentstream.ListenerState`."""
        self._notice_unhooked_fork()
        return self._state

    def _notice_unhooked_fork(self) -> None:
        """A copy in a process forked without Python's fork hooks (uWSGI forks its
        workers from C and runs them only with ``py-call-osafterfork``): no
        thread of it survived, so reset it to ``new`` rather than let it say it
        runs. Checked where the listener is asked about, not per event."""
        started_in = self._started_in_pid
        if started_in is None or started_in == os.getpid():
            return
        logger.warning(
            "listener %r was started in process %d and this process (%d) was forked "
            "from it without Python's fork hooks (uWSGI without lazy-apps?): its threads "
            "did not survive, it is reset to 'new' (see docs/deploying.md)",
            self.name,
            started_in,
            os.getpid(),
        )
        self._fresh_state()

    @property
    def cursor(self) -> Optional[str]:
        """The id of the last event whose handlers have all returned (in memory)."""
        return self._tracker.cursor

    @property
    def cursor_saved(self) -> Optional[str]:
        """The cursor as last written to the cursor store."""
        return self._cursor_saved

    @property
    def error(self) -> Optional[BaseException]:
        """Why the listener stopped by itself (a 401, a handler that raised
        ``SystemExit``, ...), or None."""
        return self._error

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the listener has stopped or failed."""
        self._notice_unhooked_fork()
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

    def health(self) -> ListenerHealth:
        """A snapshot of state, lag, counters and cursors (see
        :class:`~agentstream.ListenerHealth`; ``health().ok`` is for liveness probes)."""
        self._notice_unhooked_fork()
        with self._lock:
            last = self._last_event
            return ListenerHealth(
                name=self.name,
                state=self._state,
                since=self._since,
                last_error=self._last_error,
                lag=None if last is None else max(0.0, time.time() - last.occurred_at.timestamp()),
                events_handled=self._handled,
                handler_failures=self._failures,
                connection_failures=self._connection_failures,
                reconnects=max(0, self._connections - 1),
                invalid_events=self._invalid,
                pending=self._tracker.outstanding,
                cursor=self._tracker.cursor,
                cursor_saved=self._cursor_saved,
                saved_at=self._saved_at,
                lease_token=self._lease.token,
            )

    # -- control ----------------------------------------------------------------

    def start(self) -> Listener:
        """Start the threads; the reader connects in the background. Returns the listener."""
        self._notice_unhooked_fork()
        with self._lock:
            if self._threads:
                raise RuntimeError("this listener was already started; create a new one")
            if self._stopping.is_set():  # stopped before it started: nothing to run
                self._state = ListenerState.STOPPED
                self._finished.set()
                return self
            self._state, self._since = ListenerState.CONNECTING, time.time()
            self._started_in_pid = os.getpid()
            self._handler_threads_running = 1 + (self.workers if self.workers > 1 else 0)
            self._threads.append(
                threading.Thread(
                    target=self._run_reader, name=f"agentstream-{self.name}-reader", daemon=True
                )
            )
            if self.workers > 1:
                for index in range(self.workers):
                    self._threads.append(
                        threading.Thread(
                            target=self._run_worker,
                            name=f"agentstream-{self.name}-worker-{index}",
                            daemon=True,
                        )
                    )
            self._keeper = threading.Thread(
                target=self._run_keeper, name=f"agentstream-{self.name}-keeper", daemon=True
            )
            self._reading = True
            # Started under the lock, so that a stop() on another thread never
            # sees a thread it cannot join yet.
            for thread in (*self._threads, self._keeper):
                thread.start()
        return self

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Stop, from any thread (a handler included), and save the cursor.

        The handlers in progress finish; with several workers, so do the
        events still needed for the cursor to cover every event already
        handled (those before the last one handled), so that the next
        listener with this name handles nothing twice. Nothing else is
        started: events read and not handled are left for the next start.

        Returns True if every thread ended within ``timeout`` seconds (None:
        wait as long as it takes). If not, the cursor is saved as it stands
        (before any handler still running) and the threads, daemons, do not
        keep the process from exiting.
        """
        self._notice_unhooked_fork()
        with self._lock:
            self._stopping.set()
            if self._threads and not self._state.is_final:
                self._set_state(ListenerState.STOPPING)
            stream = self._stream
            self._wake_all()
        if stream is not None:
            stream.close()
        if not self._threads:
            return True
        ended = self.join(timeout)
        if not ended:
            self._flush()  # the keeper's last save waits for the handler still running
        return ended

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the threads to end (stopped, failed, or the stream ended).

        From one of the listener's own threads (a handler), waits only for
        the others.
        """
        current = threading.current_thread()
        own = current in self._threads
        waited: list[Optional[threading.Thread]] = [*self._threads]
        if not own:
            waited.append(self._keeper)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in waited:
            if thread is None or thread is current:
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t is not None and t is not current and t.is_alive() for t in waited)

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
                while self._tracker.sequence < sequence:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._handlers_ended.is_set():
                        return self._tracker.sequence >= sequence
                    self._progress.wait(remaining)  # notified on progress and at the end
                return True
            finally:
                self._waiting -= 1

    def run_forever(self, *, stop_timeout: Optional[float] = DEFAULT_STOP_TIMEOUT) -> None:
        """Run until Ctrl-C or SIGTERM (then return), or until the listener fails.

        Meant as the last line of a script. On the first SIGINT or SIGTERM it
        stops, waiting up to ``stop_timeout`` seconds for the handlers in
        progress (None: as long as they take); a second signal exits at once
        (``SystemExit`` with 128 + the signal number). If the listener fails
        (a 401 or 403, a handler that raised ``SystemExit``...) it raises
        ``SystemExit`` with a message saying why, so the script exits non-zero.
        """
        if not self._threads:
            self.start()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            while not self._signals_received and not self._finished.wait(0.25):
                pass
            if not self.stop(stop_timeout):
                logger.warning(
                    "listener %r: a handler was still running %ss after the stop; exiting "
                    "anyway: its event was not marked handled and will be delivered again",
                    self.name,
                    stop_timeout,
                )
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if self._error is not None:
            raise SystemExit(f"agentstream: listener {self.name!r} failed: {self._last_error}")

    def __enter__(self) -> Listener:
        if not self._threads:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        self._notice_unhooked_fork()
        return f"<Listener {self.name!r} {self._state.value} cursor={self._tracker.cursor!r}>"

    # -- the reader ---------------------------------------------------------------

    def _run_reader(self) -> None:
        """Terms: hold the lease (if any), open the stream, read it; a lost lease
        ends the term and the listener stands by for the next one."""
        try:
            while True:
                if self._lease_store is not None and not self._take_lease():
                    return  # stopped while standing by
                stream = self._open()
                if stream is not None:
                    if self.workers > 1:
                        self._read_into_scheduler(stream)
                    else:
                        self._read_and_handle(stream)
                if not self._end_term():
                    return
        except BaseException as exc:
            self._fail(exc)
        finally:
            with self._lock:
                self._reading = False
                self._work_ready.notify_all()  # idle workers see that nothing more comes
            self._handler_thread_ended()

    def _take_lease(self) -> bool:
        """Wait in ``standby`` until the lease on ``name`` is granted; False if
        stopped first. A store that lost its data raises StoreResetError."""
        store, lease = self._lease_store, self._lease
        assert store is not None
        announced = False
        while not self._stopping.is_set():
            sent_at = time.monotonic()
            try:
                token = store.acquire(self.name, self._holder, lease.ttl)
            except StoreResetError:
                raise
            except Exception as exc:  # the store is down: stand by and try again
                token = None
                with self._lock:
                    self._last_error = f"{type(exc).__name__}: {exc}"
                self._store_trouble("cannot reach its cursor store to take the lease", exc)
            if token is not None:
                with self._lock:
                    lease.granted(token, sent_at)
                    self._lease_deadline = lease.valid_until
                    self._paused = False
                    self._set_state(ListenerState.CONNECTING)
                logger.info("listener %r holds the lease (fencing token %d)", self.name, token)
                self._store_trouble_logged = False
                return True
            if not announced:
                with self._lock:
                    self._set_state(ListenerState.STANDBY)
                holder = _describe_holder(store, self.name)
                logger.info("listener %r standing by: the lease is held %s", self.name, holder)
                announced = True
            self._stopping.wait(lease.standby_poll)
        return False

    def _end_term(self) -> bool:
        """After the stream of a term ended: True to stand by for another term
        (the lease was lost), False when the listener is done."""
        with self._lock:
            if not self._paused or self._stopping.is_set():
                return False
            # Wait for the workers to hand back what they hold, then forget the
            # term: the next one resumes from the store's cursor, which the new
            # holder may have moved.
            while self._scheduler.busy and not self._stopping.is_set():
                self._work_ready.wait()
            self._scheduler = TaskScheduler()
            self._tracker = CursorTracker()
            self._stream = None
            self._set_state(ListenerState.STANDBY)
        return True

    def _open(self) -> Optional[TaskEventStream]:
        """Load the cursor and open the stream, unless stop() came first."""
        # The store's cursor wins: options.cursor is only where a listener with
        # nothing saved yet starts.
        saved = self.cursor_store.load(self.name)
        cursor = saved or self.options.cursor
        if cursor is None and self.options.task_id is None:
            self._no_cursor()
        with self._lock:
            if self._stopping.is_set() or self._paused:  # stopped, or the lease just went
                return None
            self._tracker.cursor, self._cursor_saved = cursor, saved
            self._stream = self._streams.stream_events(
                replace(self.options, cursor=cursor),
                retry=self.retry_policy,
                on_happening=self._on_happening,
                on_invalid=self._on_invalid,
                on_sequence_reset=self._on_sequence_reset,
            )
            return self._stream

    def _no_cursor(self) -> None:
        """An unscoped stream with no cursor starts at the live end: never silently."""
        store = type(self.cursor_store).__name__
        if self.on_missing_cursor == "error":
            raise CursorMissingError(self.name, store)
        if not isinstance(self.cursor_store, MemoryCursorStore):
            logger.warning(
                "listener %r: %s has no cursor for it and no StreamOptions(cursor=...) was "
                "given: starting at the live end (earlier events are not delivered). If the "
                "store lost its data, stop and restore it; on_missing_cursor='error' refuses "
                "to start instead",
                self.name,
                store,
            )

    def _read_and_handle(self, stream: TaskEventStream) -> None:
        """One worker: read, parse and handle on this one thread.

        Handing events to a second thread cost about 2 us per event (objects
        made on one core and freed on another; docs/decisions.md). The
        bookkeeping is inline: this thread is the only writer, and readers
        take a snapshot; the lock is taken only to wake :meth:`wait_handled`.
        """
        dispatch = self._dispatcher()
        complete = self._tracker.complete_next
        received = signals.event_received
        stopping = self._stopping
        clock = time.time
        monotonic = time.monotonic
        for event in stream:
            if stopping.is_set():
                return
            deadline = self._lease_deadline
            if deadline is not None and monotonic() >= deadline:
                self._lose_lease("it was not renewed in time")
                return
            result = dispatch(event, sender=self, signal=received)
            complete(event.sequence, event.id)
            self._handled += 1
            if result.errors:
                self._failures += len(result.errors)
            self._last_event = event
            self._last_event_at = clock()
            if self._waiting:
                with self._lock:
                    self._progress.notify_all()

    def _read_into_scheduler(self, stream: TaskEventStream) -> None:
        tracker, scheduler, capacity = self._tracker, self._scheduler, self.queue_size
        for batch in stream.batches():
            with self._lock:
                for event in batch:
                    while tracker.outstanding >= capacity and not self._halted():
                        self._work_ready.notify_all()  # what was put so far
                        self._room.wait()
                    if self._halted():
                        return
                    tracker.begin(event.sequence, event.id)
                    scheduler.put(event.task_id, event)
                self._work_ready.notify_all()

    # -- workers (workers > 1) --------------------------------------------------------

    def _run_worker(self) -> None:
        dispatch = self._dispatcher()
        try:
            while True:
                taken = self._take_work()
                if taken is None:
                    return
                task, events = taken
                handled = 0
                try:
                    for event in events:
                        if not self._may_handle(event):
                            break
                        result = dispatch(event, sender=self, signal=signals.event_received)
                        handled += 1
                        self._completed(event, result)
                except BaseException as exc:
                    # Before the batch goes back: no other worker may take the
                    # event this one was handling.
                    self._fail(exc)
                    return
                finally:
                    with self._lock:
                        self._scheduler.done(task, events[handled:])
                        self._work_ready.notify_all()
        finally:
            self._handler_thread_ended()

    def _take_work(self) -> Optional[tuple[Optional[str], list[TaskEvent]]]:
        """The next task's batch for this worker, waiting for one; None when done."""
        with self._lock:
            while True:
                if self._aborting:
                    return None
                if self._paused and not self._stopping.is_set():
                    self._work_ready.wait()  # standing by: the next term brings work
                    continue
                stopping = self._stopping.is_set()
                needed = self._tracker.needed if stopping else None
                taken = self._scheduler.take(needed)
                if taken is not None:
                    return taken
                if stopping:
                    # Nothing needed now. An event still running may make more
                    # needed when it completes: its worker takes those itself.
                    return None
                if not stopping and not self._reading and self._scheduler.idle:
                    return None  # the stream ended and everything read is handled
                self._work_ready.wait()

    def _may_handle(self, event: TaskEvent) -> bool:
        if self._aborting or self._paused:
            return False
        deadline = self._lease_deadline
        if deadline is not None and time.monotonic() >= deadline:
            self._lose_lease("it was not renewed in time")
            return False
        if self._stopping.is_set():
            with self._lock:
                return self._tracker.needed(event.sequence)
        return True

    def _completed(self, event: TaskEvent, result: DispatchResult) -> None:
        with self._lock:
            self._handled += 1
            self._failures += len(result.errors)
            self._last_event = event
            self._last_event_at = time.time()
            if self._tracker.complete(event.sequence) and self._waiting:
                self._progress.notify_all()
            self._room.notify()

    # -- the keeper: saves off the event path, and the end ------------------------------

    def _run_keeper(self) -> None:
        period = self.save_interval
        if self._lease_store is not None:
            period = min(period, self._lease.renew_period / 2)
        next_save = time.monotonic() + self.save_interval
        try:
            while not self._handlers_ended.wait(period):
                self._renew_lease()
                if time.monotonic() >= next_save:
                    self._flush()
                    next_save = time.monotonic() + self.save_interval
            self._flush()
            self._release_lease()
        finally:
            with self._lock:
                self._set_state(
                    ListenerState.FAILED if self._error is not None else ListenerState.STOPPED
                )
                self._finished.set()
                self._progress.notify_all()

    def _renew_lease(self) -> None:
        store, lease = self._lease_store, self._lease
        if store is None or not lease.renewal_due(time.monotonic()):
            return
        token = lease.token
        assert token is not None
        sent_at = time.monotonic()
        try:
            renewed = store.renew(self.name, self._holder, token, lease.ttl)
        except Exception as exc:
            self._store_trouble("could not renew its lease", exc)
            with self._lock:
                self._last_error = f"{type(exc).__name__}: {exc}"
                lease.renewal_failed(time.monotonic())
            if not lease.holds(time.monotonic()):
                self._lose_lease("the store could not be reached to renew it")
            return
        if not renewed:
            self._lose_lease("the store says another listener holds it now")
            return
        with self._lock:
            if lease.token == token:
                lease.granted(token, sent_at)
                self._lease_deadline = lease.valid_until
        self._store_trouble_logged = False

    def _store_trouble(self, what: str, exc: Exception) -> None:
        """A WARNING for the first failure to reach the store, DEBUG after it
        until the store answers again (the keeper retries several times a second)."""
        level = logging.DEBUG if self._store_trouble_logged else logging.WARNING
        logger.log(level, "listener %r %s: %s", self.name, what, exc)
        self._store_trouble_logged = True

    def _release_lease(self) -> None:
        store, token = self._lease_store, self._lease.token
        if store is None or token is None:
            return
        with self._lock:
            self._lease.lost()
            self._lease_deadline = None
        try:
            store.release(self.name, self._holder, token)
        except Exception as exc:
            logger.warning("listener %r could not release its lease: %s", self.name, exc)

    def _lose_lease(self, why: str) -> None:
        """Stop dispatching at once and stand by: another listener may hold the
        lease now. Called from any thread, at most once per term."""
        with self._lock:
            if self._paused or self._lease_store is None:
                return
            self._paused = True
            token = self._lease.token
            self._lease.lost()
            self._lease_deadline = -1.0  # the hot path stops before the next event
            stream = self._stream
            self._wake_all()
        logger.warning(
            "listener %r lost its lease (fencing token %s): %s; it stopped dispatching "
            "and stands by",
            self.name,
            token,
            why,
        )
        if stream is not None:
            stream.close()

    def _flush(self) -> None:
        """Write the cursor to the store if it moved since the last write; with a
        lease, a fenced write that a newer holder's token refuses."""
        with self._save_lock:
            cursor = self._tracker.cursor
            if cursor is None or cursor == self._cursor_saved:
                return
            store, token = self._lease_store, self._lease.token
            try:
                if store is None:
                    self.cursor_store.save(self.name, cursor)
                elif token is None:
                    return  # no lease: this listener may not move the cursor
                else:
                    store.save_fenced(self.name, cursor, token)
            except LeaseLostError as exc:
                self._lose_lease(str(exc))
                return
            except Exception:
                logger.exception("listener %r could not save its cursor", self.name)
                return
            self._cursor_saved, self._saved_at = cursor, time.time()

    def _handler_thread_ended(self) -> None:
        with self._lock:
            self._handler_threads_running -= 1
            if self._handler_threads_running == 0:
                self._handlers_ended.set()
                self._progress.notify_all()  # wait_handled() returns at once

    # -- helpers ------------------------------------------------------------------

    def _dispatcher(self) -> _Dispatch:
        dispatch: _Dispatch = self.registry.dispatch
        make_context = self._handler_context
        if make_context is None:
            return dispatch

        def dispatch_in_context(event: TaskEvent, **kwargs: Any) -> DispatchResult:
            try:
                with make_context(event):
                    return dispatch(event, **kwargs)
            except Exception as exc:  # the context itself failed: reported like a handler
                logger.error("handler_context failed on event %s", event.id, exc_info=exc)
                self._send(signals.handler_failed, event=event, handler=make_context, error=exc)
                return DispatchResult(0, ((make_context, exc),))

        return dispatch_in_context

    def _fail(self, exc: BaseException) -> None:
        """Record why the listener ends. A non-``Exception`` (``SystemExit`` from a
        handler...) also stops dispatching at once: nothing more is handled."""
        with self._lock:
            if self._error is None:
                self._error = exc
                self._last_error = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, Exception):
                self._aborting = True
                self._stopping.set()
            stream = self._stream
            self._wake_all()
        if isinstance(exc, Exception):
            logger.error("listener %r stopped: %s", self.name, exc)
        else:
            kind = type(exc).__name__
            logger.error("listener %r stopped: a handler or receiver raised %s", self.name, kind)
        if stream is not None:
            stream.close()

    def _set_state(self, state: ListenerState) -> None:
        """Called with the lock held."""
        if state is not self._state and not self._state.is_final:
            self._state, self._since = state, time.time()

    def _halted(self) -> bool:
        """Called with the lock held: the reader must stop putting events."""
        return self._stopping.is_set() or self._paused

    def _wake_all(self) -> None:
        """Called with the lock held."""
        self._work_ready.notify_all()
        self._room.notify_all()
        self._progress.notify_all()

    # -- happenings to state, logs and signals ----------------------------------------

    def _on_happening(self, happening: Happening) -> None:
        if isinstance(happening, Comment):
            self._send(signals.heartbeat, comment=happening.text)
        elif isinstance(happening, Connected):
            with self._lock:
                self._connections += 1
                if not self._stopping.is_set():
                    self._set_state(ListenerState.CONNECTED)
            self._connection_log.connected(happening.url, happening.last_event_id)
            self._send(signals.connected, url=happening.url, cursor=happening.last_event_id)
        elif isinstance(happening, Disconnected):
            self._send(signals.disconnected, reason=happening.reason, error=happening.error)
        elif isinstance(happening, Retrying):
            with self._lock:
                self._connection_failures += 1
                if happening.error is not None:
                    self._last_error = f"{type(happening.error).__name__}: {happening.error}"
                if not self._stopping.is_set():
                    self._set_state(ListenerState.RETRYING)
            self._connection_log.failed(happening.error, happening.delay)
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

    def _on_sequence_reset(self, event: TaskEvent, previous_sequence: int) -> None:
        self._send(signals.sequence_reset, event=event, previous_sequence=previous_sequence)

    def _send(self, signal: NamedSignal, **kwargs: Any) -> None:
        for receiver, exc in signals.send_each(signal, self, **kwargs):
            logger.error("%s receiver %r raised", signal.name, receiver, exc_info=exc)

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        # Runs between two bytecodes of the main thread, which may be inside
        # _finished.wait() holding that Event's lock: only count here;
        # run_forever() sees it within 0.25 s and stops. A second signal, while
        # the stop waits for handlers, exits at once.
        self._signals_received += 1
        if self._signals_received > 1:
            raise SystemExit(128 + signum)


def _describe_holder(store: LeaseStore, name: str) -> str:
    try:
        held = store.lease_holder(name)
    except Exception:
        return "by another listener"
    if held is None:
        return "by another listener"
    holder, token, left = held
    return f"by {holder} (token {token}, {left:.1f}s left)"


# -- fork safety ---------------------------------------------------------------------

_ALL_LISTENERS: weakref.WeakSet[Listener] = weakref.WeakSet()


def _before_fork() -> None:
    """In the parent, before ``fork()``: a running listener with
    ``restart_after_fork`` moves to the children. It is stopped here (its lease
    released, so that one child can take it at once), and no thread of it is
    left holding a lock when the process is copied."""
    for listener in list(_ALL_LISTENERS):
        if (
            listener.restart_after_fork
            and listener._started_in_pid == os.getpid()
            and listener.running
        ):
            listener._moved_by_fork = True
            listener.stop(DEFAULT_STOP_TIMEOUT)


def _after_fork_in_child() -> None:
    """In a forked child, no listener thread survived: reset every listener that
    was started in the parent to ``new``, and start those that moved to the
    children."""
    for listener in list(_ALL_LISTENERS):
        if listener._started_in_pid is None or listener._started_in_pid == os.getpid():
            continue
        listener._fresh_state()
        if listener._moved_by_fork:
            try:
                listener.start()
            except Exception:
                logger.exception("listener %r could not restart after fork", listener.name)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
