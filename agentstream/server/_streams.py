"""The SSE stream endpoint: its query, and the generator that writes one stream.

A stream first replays from the store (``sequence > cursor``, in batches),
then subscribes to the fan-out (``_fanout``) and writes what it is handed:
the subscription fills the events between the last replayed one and the
live end, so the switch from replay to live can neither skip nor repeat an
event. While caught up it sleeps until an event, a heartbeat is due, its
client goes away (``_watch``) or the server stops or drops it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from werkzeug.wrappers import Request

from ..event_types import WIRE_TYPES, EventType
from ..sse._encode import encode_comment
from ._bodies import ApiError
from ._errors import ExpiredCursorError, InvalidCursorError, StoreClosedError
from ._events import StoredEvent
from ._fanout import Broadcaster, Subscription
from ._http import DirectWriter
from ._store import EventStore
from ._watch import PeerWatcher

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["MAX_HEARTBEAT", "MIN_HEARTBEAT", "OpenStreams", "StreamSpec", "parse_stream_query"]

logger = logging.getLogger(__name__)

MIN_HEARTBEAT = 1.0
MAX_HEARTBEAT = 300.0
_MAX_CURSOR_LENGTH = 200
_BATCH = 256
_FINISHED = EventType.TASK_FINISHED.value
_CONNECTED = encode_comment("connected")
_HEARTBEAT = encode_comment("heartbeat")


@dataclass(frozen=True)
class StreamSpec:
    """A validated stream request: where it starts, what it wants, for whom."""

    after: int
    types: Optional[frozenset[str]]
    task_id: Optional[str]
    organization_id: str
    heartbeat: float


def parse_stream_query(
    request: Request, store: EventStore, organization_id: str, heartbeat_default: float
) -> Optional[StreamSpec]:
    """Validate the stream's query (an :class:`ApiError` if it is bad); None means 204
    (the task stream is over)."""
    args = request.args
    types: Optional[frozenset[str]] = None
    names = [n.strip() for raw in args.getlist("eventTypes") for n in raw.split(",")]
    names = [n for n in names if n]
    if names:
        unknown = sorted({n for n in names if n not in WIRE_TYPES})
        if unknown:
            raise ApiError(
                400,
                "invalid_event_type",
                f"unknown event type(s): {', '.join(u[:100] for u in unknown[:10])}",
                {"parameter": "eventTypes", "unknown": [u[:100] for u in unknown[:10]]},
            )
        types = frozenset(names)

    heartbeat = heartbeat_default
    raw_heartbeat = args.get("heartbeatSeconds")
    if raw_heartbeat is not None:
        try:
            heartbeat = float(raw_heartbeat)
        except ValueError:
            heartbeat = math.nan
        if not (math.isfinite(heartbeat) and MIN_HEARTBEAT <= heartbeat <= MAX_HEARTBEAT):
            raise ApiError(
                400,
                "invalid_parameter",
                f"heartbeatSeconds must be a number from {MIN_HEARTBEAT:g} to {MAX_HEARTBEAT:g}",
                {
                    "parameter": "heartbeatSeconds",
                    "min": int(MIN_HEARTBEAT),
                    "max": int(MAX_HEARTBEAT),
                },
            )

    task_id = args.get("taskId") or None
    positions = None
    if task_id is not None:
        positions = store.task_positions(task_id, organization_id)
        if positions is None:
            raise ApiError(404, "task_not_found", "no such task", {"taskId": task_id[:100]})

    cursor = args.get("cursor") or request.headers.get("Last-Event-ID") or None
    if cursor is not None:
        if len(cursor) > _MAX_CURSOR_LENGTH:
            raise ApiError(
                400, "invalid_cursor", "the cursor is not valid", {"parameter": "cursor"}
            )
        try:
            after = store.resolve_cursor(cursor)
        except InvalidCursorError as exc:
            raise ApiError(
                400, "invalid_cursor", str(exc), {"parameter": "cursor", "cursor": cursor}
            ) from None
        except ExpiredCursorError as exc:
            raise ApiError(
                410,
                "cursor_expired",
                str(exc),
                {"cursor": cursor, "oldestSequence": exc.oldest_sequence},
            ) from None
        finished = None if positions is None else positions.finished_sequence
        if finished is not None and after >= finished:
            return None  # the task stream is over: 204 tells the client to stop
    elif positions is not None:
        after = positions.first_sequence - 1
        oldest = store.oldest_sequence
        if after + 1 < oldest:
            raise ApiError(
                410,
                "cursor_expired",
                "the task's first events are older than the oldest event the server keeps",
                {"taskId": task_id, "oldestSequence": oldest},
            )
    else:
        after = store.head_sequence  # live end: only events appended from now on
    return StreamSpec(after, types, task_id, organization_id, heartbeat)


class _Handle:
    """One open stream: its socket (when the server exposes it), its subscription, and why
    it must stop."""

    __slots__ = ("sock", "stop", "subscription")

    def __init__(self, sock: Optional[socket.socket]) -> None:
        self.sock = sock
        self.stop: Optional[str] = None  # None, "closing" or "dropped"
        self.subscription: Optional[Subscription] = None

    def stopped(self) -> bool:
        """True once the server stops or drops this stream (set from another thread)."""
        return self.stop is not None


class OpenStreams:
    """Every open stream, the fan-out that feeds them and the watcher of their clients.

    :param backlog: events a stream may have waiting before it is disconnected.
    :param interval: seconds between two rounds of the fan-out at least.
    """

    def __init__(self, store: EventStore, *, backlog: int, interval: float) -> None:
        self._store = store
        self._cond = threading.Condition()
        self._open: set[_Handle] = set()
        self.broadcaster = Broadcaster(store, backlog=backlog, interval=interval)
        self._watcher = PeerWatcher()

    def count(self) -> int:
        with self._cond:
            return len(self._open)

    def wait_count(self, count: int, timeout: float) -> bool:
        """Wait until exactly ``count`` streams are open; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._open) == count, timeout)

    def stop_all(self, reason: str) -> int:
        """Stop every open stream: ``"closing"`` ends them, ``"dropped"`` cuts their sockets."""
        with self._cond:
            handles = list(self._open)
        for handle in handles:
            handle.stop = reason
            if reason == "dropped" and handle.sock is not None:
                with contextlib.suppress(OSError):  # already gone
                    handle.sock.shutdown(socket.SHUT_RDWR)
            if handle.subscription is not None:
                handle.subscription.wake()
        return len(handles)

    def close(self, timeout: float) -> None:
        """After :meth:`stop_all`: stop the fan-out and the watcher."""
        self.broadcaster.close(timeout)
        self._watcher.close()

    def body(self, spec: StreamSpec, environ: WSGIEnvironment) -> Iterator[bytes]:
        """The stream's response body: a comment, then events and heartbeats."""
        sock = _connection_socket(environ)
        handle = _Handle(sock)
        with self._cond:
            self._open.add(handle)
            self._cond.notify_all()
        writer = environ.get("agentstream.direct_writer")
        try:
            yield from self._run(spec, handle, writer)
        finally:
            if sock is not None:
                self._watcher.unwatch(sock)
            if handle.subscription is not None:
                handle.subscription.end("closed")  # no direct write after this
                self.broadcaster.unsubscribe(handle.subscription)
            with self._cond:
                self._open.discard(handle)
                self._cond.notify_all()

    def _run(
        self, spec: StreamSpec, handle: _Handle, writer: Optional[DirectWriter]
    ) -> Iterator[bytes]:
        yield _CONNECTED
        framer = _Framer(spec)
        last_write = time.monotonic()
        position = spec.after
        while True:  # replay from the store until close to the live end, then subscribe
            if handle.stopped():
                return
            try:
                batch = self._store.read_after(
                    position,
                    types=framer.query_types,
                    task_id=spec.task_id,
                    organization_id=spec.organization_id,
                    limit=_BATCH,
                )
            except StoreClosedError:
                return
            if batch.gap:
                # Retention deleted events this stream had not sent yet. End it:
                # the client reconnects with its cursor and gets 410, never a gap.
                logger.info("a stream fell behind retention at sequence %d", position)
                return
            if batch.events:
                chunk = framer.frames(batch.events)
                yield chunk
                last_write = time.monotonic()
                if framer.finished:
                    return
                if len(batch.events) == _BATCH:
                    position = batch.events[-1].sequence
                    continue
            position = max(position, batch.head)
            try:
                subscription = self.broadcaster.subscribe(
                    position,
                    types=framer.query_types,
                    task_id=spec.task_id,
                    organization_id=spec.organization_id,
                )
            except StoreClosedError:
                return
            if subscription is not None:
                break
        handle.subscription = subscription
        sock = handle.sock
        if sock is not None:
            subscription.on_end = _shut(sock)  # a stream ended by the fan-out: cut at once
            if not self._watcher.watch(sock, lambda: subscription.end("client_gone")):
                return
        if spec.task_id is None:  # task streams end at task.finished: their thread writes
            subscription.writer = writer
            subscription.resume_direct()
        if handle.stopped():
            return
        while True:
            idle = time.monotonic() - max(last_write, subscription.last_direct_write)
            if idle >= spec.heartbeat:
                subscription.pause_direct()
                yield _HEARTBEAT
                last_write = time.monotonic()
                subscription.resume_direct()
                continue
            events = subscription.wait(spec.heartbeat - idle)
            if handle.stopped() or subscription.ended is not None:
                if subscription.ended not in (None, "closed", "client_gone"):
                    logger.info("a stream was ended: %s", subscription.ended)
                return
            # Here the broadcaster does not write (it queued these, or left a rest in
            # writer.pending, which the HTTP layer writes first): this thread does.
            if events:
                yield framer.frames(events)
                last_write = time.monotonic()
                if framer.finished:
                    return
            else:  # woken for what a direct write left in writer.pending
                yield b""
            subscription.resume_direct()


