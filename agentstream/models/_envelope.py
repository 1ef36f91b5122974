"""The envelope: :class:`TaskEvent`, and one subclass of it per known wire type.

A per-type class (:class:`TaskShippedEvent`, ...) fixes ``type`` to one
:class:`~agentstream.event_types.EventType` member and ``data`` to that
type's payload model, so ``isinstance(event, TaskShippedEvent)`` tells a type
checker what ``event.data`` is. Building events from JSON is
:mod:`agentstream.models._parsing`'s job.
"""

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._compat import model_private
from ..event_types import EventType
from ._payloads import (
    _WIRE_CONFIG,
    Analyze,
    AuthEvent,
    PlanUpdated,
    SubAgentTrigger,
    TaskCompacted,
    TaskReviewedData,
    TaskShippedData,
    TaskSnapshot,
    TaskUpdatedData,
    Think,
    ToolCallRequest,
    ToolCallResult,
    WireDatetime,
)

__all__ = [
    "AuthRequiredEvent",
    "MessageChunkEvent",
    "PlanUpdatedEvent",
    "ReasoningAnalyzeEvent",
    "ReasoningThinkEvent",
    "SubAgentTriggeredEvent",
    "TaskCompactedEvent",
    "TaskCreatedEvent",
    "TaskEvent",
    "TaskFinishedEvent",
    "TaskReviewedEvent",
    "TaskShippedEvent",
    "TaskUpdatedEvent",
    "ToolCallCompletedEvent",
    "ToolCallRequestedEvent",
]


def _describe_error(error: ValidationError) -> str:
    """A one-line summary of a validation error: the count and the first problem."""
    errors = error.errors(include_url=False, include_context=False, include_input=False)
    if not errors:  # pragma: no cover - pydantic never raises an empty error
        return str(error)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "(root)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


class TaskEvent(BaseModel):
    """One task event: the envelope and its payload.

    ``type`` is the :class:`EventType` member for a known wire type (it also
    compares equal to the wire string) and the plain string for an unknown
    one. ``data`` is the typed payload; it is the raw JSON value when the
    type is unknown or when the payload failed validation, in which case
    :attr:`validation_error` says why.

    Build events with :func:`parse_event` (JSON text) or :meth:`from_dict`:
    they pick the subclass for the type (:class:`TaskShippedEvent`, …).
    ``TaskEvent.model_validate`` validates the envelope only and keeps
    ``data`` as given.

    Events are immutable. Two events are equal when they have the same
    class and the same fields; the raw source and the validation error are
    not compared. The hash is that of ``(id, sequence)``.
    """

    model_config: ClassVar[ConfigDict] = _WIRE_CONFIG

    id: str
    """Opaque event id; also the SSE ``id:`` and the resume cursor."""
    type: Union[EventType, str] = Field(union_mode="left_to_right")
    """The wire type: an :class:`EventType` member, or the string for an unknown type."""
    sequence: int
    """Position in the server's log; strictly increasing."""
    occurred_at: WireDatetime
    """When the event happened (UTC). Also readable as :attr:`time`."""
    task_id: Optional[str] = None
    """The task the event is about."""
    organization_id: Optional[str] = None
    """The organization the task belongs to."""
    task_version: Optional[int] = None
    """The task's version after this event."""
    trace_id: Optional[str] = None
    """Trace id for correlating with server logs."""
    data: Any = None
    """The payload: a payload model, the text of a ``message.chunk``, or the raw value."""

    @property
    def time(self) -> datetime:
        """Alias of :attr:`occurred_at`."""
        return self.occurred_at

    @property
    def validation_error(self) -> Optional[ValidationError]:
        """Why the payload of a known type failed validation, or None.

        When set, ``data`` is the raw payload and the envelope fields are
        still valid.
        """
        private = model_private(self)
        if private is None:
            return None
        error: Optional[ValidationError] = private.get("validation_error")
        return error

    @property
    def raw(self) -> Any:
        """The payload exactly as received: the ``data`` value of the wire JSON.

        Parsed from the event's JSON text on first access and cached. For an
        event built in Python rather than parsed, it is ``data`` dumped in its
        wire (JSON, camelCase) form.
        """
        private = model_private(self)
        if private is not None:
            if "raw" in private:
                return private["raw"]
            source = private.get("source")
            if source is not None:
                raw = json.loads(source).get("data")
                private["raw"] = raw
                return raw
        if isinstance(self.data, BaseModel):
            return self.data.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return self.data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TaskEvent":
        """Build an event from an already-decoded envelope (camelCase or snake_case keys).

        Same rules as :func:`parse_event`; raises
        :class:`~agentstream.errors.InvalidEventError` only for an envelope
        that cannot be understood.
        """
        from ._parsing import _from_python  # _parsing imports this module

        return _from_python(data)

    @classmethod
    def from_json(cls, data: Union[str, bytes]) -> "TaskEvent":
        """Same as :func:`parse_event`."""
        from ._parsing import parse_event  # _parsing imports this module

        return parse_event(data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskEvent):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((self.id, self.sequence))

    def __repr_args__(self) -> Iterable[tuple[Optional[str], Any]]:
        yield from super().__repr_args__()
        error = self.validation_error
        if error is not None:
            yield "validation_error", _describe_error(error)


