"""Live task pages: the ``text/event-stream`` body a browser's ``EventSource`` reads.

Framework-neutral: :meth:`agentstream.contrib.flask.AgentStream.live_response`
and :func:`agentstream.contrib.django.live.live_response` wrap
:func:`open_live_stream` in their framework's response. How one page's
stream works:

- :func:`open_live_stream` checks the request first, so that a browser is
  answered with a status it does not retry (an unknown task, a bad
  ``Last-Event-ID``), then starts a *pump*: a daemon thread that reads the
  upstream into a small bounded hand-off. For one task the upstream is the
  client's shared task streams (:mod:`agentstream._multiplex`: one upstream
  connection however many pages are open); for a filter, a stream of its own.
- The web server's worker thread iterates the :class:`LiveStream`: each event
  as one SSE frame whose ``id`` is the event id (what the browser sends back
  as ``Last-Event-ID`` when it reconnects, and where the stream resumes: no
  gap, no duplicate), and a comment after every ``heartbeat_seconds`` without
  one. The response ends after the task's ``task.finished``.
- A browser that went away is noticed when a write to it fails, a heartbeat
  at the latest (the first write after the peer closed may still be accepted
  by the kernel, so within two heartbeats); the web server then closes the
  iterable, which stops the upstream, joins the pump and returns the worker.

Only events reach the browser: the API key stays in the ``Client``.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Callable, Optional, Union

from .._compat import model_private
from .._multiplex import IteratorStop
from ..client import Client
from ..errors import BadRequestError, CursorExpiredError, NotFoundError
from ..event_types import EventType
from ..models import TaskEvent
from ..sse import Connected, Happening
from ..sse._encode import encode_comment, encode_event, encode_retry
from ..stream import StreamOptions

__all__ = [
    "DEFAULT_PAGE_HEARTBEAT_SECONDS",
    "SSE_HEADERS",
    "LiveStream",
    "LiveStreamRefused",
    "open_live_stream",
]

logger = logging.getLogger(__name__)

DEFAULT_PAGE_HEARTBEAT_SECONDS = 15.0
"""Seconds without an event after which a page's stream sends a comment."""

SSE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    # nginx buffers proxied responses unless told not to; SSE must not be.
    ("X-Accel-Buffering", "no"),
)
"""The headers of a page's event stream."""

START_WAIT = 1.0
"""Seconds :func:`open_live_stream` waits for the upstream's first answer before
it starts the response (so that an error can still be an HTTP status). A
filter page without a cursor waits for its upstream to connect instead, up to
the client's timeout."""

HANDOFF_SIZE = 256
"""Events the pump may hold for a page whose browser reads slowly. When it is
full the pump waits, the shared stream's buffer for the page fills, and the
page falls back to its own catch-up from its last event: never silent loss."""

PUMP_JOIN_TIMEOUT = 2.0
_HEARTBEAT = encode_comment("heartbeat")
_UPSTREAM_FAILED = encode_comment("upstream stream failed; reconnect to resume")
_FINISHED = EventType.TASK_FINISHED


