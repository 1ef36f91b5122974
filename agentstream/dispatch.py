"""Handlers: the :class:`Registry` and the module-level decorators.

::

    from agentstream import on, on_auth_event

    @on("task.shipped")
    def shipped(event): ...

    @on_auth_event
    def needs_login(event): ...

A decorator returns the function unchanged, so a handler stays a plain
function that tests can call. Registries hold handlers strongly (unlike
blinker's default), so a handler defined inside a function keeps firing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Callable, Final, Optional, TypeVar, Union, cast, overload

from blinker import Signal

from . import signals
from .event_types import WIRE_TYPES, EventType
from .models import (
    AuthRequiredEvent,
    MessageChunkEvent,
    PlanUpdatedEvent,
    ReasoningAnalyzeEvent,
    ReasoningThinkEvent,
    SubAgentTriggeredEvent,
    TaskCompactedEvent,
    TaskCreatedEvent,
    TaskEvent,
    TaskFinishedEvent,
    TaskReviewedEvent,
    TaskShippedEvent,
    TaskUpdatedEvent,
    ToolCallCompletedEvent,
    ToolCallRequestedEvent,
)

__all__ = [
    "DispatchResult",
    "Handler",
    "HandlerT",
    "Registry",
    "default_registry",
    "on",
    "on_auth_event",
    "on_event",
    "on_unknown",
]

logger: logging.Logger = logging.getLogger(__name__)

Handler = Union[
    Callable[[TaskEvent], object],
    Callable[[TaskCreatedEvent], object],
    Callable[[TaskUpdatedEvent], object],
    Callable[[TaskReviewedEvent], object],
    Callable[[TaskShippedEvent], object],
    Callable[[TaskFinishedEvent], object],
    Callable[[MessageChunkEvent], object],
    Callable[[AuthRequiredEvent], object],
    Callable[[ToolCallRequestedEvent], object],
    Callable[[ToolCallCompletedEvent], object],
    Callable[[SubAgentTriggeredEvent], object],
    Callable[[ReasoningThinkEvent], object],
    Callable[[ReasoningAnalyzeEvent], object],
    Callable[[PlanUpdatedEvent], object],
    Callable[[TaskCompactedEvent], object],
]
"""What a handler is: a callable taking one event, :class:`~agentstream.models.TaskEvent`
or one of its per-type classes (``def shipped(event: TaskShippedEvent) -> None``).

A type checker rejects a handler that takes no argument, needs more than one,
or takes something that is not an event. Annotating the parameter with a
per-type class is a promise the registration must keep: a handler for
``"task.shipped"`` also receives the untyped fallback (a plain ``TaskEvent``
whose payload failed validation), so a handler that must see every such event
takes ``TaskEvent`` and narrows with ``isinstance`` (``docs/handlers.md``).
"""

HandlerT = TypeVar("HandlerT", bound=Handler)
"""A handler's own type, kept by the decorators: they return the function unchanged."""

# How the registry calls a handler (every handler takes one event).
_Call = Callable[[TaskEvent], object]

_UNKNOWN = object()  # the pattern of on_unknown handlers
_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class _Registration:
    handler: _Call
    patterns: tuple[Any, ...]  # wire strings, glob patterns, or _UNKNOWN
    task_id: Optional[str]

    def matches(self, event_type: str, known: bool, task_id: Optional[str]) -> bool:
        if self.task_id is not None and self.task_id != task_id:
            return False
        for pattern in self.patterns:
            if pattern is _UNKNOWN:
                if not known:
                    return True
            elif pattern == event_type or ("*" in pattern and fnmatchcase(event_type, pattern)):
                return True
        return False


@dataclass(frozen=True)
class DispatchResult:
    """What happened when one event was dispatched."""

    handled: int
    """How many handlers ran (including those that raised)."""
    errors: tuple[tuple[Handler, BaseException], ...]
    """The handlers that raised, with their exceptions."""