class TaskCreatedEvent(TaskEvent):
    """``task.created``: ``data`` is the new task's :class:`TaskSnapshot`."""

    type: Literal[EventType.TASK_CREATED]
    data: TaskSnapshot


class TaskUpdatedEvent(TaskEvent):
    """``task.updated``: ``data`` is a :class:`TaskUpdatedData`."""

    type: Literal[EventType.TASK_UPDATED]
    data: TaskUpdatedData


class TaskReviewedEvent(TaskEvent):
    """``task.reviewed``: ``data`` is a :class:`TaskReviewedData`."""

    type: Literal[EventType.TASK_REVIEWED]
    data: TaskReviewedData


class TaskShippedEvent(TaskEvent):
    """``task.shipped``: ``data`` is a :class:`TaskShippedData`."""

    type: Literal[EventType.TASK_SHIPPED]
    data: TaskShippedData


class TaskFinishedEvent(TaskEvent):
    """``task.finished``: ``data`` is the :class:`TaskSnapshot`, in a terminal status."""

    type: Literal[EventType.TASK_FINISHED]
    data: TaskSnapshot


class MessageChunkEvent(TaskEvent):
    """``message.chunk``: ``data`` is the text itself (a ``str``)."""

    type: Literal[EventType.MESSAGE_CHUNK]
    data: str


class AuthRequiredEvent(TaskEvent):
    """``auth.required``: ``data`` is an :class:`AuthEvent`."""

    type: Literal[EventType.AUTH_REQUIRED]
    data: AuthEvent


class ToolCallRequestedEvent(TaskEvent):
    """``tool_call.requested``: ``data`` is a :class:`ToolCallRequest`."""

    type: Literal[EventType.TOOL_CALL_REQUESTED]
    data: ToolCallRequest


class ToolCallCompletedEvent(TaskEvent):
    """``tool_call.completed``: ``data`` is a :class:`ToolCallResult`."""

    type: Literal[EventType.TOOL_CALL_COMPLETED]
    data: ToolCallResult


class SubAgentTriggeredEvent(TaskEvent):
    """``subagent.triggered``: ``data`` is a :class:`SubAgentTrigger`."""

    type: Literal[EventType.SUBAGENT_TRIGGERED]
    data: SubAgentTrigger


class ReasoningThinkEvent(TaskEvent):
    """``reasoning.think``: ``data`` is a :class:`Think`."""

    type: Literal[EventType.REASONING_THINK]
    data: Think


class ReasoningAnalyzeEvent(TaskEvent):
    """``reasoning.analyze``: ``data`` is an :class:`Analyze`."""

    type: Literal[EventType.REASONING_ANALYZE]
    data: Analyze


class PlanUpdatedEvent(TaskEvent):
    """``plan.updated``: ``data`` is a :class:`PlanUpdated`."""

    type: Literal[EventType.PLAN_UPDATED]
    data: PlanUpdated


class TaskCompactedEvent(TaskEvent):
    """``task.compacted``: ``data`` is a :class:`TaskCompacted`."""

    type: Literal[EventType.TASK_COMPACTED]
    data: TaskCompacted


# One class per known wire type; the payload types and the union derive from it.
_EVENT_CLASSES: tuple[type[TaskEvent], ...] = (
    TaskCreatedEvent,
    TaskUpdatedEvent,
    TaskReviewedEvent,
    TaskShippedEvent,
    TaskFinishedEvent,
    MessageChunkEvent,
    AuthRequiredEvent,
    ToolCallRequestedEvent,
    ToolCallCompletedEvent,
    SubAgentTriggeredEvent,
    ReasoningThinkEvent,
    ReasoningAnalyzeEvent,
    PlanUpdatedEvent,
    TaskCompactedEvent,
)
