"""Helpers for testing your own handlers, with or without pytest.

Nothing here imports pytest or the reference server:

:func:`make_event`
    build a typed event for a unit test, with sensible defaults for every
    event type (no server, no JSON by hand).
:class:`EventRecorder`
    a handler that records events and lets a test wait for them.
:func:`listening`
    a started listener, connected before it is handed over.
:data:`FAST_RETRY`
    a retry policy that reconnects within milliseconds.

Nothing here sleeps: waits are on conditions, with a bound.

The pytest fixtures (``agentstream_server``, ``agentstream_client``,
``agentstream_registry``) live in :mod:`agentstream.pytest_plugin`, which
pytest loads by itself when agentstream is installed (entry point
``pytest11``). See ``docs/testing.md`` and ``examples/test_my_handlers.py``.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from typing import Any, Callable, Optional, TypeVar, Union, overload

from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from . import signals
from .client import Client
from .dispatch import Registry
from .event_types import EventType
from .listener import Listener
from .models import TaskEvent, parse_event
from .sse import RetryPolicy
from .stream import StreamOptions

__all__ = [
    "FAST_RETRY",
    "EventRecorder",
    "listening",
    "make_event",
]

_PLUGIN_NAMES = ("agentstream_client", "agentstream_registry", "agentstream_server")

FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.1, max_elapsed=10.0)
"""A retry policy for tests: reconnect within milliseconds, give up after 10 s."""


class EventRecorder:
    """A handler that records every event it is called with; tests wait on it.

    ::

        recorder = EventRecorder()
        registry.on("task.shipped")(recorder)
        ...
        (shipped,) = recorder.wait_for(count=1)
    """

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: TaskEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    @property
    def types(self) -> list[str]:
        """The wire types of the recorded events, in order."""
        with self._cond:
            return [str(e.type) for e in self.events]

    def wait_for(
        self,
        predicate: Optional[Callable[[TaskEvent], bool]] = None,
        *,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[TaskEvent]:
        """Wait until ``count`` recorded events match ``predicate``; return them.

        Raises ``AssertionError`` (with what was recorded) after ``timeout``.
        """

        def matching() -> list[TaskEvent]:
            return [e for e in self.events if predicate is None or predicate(e)]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout):
                raise AssertionError(
                    f"waited {timeout}s for {count} matching event(s); recorded: {self.types}"
                )
            return matching()

    def wait_for_type(
        self, event_type: Union[str, EventType], *, count: int = 1, timeout: float = 10.0
    ) -> list[TaskEvent]:
        """Wait for ``count`` events of ``event_type``."""
        wanted = str(event_type)
        return self.wait_for(lambda e: str(e.type) == wanted, count=count, timeout=timeout)


@contextmanager
def listening(
    client: Client,
    registry: Optional[Registry] = None,
    options: Optional[StreamOptions] = None,
    *,
    timeout: float = 10.0,
    **listen_kwargs: Any,
) -> Iterator[Listener]:
    """A started listener whose stream is connected; stopped on exit.

    An unscoped stream starts at the live end, so events published after the
    ``with`` line are certain to reach it.
    """
    connected = threading.Event()
    listener = client.listen(options, registry=registry, **listen_kwargs)

    def on_connected(sender: Any, **kwargs: Any) -> None:
        connected.set()

    on_connect = signals.connected.connected_to(on_connected, sender=listener)
    on_failure = signals.failed.connected_to(on_connected, sender=listener)
    try:
        with on_connect, on_failure:
            listener.start()
            if not connected.wait(timeout):
                raise AssertionError(f"listener did not connect within {timeout}s")
            if listener.error is not None:
                raise listener.error
            yield listener
    finally:
        listener.stop(timeout)


# -- events for unit tests ----------------------------------------------------

TaskEventT = TypeVar("TaskEventT", bound=TaskEvent)

_sequence = itertools.count(1)


def _task_snapshot(task_id: str, when: str, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "identifier": "AS-1",
        "status": status,
        "prompt": "Summarise the open pull requests",
        "eventsStreaming": True,
        "metadata": {},
        "version": 1,
        "createdAt": when,
        "updatedAt": when,
        **fields,
    }


def _default_data(event_type: EventType, task_id: str, when: str) -> Any:
    """A valid payload of ``event_type``, in its wire (camelCase) form."""
    actor = {"id": "agent_test", "role": "agent"}
    links = {"task": f"http://127.0.0.1:8787/tasks/{task_id}"}
    about = {"taskId": task_id, "taskIdentifier": "AS-1", "links": links}
    tool_call = {"operationId": "op_test", "toolCallId": "call_test", "toolName": "web_search"}
    defaults: dict[EventType, Any] = {
        EventType.TASK_CREATED: _task_snapshot(task_id, when, "todo"),
        EventType.TASK_UPDATED: {
            **about,
            "status": "in_progress",
            "previousStatus": "todo",
            "changedFields": ["status"],
            "actor": actor,
            "summary": "Started working on the task",
        },
        EventType.TASK_REVIEWED: {
            **about,
            "status": "in_review",
            "reviewOutcome": "approved",
            "reviewer": {"id": "reviewer_test", "role": "reviewer"},
            "summary": "Approved",
        },
        EventType.TASK_SHIPPED: {
            **about,
            "status": "done",
            "shipStatus": "succeeded",
            "operationId": "op_test",
            "targetEnvironment": "staging",
            "summary": "Shipped to staging",
        },
        EventType.TASK_FINISHED: _task_snapshot(
            task_id, when, "done", result="All done", finishedAt=when
        ),
        EventType.MESSAGE_CHUNK: "Hello from the agent. ",
        EventType.AUTH_REQUIRED: {
            "provider": "github",
            "authUrl": "https://github.com/login/oauth/authorize",
            "message": "Sign in to GitHub to continue",
        },
        EventType.TOOL_CALL_REQUESTED: {**tool_call, "payload": {"query": "open pull requests"}},
        EventType.TOOL_CALL_COMPLETED: {
            **tool_call,
            "payload": {"query": "open pull requests"},
            "result": {"hits": 3},
            "isError": False,
        },
        EventType.SUBAGENT_TRIGGERED: {
            "subTaskId": "task_sub_test",
            "agentId": "agent_research",
            "prompt": "Find the sources",
        },
        EventType.REASONING_THINK: {"title": "Approach", "content": "Read the diffs first."},
        EventType.REASONING_ANALYZE: {"title": "Findings", "content": "Three are ready."},
        EventType.PLAN_UPDATED: {
            "steps": [
                {"id": "step_1", "title": "Search for sources", "status": "done"},
                {"id": "step_2", "title": "Write the summary", "status": "in_progress"},
            ]
        },
        EventType.TASK_COMPACTED: {
            "summary": "Earlier context, summarised",
            "tokensBefore": 12000,
            "tokensAfter": 3000,
        },
    }
    return defaults[event_type]


def _wire_form(value: Any) -> Any:
    """A payload as it would be on the wire: models dumped, top-level keys camelCased."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(value, Mapping):
        return {to_camel(key) if "_" in key else key: item for key, item in value.items()}
    return value


