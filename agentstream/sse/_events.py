"""What the wire layer hands out: raw events, comments, and connection happenings.

Three kinds of object, kept apart on purpose: a :class:`ServerSentEvent` is
data from the server; a :class:`Comment` is a keep-alive line; the
*happenings* (:class:`Connected`, :class:`Disconnected`, :class:`Retrying`,
:class:`Failed`) describe the connection and never appear among events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Union

import sseclient

__all__ = [
    "Comment",
    "Connected",
    "Disconnected",
    "Failed",
    "Happening",
    "Retrying",
    "ServerSentEvent",
]


class ServerSentEvent(sseclient.Event):
    """One dispatched SSE event.

    Attributes, as in sseclient-py's ``Event`` (this is a subclass, so code
    written for sseclient-py keeps working):

    ``event``
        The event type; ``"message"`` when the server sent no ``event:`` field.
    ``data``
        The data lines joined with ``"\\n"``.
    ``id``
        The stream's last event ID at dispatch (it persists across events until
        the server changes it), or ``None`` if the server never sent one.
    ``retry``
        The reconnection time in milliseconds sent in this event's block, as an
        ``int``, or ``None``.
    """

    def __init__(
        self,
        id: Optional[str] = None,
        event: str = "message",
        data: str = "",
        retry: Optional[int] = None,
    ) -> None:
        # sseclient's Event(id, event, data, retry) order, for positional callers.
        # Set attributes directly: cheaper than sseclient's __init__ on the hot path.
        self.event = event
        self.data = data
        self.id = id
        self.retry = retry

    def __repr__(self) -> str:
        return (
            f"ServerSentEvent(event={self.event!r}, data={self.data!r}, "
            f"id={self.id!r}, retry={self.retry!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return (self.event, self.data, self.id, self.retry) == (
            other.event,
            other.data,
            other.id,
            other.retry,
        )

    __hash__: ClassVar[None] = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Comment:
    """A comment line (``: text``): a keep-alive, not an event."""

    text: str


@dataclass(frozen=True)
class Connected:
    """A connection is open and the server answered 200 with an event stream."""

    url: str
    last_event_id: Optional[str]


@dataclass(frozen=True)
class Disconnected:
    """An open connection ended. ``reason`` says why; ``error`` is the cause, if any."""

    reason: str
    error: Optional[BaseException] = None


@dataclass(frozen=True)
class Retrying:
    """The stream will try again in ``delay`` seconds (``attempt`` counts from 1)."""

    delay: float
    attempt: int
    error: Optional[BaseException] = None


@dataclass(frozen=True)
class Failed:
    """The stream gave up; iterating it raises ``error``."""

    error: BaseException


Happening = Union[Connected, Disconnected, Retrying, Failed, Comment]
