"""Typed event streams: :class:`StreamOptions` and :class:`TaskEventStream`."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Union

from .errors import InvalidEventError
from .event_types import WIRE_TYPES, EventType
from .models import TaskEvent, parse_event
from .sse import EventSource, Happening, RetryPolicy, ServerSentEvent

__all__ = [
    "DEFAULT_STREAM_READ_TIMEOUT",
    "RECENT_IDS",
    "StreamOpener",
    "StreamOptions",
    "TaskEventStream",
    "read_timeout_for",
]

logger: logging.Logger = logging.getLogger(__name__)

DEFAULT_STREAM_READ_TIMEOUT = 60.0
"""Read timeout of a stream that did not ask for a heartbeat interval (seconds)."""

RECENT_IDS = 4096
"""How many delivered event ids a stream remembers to tell a replayed event
from a restarted sequence (see :class:`TaskEventStream`)."""


@dataclass(frozen=True)
class StreamOptions:
    """What to stream, as AgentRail's ``StreamOptions``.

    :param event_types: only these types (wire strings or :class:`EventType`);
        ``None`` for all.
    :param task_id: only this task's events; such a stream starts at the
        task's first event and ends after its ``task.finished``.
    :param cursor: resume after this event id (the ``id`` of the last event
        you handled); without one, an unscoped stream starts at the live end.
    :param heartbeat_seconds: ask the server for a heartbeat comment this
        often (1 to 300). The stream takes a connection that stays silent for
        ``2 * heartbeat_seconds + 1`` seconds as dead and resumes.

    Invalid values raise ``ValueError`` at construction, before any request.
    """

    event_types: Optional[Sequence[Union[str, EventType]]] = None
    task_id: Optional[str] = None
    cursor: Optional[str] = None
    heartbeat_seconds: Optional[int] = None

    def __post_init__(self) -> None:
        if isinstance(self.event_types, str):
            raise ValueError("event_types must be a list of event types, not a single string")
        for event_type in self.event_types or ():
            if str(event_type) not in WIRE_TYPES:
                known = ", ".join(sorted(WIRE_TYPES))
                raise ValueError(f"unknown event type {event_type!r}; known types: {known}")
        if self.heartbeat_seconds is not None and (
            isinstance(self.heartbeat_seconds, bool)
            or not isinstance(self.heartbeat_seconds, int)
            or not 1 <= self.heartbeat_seconds <= 300
        ):
            raise ValueError(
                f"heartbeat_seconds must be an integer from 1 to 300, "
                f"got {self.heartbeat_seconds!r}"
            )
        if self.task_id is not None and not self.task_id:
            raise ValueError("task_id must be a non-empty string or None")

    def query_params(self) -> dict[str, str]:
        """The query parameters of ``GET /task-events/stream`` (without the cursor)."""
        params: dict[str, str] = {}
        if self.event_types:
            params["eventTypes"] = ",".join(str(t) for t in self.event_types)
        if self.task_id:
            params["taskId"] = self.task_id
        if self.heartbeat_seconds is not None:
            params["heartbeatSeconds"] = str(self.heartbeat_seconds)
        return params


def read_timeout_for(options: StreamOptions) -> float:
    """The read timeout that detects a dead connection for these options."""
    if options.heartbeat_seconds is None:
        return DEFAULT_STREAM_READ_TIMEOUT
    return 2.0 * options.heartbeat_seconds + 1.0


class TaskEventStream:
    """An iterable, closeable stream of :class:`~agentstream.models.TaskEvent`.

    Each event is yielded as soon as it arrives. Across reconnects nothing is
    lost (the stream resumes from the last event id) and nothing is delivered
    twice: an event whose ``sequence`` is not above the last delivered one,
    and whose id is one of the last :data:`RECENT_IDS` delivered, is a replay
    and is dropped. An event that cannot be parsed (not JSON, no
    ``id``/``type``) is logged and passed to ``on_invalid``; the stream goes on.

    A sequence that goes back with an id not delivered is a *sequence reset*
    (the server's store was reset, or its sequences are not monotonic): the
    event is delivered, the stream counts it in :attr:`sequence_resets`, logs
    a WARNING, calls ``on_sequence_reset(event, previous_sequence)``, and
    de-duplicates from the new sequence on. Never silent loss; a replay older
    than the last :data:`RECENT_IDS` ids is delivered again, as a reset.

    Use it as a context manager, or call :meth:`close` (from any thread).
    """

    def __init__(
        self,
        source: EventSource,
        *,
        on_invalid: Optional[Callable[[InvalidEventError], None]] = None,
        on_sequence_reset: Optional[Callable[[TaskEvent, int], None]] = None,
    ) -> None:
        self._source = source
        self._on_invalid = on_invalid
        self.on_sequence_reset = on_sequence_reset
        """Called with ``(event, previous_sequence)`` on a sequence reset (settable)."""
        self.sequence_resets: int = 0
        """How many sequence resets this stream has seen."""
        self._cursor = source.last_event_id
        self._last_sequence = -1
        self._recent_ids: deque[str] = deque(maxlen=RECENT_IDS)
        self._events: Optional[Iterator[TaskEvent]] = None

    @property
    def cursor(self) -> Optional[str]:
        """The id of the last event delivered (pass it as ``cursor`` to resume)."""
        return self._cursor

    @property
    def source(self) -> EventSource:
        """The underlying :class:`~agentstream.sse.EventSource`."""
        return self._source

    @property
    def closed(self) -> bool:
        """True once closed or ended."""
        return self._source.closed

    def close(self) -> None:
        """Stop the stream, from any thread; a blocked read is woken at once."""
        self._source.close()

    def __iter__(self) -> Iterator[TaskEvent]:
        if self._events is None:
            self._events = self._iterate()
        return self._events

    def __next__(self) -> TaskEvent:
        return next(iter(self))

    def _iterate(self) -> Iterator[TaskEvent]:
        # A generator, handed out by __iter__ so that a for loop resumes it
        # directly (cheaper than a __next__ method per event). Raw events come
        # a socket read at a time but are parsed one at a time, as they are
        # handed out: parsing a whole batch first made validation ~40% slower
        # (many live objects, colder caches).
        source = self._source
        parse_one = self.parse_one
        for batch in source.batches():
            for raw in batch:
                if source.closed:  # closed, possibly from another thread
                    return
                event = parse_one(raw)
                if event is not None:
                    self._cursor = event.id
                    yield event

    def batches(self) -> Iterator[list[TaskEvent]]:
        """Iterate lists of events, one per read from the socket (see
        :meth:`EventSource.batches <agentstream.sse.EventSource.batches>`).

        Use either this or plain iteration, not both. :attr:`cursor` is the id
        of the last event of the last batch handed out.
        """
        for raw in self._source.batches():
            events = self.parse(raw)
            if events:
                self._cursor = events[-1].id
                yield events

    def __enter__(self) -> TaskEventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def parse(self, raw_events: list[ServerSentEvent]) -> list[TaskEvent]:
        """Turn a batch of raw events into typed ones (see :meth:`parse_one`)."""
        events = []
        for raw in raw_events:
            event = self.parse_one(raw)
            if event is not None:
                events.append(event)
        return events

    def parse_one(self, raw: ServerSentEvent) -> Optional[TaskEvent]:
        """Turn a raw event into a typed one, as iteration does, for a consumer
        that reads :attr:`source` itself on one thread. None for an event already
        delivered (by sequence) or one that cannot be parsed (reported)."""
        try:
            event = parse_event(raw.data)
        except InvalidEventError as exc:
            self._report_invalid(exc, raw.id)
            return None
        except Exception as exc:
            # A bug, or input nobody foresaw. Raised, it would end iteration
            # for good (it runs in a generator); no one event may do that.
            self._report_unexpected(exc, raw)
            return None
        if event.sequence <= self._last_sequence:
            if event.id in self._recent_ids:  # a scan, on this rare path only
                logger.debug("dropping duplicate event %s (sequence %d)", event.id, event.sequence)
                return None
            self._report_reset(event)
        self._last_sequence = event.sequence
        self._recent_ids.append(event.id)
        return event

    def _report_reset(self, event: TaskEvent) -> None:
        previous = self._last_sequence
        self.sequence_resets += 1
        logger.warning(
            "sequence reset: event %s has sequence %d after %d, and its id was not delivered "
            "before; delivering it and de-duplicating from sequence %d on (was the server's "
            "store reset?)",
            event.id,
            event.sequence,
            previous,
            event.sequence,
        )
        if self.on_sequence_reset is not None:
            try:
                self.on_sequence_reset(event, previous)
            except Exception:
                logger.exception("on_sequence_reset callback raised")

    def _report_unexpected(self, exc: Exception, raw: ServerSentEvent) -> None:
        """Report an event whose parsing raised something other than
        :class:`InvalidEventError` (a bug, or input nobody foresaw) as invalid."""
        logger.error("parsing event %s raised", raw.id, exc_info=exc)
        error = InvalidEventError(
            f"event could not be parsed: {type(exc).__name__}: {exc}", raw=raw.data
        )
        error.__cause__ = exc
        self._report_invalid(error, raw.id)

    def _report_invalid(self, exc: InvalidEventError, sse_id: Optional[str]) -> None:
        logger.warning("skipping an event that cannot be parsed (id %s): %s", sse_id, exc)
        if self._on_invalid is not None:
            try:
                self._on_invalid(exc)
            except Exception:
                logger.exception("on_invalid callback raised")

    def __repr__(self) -> str:
        return f"<TaskEventStream cursor={self._cursor!r} {'closed' if self.closed else 'open'}>"


class StreamOpener(Protocol):
    """What opens a typed stream: the one method a
    :class:`~agentstream.Listener` and a :class:`~agentstream.Task` need of a
    :class:`~agentstream.Client` (so that neither imports the client)."""

    def stream_events(
        self,
        options: Optional[StreamOptions] = None,
        *,
        retry: Optional[RetryPolicy] = None,
        on_happening: Optional[Callable[[Happening], None]] = None,
        on_invalid: Optional[Callable[[InvalidEventError], None]] = None,
        on_sequence_reset: Optional[Callable[[TaskEvent, int], None]] = None,
    ) -> TaskEventStream:
        """Open a stream of typed events (see :meth:`Client.stream_events
        <agentstream.Client.stream_events>`)."""
        ...