_Route = tuple[tuple[_Call, ...], DispatchResult]


class Registry:
    """An ordered set of event handlers.

    Handlers run in registration order, one event at a time. A handler that
    raises is logged with the event id and reported on
    :data:`agentstream.signals.handler_failed`; the other handlers of that
    event still run.
    """

    def __init__(self) -> None:
        self._registrations: list[_Registration] = []
        self._lock = threading.Lock()
        # (event.type, task_id) -> (handlers, the result of a dispatch where none
        # fails); the enum member or unknown-type string is the key, so no str()
        # per event.
        self._routes: dict[tuple[Any, Optional[str]], _Route] = {}

    # -- registering --------------------------------------------------------

    def on(
        self, *event_types: Union[str, EventType], task_id: Optional[str] = None
    ) -> Callable[[HandlerT], HandlerT]:
        """Decorator: call the function for events of these types.

        Types are wire strings (``"task.shipped"``), :class:`EventType` members
        (any alias), or glob patterns (``"task.*"``, ``"*"``). ``task_id``
        limits the handler to one task. An exact type outside the vocabulary
        is a ``ValueError`` (a typo would otherwise never fire); use
        :meth:`on_unknown` to receive types this version does not know.
        """
        if not event_types:
            raise ValueError("on() needs at least one event type; use on_event for all events")
        patterns = tuple(_pattern(t) for t in event_types)  # a typo fails here, not later
        decorator: Callable[[HandlerT], HandlerT] = self._decorate(None, patterns, task_id)
        return decorator

    @overload
    def on_event(self, fn: HandlerT, /) -> HandlerT: ...
    @overload
    def on_event(self, /, *, task_id: Optional[str] = None) -> Callable[[HandlerT], HandlerT]: ...
    def on_event(self, fn: Optional[HandlerT] = None, /, *, task_id: Optional[str] = None) -> Any:
        """Decorator: call the function for every event (optionally of one task)."""
        return self._decorate(fn, ("*",), task_id)

    @overload
    def on_auth_event(self, fn: HandlerT, /) -> HandlerT: ...
    @overload
    def on_auth_event(
        self, /, *, task_id: Optional[str] = None
    ) -> Callable[[HandlerT], HandlerT]: ...
    def on_auth_event(
        self, fn: Optional[HandlerT] = None, /, *, task_id: Optional[str] = None
    ) -> Any:
        """Decorator: call the function for ``auth.required`` events."""
        return self._decorate(fn, (EventType.AUTH_REQUIRED.value,), task_id)

    @overload
    def on_unknown(self, fn: HandlerT, /) -> HandlerT: ...
    @overload
    def on_unknown(self, /, *, task_id: Optional[str] = None) -> Callable[[HandlerT], HandlerT]: ...
    def on_unknown(self, fn: Optional[HandlerT] = None, /, *, task_id: Optional[str] = None) -> Any:
        """Decorator: call the function for events whose type is not in the vocabulary."""
        return self._decorate(fn, (_UNKNOWN,), task_id)

    def _decorate(
        self, fn: Optional[HandlerT], patterns: tuple[Any, ...], task_id: Optional[str]
    ) -> Any:
        def decorator(handler: HandlerT) -> HandlerT:
            self.add(handler, patterns, task_id=task_id)
            return handler

        return decorator if fn is None else decorator(fn)

    def add(
        self,
        handler: Handler,
        event_types: tuple[Any, ...] = ("*",),
        *,
        task_id: Optional[str] = None,
    ) -> None:
        """Register ``handler`` (what the decorators call).

        ``event_types`` are as for :meth:`on`; the default, ``("*",)``, is
        every event.
        """
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        patterns = tuple(p if p is _UNKNOWN else _pattern(p) for p in event_types)
        with self._lock:
            # Every Handler takes one event; which one is the registration's promise.
            call = cast(_Call, handler)
            self._registrations.append(_Registration(call, patterns, task_id))
            self._routes.clear()

    def remove(self, handler: Handler) -> bool:
        """Unregister every registration of ``handler``; True if there was one."""
        with self._lock:
            before = len(self._registrations)
            self._registrations = [r for r in self._registrations if r.handler != handler]
            self._routes.clear()
            return len(self._registrations) != before

    def clear(self) -> None:
        """Remove every handler."""
        with self._lock:
            self._registrations = []
            self._routes.clear()

    def __len__(self) -> int:
        return len(self._registrations)

    # -- dispatching ----------------------------------------------------------

    def handlers_for(self, event: TaskEvent) -> tuple[Handler, ...]:
        """The handlers an event goes to, in registration order."""
        return self._route(event)[0]

    def _route(self, event: TaskEvent) -> _Route:
        route = self._routes.get((event.type, event.task_id))
        if route is None:
            event_type = str(event.type)
            known = event_type in WIRE_TYPES
            with self._lock:
                handlers = tuple(
                    r.handler
                    for r in self._registrations
                    if r.matches(event_type, known, event.task_id)
                )
                route = (handlers, DispatchResult(len(handlers), ()))
                if len(self._routes) >= _CACHE_LIMIT:
                    self._routes.clear()
                self._routes[(event.type, event.task_id)] = route
        return route

    def dispatch(
        self, event: TaskEvent, *, sender: Any = None, signal: Optional[Signal] = None
    ) -> DispatchResult:
        """Run the event's handlers, then the receivers of ``signal`` (if given).

        ``signal`` is sent with the event type string as sender and
        ``event=`` (and ``listener=sender``). Failures are logged, reported on
        :data:`~agentstream.signals.handler_failed` with ``sender``, and
        returned; they never propagate.
        """
        errors: Optional[list[tuple[Handler, BaseException]]] = None
        # _route()'s lookup first, inline: dispatch runs once per event.
        handlers, ok = self._routes.get((event.type, event.task_id)) or self._route(event)
        for handler in handlers:
            try:
                handler(event)
            except Exception as exc:
                errors = errors or []
                errors.append((handler, exc))
                _report(sender if sender is not None else self, event, handler, exc)
        if signal is not None and signal.receivers:
            failures = signals.send_each(signal, str(event.type), event=event, listener=sender)
            for receiver, error in failures:
                errors = errors or []
                errors.append((receiver, error))
                _report(sender if sender is not None else self, event, receiver, error)
        if errors is None:
            return ok
        return DispatchResult(len(handlers), tuple(errors))