class _Framer:
    """Turns events into one chunk of SSE frames; knows when a task stream is over."""

    def __init__(self, spec: StreamSpec) -> None:
        self._spec = spec
        self.finished = False
        self.query_types = spec.types
        if spec.task_id is not None and spec.types is not None:
            self.query_types = spec.types | {_FINISHED}  # to know when the task stream ends

    def frames(self, events: list[StoredEvent]) -> bytes:
        spec = self._spec
        if spec.task_id is None:
            return b"".join([event.frame for event in events])
        frames: list[bytes] = []
        for event in events:
            if event.type == _FINISHED:
                self.finished = True
                if spec.types is None or _FINISHED in spec.types:
                    frames.append(event.frame)
                else:  # not asked for: still move the client's cursor past it
                    frames.append(f"id: {event.id}\n\n".encode())
                break
            frames.append(event.frame)
        return b"".join(frames)


def _shut(sock: socket.socket) -> Callable[[str], None]:
    def shut(reason: str) -> None:
        if reason in ("overflow", "gap"):
            with contextlib.suppress(OSError):  # unblocks a write stuck on a slow client
                sock.shutdown(socket.SHUT_RDWR)

    return shut


def _connection_socket(environ: WSGIEnvironment) -> Optional[socket.socket]:
    """The client's socket, when the WSGI server exposes it (werkzeug, gunicorn)."""
    for key in ("werkzeug.socket", "gunicorn.socket"):
        sock = environ.get(key)
        if isinstance(sock, socket.socket):
            return sock
    return None