@overload
def make_event(event_type: type[TaskEventT], data: Any = ..., **envelope: Any) -> TaskEventT: ...
@overload
def make_event(
    event_type: Union[EventType, str], data: Any = ..., **envelope: Any
) -> TaskEvent: ...
def make_event(
    event_type: Union[type[TaskEvent], EventType, str], data: Any = None, **envelope: Any
) -> TaskEvent:
    """Build an event for a unit test, exactly as :func:`~agentstream.parse_event` would.

    ::

        event = make_event("task.shipped", data={"targetEnvironment": "production"})
        assert isinstance(event, TaskShippedEvent)
        my_handler(event)

        event = make_event(TaskShippedEvent)  # typed as TaskShippedEvent

    :param event_type: a wire type (``"task.shipped"``), an :class:`EventType`
        member (any alias), or an event class (:class:`TaskShippedEvent`, …);
        a wire type outside the vocabulary gives a plain :class:`TaskEvent`
        whose ``data`` is what you passed.
    :param data: the payload. Omitted, it is a valid default for the type; a
        mapping is laid over that default (camelCase or snake_case keys), so
        ``data={"target_environment": "production"}`` changes one field; any
        other value (a payload model, the text of a ``message.chunk``)
        replaces it.
    :param envelope: envelope fields, snake_case: ``id`` (default
        ``evt_test_<n>``), ``sequence`` (default ``n``, growing through the
        process), ``occurred_at`` (a ``datetime``, kept to the millisecond
        as on the wire, or a wire string; default now), ``task_id``
        (default ``task_test``, also used in the default payload),
        ``organization_id``, ``task_version``, ``trace_id``.
    :raises ValueError: for a payload that does not validate as its type (a
        test should not receive an untyped event by accident: to test the raw
        fallback, use :func:`~agentstream.parse_event` on JSON text), or an
        unknown envelope field.
    """
    wanted_class: Optional[type[TaskEvent]] = None
    if isinstance(event_type, type):
        wanted_class = event_type
        annotation = event_type.model_fields["type"].annotation
        members = getattr(annotation, "__args__", ())
        if not members or not isinstance(members[0], EventType):
            raise ValueError(f"{event_type.__name__} is not the class of one event type")
        event_type = members[0]
    known: Optional[EventType] = None
    with suppress(ValueError):  # a type outside the vocabulary stays a string
        known = event_type if isinstance(event_type, EventType) else EventType(event_type)

    unknown_fields = set(envelope) - {
        "id",
        "sequence",
        "occurred_at",
        "task_id",
        "organization_id",
        "task_version",
        "trace_id",
    }
    if unknown_fields:
        raise ValueError(f"unknown envelope field(s): {', '.join(sorted(unknown_fields))}")
    sequence = envelope.get("sequence", next(_sequence))
    occurred_at = envelope.get("occurred_at", datetime.now(timezone.utc))
    when = (  # the wire format: UTC, to the millisecond
        occurred_at.astimezone(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
        if isinstance(occurred_at, datetime)
        else occurred_at
    )
    task_id = envelope.get("task_id", "task_test")

    payload = data
    if known is not None:
        payload = _wire_form(data)
        default = _default_data(known, task_id or "task_test", when)
        if data is None:
            payload = default
        elif isinstance(payload, dict) and isinstance(default, dict):
            payload = {**default, **payload}
    wire = {
        "id": envelope.get("id", f"evt_test_{sequence}"),
        "type": known.value if known is not None else str(event_type),
        "sequence": sequence,
        "occurredAt": when,
        "taskId": task_id,
        "organizationId": envelope.get("organization_id", "org_test"),
        "taskVersion": envelope.get("task_version", 1),
        "traceId": envelope.get("trace_id"),
        "data": payload,
    }
    event = parse_event(json.dumps(wire))
    if event.validation_error is not None:
        raise ValueError(f"data is not a valid {known} payload: {event.validation_error}")
    if wanted_class is not None and not isinstance(event, wanted_class):  # pragma: no cover
        raise ValueError(f"built a {type(event).__name__}, not a {wanted_class.__name__}")
    return event


def __getattr__(name: str) -> Any:
    # The fixtures used to live here: importing them from here still works
    # (and only then imports pytest).
    if name in _PLUGIN_NAMES:
        from . import pytest_plugin

        return getattr(pytest_plugin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