def _report(sender: Any, event: TaskEvent, handler: Handler, exc: BaseException) -> None:
    name = getattr(handler, "__qualname__", repr(handler))
    logger.error("handler %s failed on event %s (%s)", name, event.id, event.type, exc_info=exc)
    failures = signals.send_each(
        signals.handler_failed, sender, event=event, handler=handler, error=exc
    )
    for receiver, error in failures:
        logger.error("handler_failed receiver %r raised", receiver, exc_info=error)


def _pattern(event_type: Union[str, EventType]) -> str:
    if isinstance(event_type, EventType):
        return event_type.value
    if not isinstance(event_type, str) or not event_type:
        raise TypeError(f"event type must be a non-empty str or EventType, got {event_type!r}")
    if "*" in event_type or event_type in WIRE_TYPES:
        return event_type
    raise ValueError(
        f"unknown event type {event_type!r}: use a type from agentstream.EventType, "
        f"a pattern such as 'task.*', or on_unknown() for types this version does not know"
    )


default_registry: Registry = Registry()
"""The registry the module-level decorators fill, and listeners use by default."""


# The module-level decorators are the default registry's own methods, so they
# take the same arguments and keep the same docstrings and types.
on: Final = default_registry.on
on_event: Final = default_registry.on_event
on_auth_event: Final = default_registry.on_auth_event
on_unknown: Final = default_registry.on_unknown