class LiveStreamRefused(Exception):
    """The request cannot get a stream: answer ``status`` with ``message``
    (plain text, safe to show; it never holds upstream details)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _End:
    """The upstream ended (after ``task.finished``, or nothing after the cursor)."""


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_Item = Union[TaskEvent, _End, _Failure]


class _Handoff:
    """Pump → worker: a bounded queue that either side can be woken from."""

    def __init__(self, capacity: int) -> None:
        self._items: collections.deque[_Item] = collections.deque()
        self._capacity = capacity
        self._cond = threading.Condition()
        self._closed = False
        self._connected = False

    def put(self, item: _Item) -> bool:
        """Add ``item``, waiting while full; False once closed (the page is gone)."""
        with self._cond:
            while len(self._items) >= self._capacity and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def connected(self) -> None:
        """The upstream answered 200 (ends :meth:`peek`'s wait)."""
        with self._cond:
            self._connected = True
            self._cond.notify_all()

    def peek(self, timeout: float) -> Optional[_Item]:
        """The first item, left in place, waiting up to ``timeout`` for it (or for
        the upstream to connect); None if there is none by then."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed or self._connected, timeout)
            return self._items[0] if self._items else None

    def take_all(self, timeout: float) -> Optional[list[_Item]]:
        """Every waiting item, waiting up to ``timeout`` for one (an empty list
        if none came); None once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            if self._closed:
                return None
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


class LiveStream:
    """A page's event stream: an iterable of ``bytes`` for a WSGI response, and
    :meth:`close`, which a WSGI server calls when the response is over
    (finished, or the browser went away). Made by :func:`open_live_stream`.

    ``status`` is 200, or 204 when there is nothing to stream (a finished
    task resumed after its last event: ``EventSource`` stops reconnecting on
    a 204). ``headers`` are :data:`SSE_HEADERS`.
    """

    def __init__(
        self,
        upstream: Iterable[TaskEvent],
        stop_upstream: Callable[[], None],
        *,
        handoff: _Handoff,
        heartbeat_seconds: float,
        retry_ms: Optional[int],
        event_types: Optional[frozenset[str]],
        name: str,
    ) -> None:
        self.status: int = 200
        self.headers: list[tuple[str, str]] = list(SSE_HEADERS)
        self.heartbeat_seconds = heartbeat_seconds
        self._upstream = upstream
        self._stop_upstream = stop_upstream
        self._handoff = handoff
        self._types = event_types
        self._preamble = (encode_retry(retry_ms) if retry_ms is not None else b"") + (
            encode_comment("connected")
        )
        self._lock = threading.Lock()
        self._released = False
        self._body: Optional[Iterator[bytes]] = None
        self._pump = threading.Thread(target=self._run_pump, name=name, daemon=True)

    def _start(self) -> None:
        self._pump.start()

    # -- the pump thread -------------------------------------------------------

    def _run_pump(self) -> None:
        upstream = self._upstream
        try:
            for event in upstream:
                if self._types is not None and str(event.type) not in self._types:
                    if event.type == _FINISHED:
                        break
                    continue
                if not self._handoff.put(event):
                    return  # the page is gone
            self._handoff.put(_End())
        except Exception as exc:
            self._handoff.put(_Failure(exc))
        finally:
            close = getattr(upstream, "close", None)
            if callable(close):
                close()  # a task iterator releases its subscription here

    # -- the worker thread -----------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        if self._body is None:
            self._body = self._frames() if self.status == 200 else iter(())
        return self._body

    def _frames(self) -> Iterator[bytes]:
        try:
            yield self._preamble
            while True:
                items = self._handoff.take_all(self.heartbeat_seconds)
                if items is None:
                    return
                if not items:
                    yield _HEARTBEAT
                    continue
                chunk: list[bytes] = []
                for item in items:
                    if isinstance(item, TaskEvent):
                        try:
                            chunk.append(frame(item))
                        except ValueError:  # a line break in its id or type
                            logger.warning(
                                "a live page skipped event %r of type %r: SSE cannot carry "
                                "a line break in an id or type",
                                item.id,
                                str(item.type),
                            )
                    elif isinstance(item, _End):
                        if chunk:
                            yield b"".join(chunk)
                        return
                    else:
                        logger.warning(
                            "a live page's upstream failed; the browser will reconnect: %s",
                            item.error,
                        )
                        chunk.append(_UPSTREAM_FAILED)
                        yield b"".join(chunk)
                        return
                yield b"".join(chunk)
        finally:
            self._release()

    def close(self) -> None:
        """End the stream: stop its upstream and free its thread. Idempotent;
        what a WSGI server calls on the response iterable."""
        body = self._body
        if body is not None:
            close = getattr(body, "close", None)
            if callable(close):
                close()
        self._release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._stop_upstream()  # wakes the pump's blocked read
        self._handoff.close()  # wakes a pump waiting on a full hand-off
        if self._pump.ident is not None and self._pump is not threading.current_thread():
            self._pump.join(PUMP_JOIN_TIMEOUT)
            if self._pump.is_alive():  # pragma: no cover - an upstream that ignored close()
                logger.warning("a live page's upstream thread did not stop in time")


def frame(event: TaskEvent) -> bytes:
    """One event as the SSE frame a page receives: ``id`` (its resume point),
    ``event`` (its wire type) and ``data`` (its JSON envelope, as the server sent it)."""
    return encode_event(envelope_json(event), event=str(event.type), id=event.id)


def envelope_json(event: TaskEvent) -> str:
    """The event's JSON envelope: the text it was parsed from, or its wire form."""
    private = model_private(event)
    source = private.get("source") if private is not None else None
    if isinstance(source, bytes):
        source = source.decode("utf-8")
    if isinstance(source, str):
        return source
    envelope = event.model_dump(mode="json", by_alias=True)
    envelope["data"] = event.raw
    return json.dumps(envelope, separators=(",", ":"))


def open_live_stream(
    client: Client,
    *,
    task_id: Optional[str] = None,
    event_types: Optional[Sequence[Union[str, EventType]]] = None,
    last_event_id: Optional[str] = None,
    heartbeat_seconds: float = DEFAULT_PAGE_HEARTBEAT_SECONDS,
    retry_ms: Optional[int] = None,
    upstream_heartbeat_seconds: Optional[int] = None,
) -> LiveStream:
    """Start one page's event stream.

    :param client: the client whose key reads the upstream (it stays here).
    :param task_id: follow this task, from its first event to its
        ``task.finished``, on the client's shared task streams. Without it,
        follow ``event_types`` (all when None) from the live end, on a stream
        of its own.
    :param event_types: only these types (with a task: its ``task.finished``
        still ends the stream).
    :param last_event_id: the browser's ``Last-Event-ID``: resume after it.
    :param heartbeat_seconds: a comment after this many seconds without an event.
    :param retry_ms: sent as ``retry:``, how long the browser waits before it
        reconnects (None: the browser's default, about 3 s).
    :param upstream_heartbeat_seconds: the heartbeat asked of the upstream.

    Raises :class:`LiveStreamRefused` for what the browser asked wrong (an
    unknown task, one not created with ``events_streaming=True``, a
    ``Last-Event-ID`` the server refuses); other errors (a wrong API key, the
    server unreachable) are raised as they are.
    """
    if not heartbeat_seconds > 0:
        raise ValueError(f"heartbeat_seconds must be positive, got {heartbeat_seconds!r}")
    types = frozenset(str(t) for t in event_types) if event_types else None
    handoff = _Handoff(HANDOFF_SIZE)
    upstream: Iterable[TaskEvent]
    stop_upstream: Callable[[], None]
    if task_id is not None:
        try:
            task = client.get_task(task_id)
        except NotFoundError:
            raise LiveStreamRefused(404, "no such task") from None
        if not task.events_streaming:
            raise LiveStreamRefused(
                404, "this task has no live events (it was not created with events_streaming)"
            )
        if types is not None:
            StreamOptions(event_types=sorted(types))  # checks the names
        stop = IteratorStop()
        upstream = client.task_streams.events(
            task.id, cursor=last_event_id, heartbeat_seconds=upstream_heartbeat_seconds, stop=stop
        )
        stop_upstream = stop.set
        name = f"agentstream-live-{task.id}"
    else:

        def on_happening(happening: Happening) -> None:
            if isinstance(happening, Connected):
                handoff.connected()

        stream = client.stream_events(
            StreamOptions(
                event_types=sorted(types) if types else None,
                cursor=last_event_id,
                heartbeat_seconds=upstream_heartbeat_seconds,
            ),
            on_happening=on_happening,
        )
        upstream, stop_upstream = stream, stream.close
        types = None  # the server filters
        name = "agentstream-live-filter"
    live = LiveStream(
        upstream,
        stop_upstream,
        handoff=handoff,
        heartbeat_seconds=heartbeat_seconds,
        retry_ms=retry_ms,
        event_types=types,
        name=name,
    )
    live._start()
    # A filter page without a cursor starts at the live end, which is where the
    # upstream is when it connects: the page answers once it has, so that what
    # happens after the browser saw the response start reaches it.
    wait = START_WAIT if task_id is not None or last_event_id else client.timeout
    first = handoff.peek(wait)
    if isinstance(first, _End):
        live.close()
        live.status = 204
    elif isinstance(first, _Failure):
        live.close()
        error = first.error
        if isinstance(error, CursorExpiredError):
            raise LiveStreamRefused(410, "Last-Event-ID is older than the server keeps") from None
        if isinstance(error, BadRequestError) and last_event_id is not None:
            raise LiveStreamRefused(400, "Last-Event-ID is not a cursor of this stream") from None
        if isinstance(error, NotFoundError):
            raise LiveStreamRefused(404, "no such task") from None
        raise error
    return live
