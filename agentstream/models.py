"""Typed task events: the envelope, one payload model per wire type, and the parser.

Every event on the stream is a JSON envelope (see ``docs/events.md``)::

    {"id": "evt_…", "type": "task.shipped", "sequence": 42,
     "occurredAt": "2026-11-20T10:00:00.123Z", "taskId": "task_…",
     "organizationId": "org_…", "taskVersion": 7, "traceId": null, "data": {…}}

:func:`parse_event` turns one into a :class:`TaskEvent`. For a known type the
result is the matching subclass (:class:`TaskShippedEvent`, …) whose ``data``
is the typed payload model; ``event.type`` is the :class:`EventType` member.

Forward compatibility ("typed payloads with raw fallback"): an unknown
``type`` yields a plain :class:`TaskEvent` whose ``type`` is the wire string
and whose ``data`` is the raw value; a known type whose payload fails
validation yields a plain :class:`TaskEvent` with ``data`` the raw value,
the envelope intact and :attr:`TaskEvent.validation_error` set. Only an
envelope that cannot be understood raises :class:`~agentstream.errors.InvalidEventError`.

The whole event, payload included, is validated in one pass straight from the
JSON text by a discriminated union over the per-type event classes; this was
measured to be the fastest way to get a typed payload (``bench/models.py``,
``docs/decisions.md``). Models are immutable (frozen).
"""

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Optional, Union, cast, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from ._compat import model_private, set_model_private
from .errors import InvalidEventError
from .event_types import EventType, TaskStatus

__all__ = [
    "Analyze",
    "AuthEvent",
    "AuthRequiredEvent",
    "MessageChunkEvent",
    "PayloadModel",
    "PlanStep",
    "PlanStepStatus",
    "PlanUpdated",
    "PlanUpdatedEvent",
    "ReasoningAnalyzeEvent",
    "ReasoningThinkEvent",
    "ReviewOutcome",
    "ShipEnvironment",
    "ShipStatus",
    "SubAgentTrigger",
    "SubAgentTriggeredEvent",
    "TaskCompacted",
    "TaskCompactedEvent",
    "TaskCreatedEvent",
    "TaskEvent",
    "TaskEventActor",
    "TaskEventLinks",
    "TaskFinishedEvent",
    "TaskReviewedData",
    "TaskReviewedEvent",
    "TaskShippedData",
    "TaskShippedEvent",
    "TaskSnapshot",
    "TaskUpdatedData",
    "TaskUpdatedEvent",
    "Think",
    "ToolCallCompletedEvent",
    "ToolCallRequest",
    "ToolCallRequestedEvent",
    "ToolCallResult",
    "WireDatetime",
    "parse_event",
    "payload_model_for",
]


def _format_wire_time(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, the wire format of timestamps."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


WireDatetime = Annotated[datetime, PlainSerializer(_format_wire_time, when_used="json")]
"""A datetime that serializes to JSON as the wire does: ``2026-11-20T10:00:00.123Z``.

A naive datetime is taken to be UTC.
"""

ReviewOutcome = Literal["approved", "changes_requested"]
"""Outcome of a review (``task.reviewed``)."""

ShipStatus = Literal["queued", "running", "succeeded", "failed"]
"""State of a ship operation (``task.shipped``)."""

ShipEnvironment = Literal["staging", "production"]
"""Where a task is shipped (``task.shipped``)."""

PlanStepStatus = Literal["pending", "in_progress", "done", "failed"]
"""Status of one step of a plan (``plan.updated``)."""


# ---------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------


# camelCase on the wire, snake_case in Python, unknown keys ignored, immutable:
# the payloads and the envelope alike.
_WIRE_CONFIG = ConfigDict(
    alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
)


class PayloadModel(BaseModel):
    """Base of every payload model.

    camelCase keys on the wire, snake_case attributes in Python (either
    spelling is accepted when building a model). Unknown keys are ignored, so
    a server that adds a field does not break older clients; the payload
    exactly as received stays available as :attr:`TaskEvent.raw`. Immutable.
    """

    model_config = _WIRE_CONFIG


class TaskSnapshot(PayloadModel):
    """A task as it stands: ``data`` of ``task.created`` and ``task.finished``,
    and ``task`` inside ``task.updated``."""

    id: str
    """The task id (``task_…``)."""
    identifier: str
    """The human handle, ``AS-<n>``."""
    status: TaskStatus
    """Current status; terminal (``done``, ``failed``, ``cancelled``) in ``task.finished``."""
    prompt: str
    """What the task was asked to do."""
    result: Optional[str] = None
    """The final result, once there is one."""
    error: Optional[str] = None
    """Why the task failed, if it did."""
    events_streaming: bool = False
    """Whether the task was created with ``events_streaming=True``."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Caller-supplied metadata."""
    version: int
    """The task's version; grows with every change."""
    created_at: WireDatetime
    """When the task was created."""
    updated_at: WireDatetime
    """When the task last changed."""
    finished_at: Optional[WireDatetime] = None
    """When the task reached a terminal status, if it has."""


class TaskEventActor(PayloadModel):
    """Who caused a change (``actor`` of ``task.updated``, ``reviewer`` of ``task.reviewed``)."""

    id: str
    """The actor's id (an agent, a user, the system)."""
    role: str
    """The actor's role, for example ``agent`` or ``reviewer``."""


class TaskEventLinks(PayloadModel):
    """URLs related to an AgentRail-style event; only ``task`` is always present."""

    task: str
    """The task."""
    review_feedback: Optional[str] = None
    """The review feedback, when there is a review."""
    ci_status: Optional[str] = None
    """The CI status, when there is one."""
    ship_operation: Optional[str] = None
    """The ship operation, when the task is being shipped."""


class TaskUpdatedData(PayloadModel):
    """``task.updated``: the fields of AgentRail's ``TaskUpdatedEventData``, plus ``task``."""

    task_id: str
    """The task id."""
    task_identifier: str
    """The task's human handle."""
    status: TaskStatus
    """The status after the change."""
    previous_status: Optional[TaskStatus] = None
    """The status before the change, or None."""
    changed_fields: list[str] = Field(default_factory=list)
    """Names of the task fields that changed."""
    actor: TaskEventActor
    """Who made the change."""
    summary: str
    """One line describing the change."""
    available_actions: list[str] = Field(default_factory=list)
    """Actions that can be taken on the task now."""
    links: TaskEventLinks
    """Related URLs."""
    task: Optional[TaskSnapshot] = None
    """The task after the change, when the server includes it."""


class TaskReviewedData(PayloadModel):
    """``task.reviewed``: the fields of AgentRail's ``TaskReviewedEventData``."""

    task_id: str
    """The task id."""
    task_identifier: str
    """The task's human handle."""
    status: TaskStatus
    """The task's status after the review."""
    review_outcome: ReviewOutcome
    """``approved`` or ``changes_requested``."""
    reviewer: TaskEventActor
    """Who reviewed."""
    summary: str
    """One line describing the review."""
    available_actions: list[str] = Field(default_factory=list)
    """Actions that can be taken on the task now."""
    links: TaskEventLinks
    """Related URLs."""


class TaskShippedData(PayloadModel):
    """``task.shipped``: the fields of AgentRail's ``TaskShippedEventData``."""

    task_id: str
    """The task id."""
    task_identifier: str
    """The task's human handle."""
    status: TaskStatus
    """The task's status."""
    ship_status: ShipStatus
    """``queued``, ``running``, ``succeeded`` or ``failed``."""
    operation_id: str
    """The ship operation's id."""
    target_environment: ShipEnvironment
    """``staging`` or ``production``."""
    summary: str
    """One line describing the shipment."""
    available_actions: list[str] = Field(default_factory=list)
    """Actions that can be taken on the task now."""
    links: TaskEventLinks
    """Related URLs."""


class AuthEvent(PayloadModel):
    """``auth.required``: the agent needs the user to log in somewhere.

    Extra keys are kept (``extra="allow"``) under their wire names, readable
    as attributes and in ``model_extra``.
    """

    model_config = ConfigDict(extra="allow")

    provider: str
    """Who to log in with (``github``, ``google``, …)."""
    auth_url: str
    """Where to send the user."""
    message: Optional[str] = None
    """Text to show the user."""


class ToolCallRequest(PayloadModel):
    """``tool_call.requested``: the agent is about to call a tool."""

    operation_id: str
    """The operation the call belongs to."""
    tool_call_id: str
    """This call's id; the matching :class:`ToolCallResult` carries the same."""
    tool_name: str
    """The tool being called."""
    payload: Any = None
    """The call's arguments (any JSON)."""
    reasoning: Optional[str] = None
    """Why the agent makes the call, if it said."""


class ToolCallResult(PayloadModel):
    """``tool_call.completed``: a tool call returned (or failed: ``is_error``)."""

    operation_id: str
    """The operation the call belongs to."""
    tool_call_id: str
    """The call's id, as in the :class:`ToolCallRequest`."""
    tool_name: str
    """The tool that was called."""
    payload: Any = None
    """The call's arguments (any JSON)."""
    result: Any = None
    """What the tool returned, or the error (any JSON)."""
    is_error: bool = False
    """True when the call failed and ``result`` describes the error."""


class SubAgentTrigger(PayloadModel):
    """``subagent.triggered``: the agent handed part of the work to another agent."""

    sub_task_id: str
    """The task created for the sub-agent."""
    agent_id: str
    """The agent that runs it."""
    prompt: str
    """What the sub-agent was asked to do."""


class _TitledContent(PayloadModel):
    """A titled piece of reasoning."""

    title: str
    """A short heading."""
    content: str
    """The text."""


class Think(_TitledContent):
    """``reasoning.think``: a step of the agent's thinking."""


class Analyze(_TitledContent):
    """``reasoning.analyze``: an analysis the agent made."""


class PlanStep(PayloadModel):
    """One step of the agent's plan."""

    id: str
    """The step's id, stable across updates of the plan."""
    title: str
    """What the step does."""
    status: PlanStepStatus
    """``pending``, ``in_progress``, ``done`` or ``failed``."""


class PlanUpdated(PayloadModel):
    """``plan.updated``: the agent's whole plan, as it now stands."""

    steps: list[PlanStep]
    """The steps, in order."""


class TaskCompacted(PayloadModel):
    """``task.compacted``: the agent compacted its context."""

    summary: str
    """What the compacted context was summarised to."""
    tokens_before: int
    """Context size before compaction, in tokens."""
    tokens_after: int
    """Context size after compaction, in tokens."""


# ---------------------------------------------------------------------------
# The envelope
# ---------------------------------------------------------------------------


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

    model_config = _WIRE_CONFIG

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
        return _from_python(data)

    @classmethod
    def from_json(cls, data: Union[str, bytes]) -> "TaskEvent":
        """Same as :func:`parse_event`."""
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

# The payload type of every known wire type (``str`` for ``message.chunk``).
_PAYLOAD_TYPES: dict[EventType, type[Any]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cast(
        "type[Any]", cls.model_fields["data"].annotation
    )
    for cls in _EVENT_CLASSES
}

_TypedEvent: Any = Annotated[Union[_EVENT_CLASSES], Field(discriminator="type")]

# One validator for every known type: the payload is validated in the same pass
# as the envelope, straight from the JSON text (see docs/decisions.md).
# cache_strings="keys": event ids, times and summaries are new in every event,
# and caching them as well cost 0.1 µs per event (pydantic < 2.7 ignores it).
_EVENT_ADAPTER: "TypeAdapter[TaskEvent]" = TypeAdapter(
    _TypedEvent, config=ConfigDict(cache_strings="keys")
)

# Its pydantic-core validator, called directly: TypeAdapter.validate_json's
# wrapper cost 0.3 µs per event (docs/decisions.md).
_validate_event_json: Callable[[Union[str, bytes]], TaskEvent] = (
    _EVENT_ADAPTER.validator.validate_json
)

# The payload validators, used on the slow path to explain a payload failure.
_PAYLOAD_ADAPTERS: dict[EventType, "TypeAdapter[Any]"] = {
    event_type: TypeAdapter(payload_type) for event_type, payload_type in _PAYLOAD_TYPES.items()
}


def payload_model_for(event_type: Union[EventType, str]) -> Optional[type[BaseModel]]:
    """The payload model of a wire type, or None.

    None for ``message.chunk`` (its payload is a plain ``str``) and for a
    type that is not in the vocabulary. Accepts an :class:`EventType` member
    (any alias) or a wire string such as ``"task.shipped"``.
    """
    if not isinstance(event_type, EventType):
        try:
            event_type = EventType(event_type)
        except ValueError:
            return None
    payload_type = _PAYLOAD_TYPES[event_type]
    if issubclass(payload_type, BaseModel):
        return payload_type
    return None


# Pydantic's per-instance private storage, set directly (see agentstream._compat).
_store_private = set_model_private


def parse_event(data: Union[str, bytes]) -> TaskEvent:
    """Parse one event from its JSON text (the SSE ``data`` field).

    Returns the :class:`TaskEvent` subclass for the type, with the payload
    validated. An unknown type gives a plain :class:`TaskEvent` with ``type``
    the wire string and ``data`` the raw value; a payload that fails
    validation gives a plain :class:`TaskEvent` with ``data`` the raw value
    and :attr:`TaskEvent.validation_error` set.

    Raises :class:`~agentstream.errors.InvalidEventError` (with ``raw``, and
    ``event_id`` when the envelope has a usable ``id``) only when the text is
    not JSON, is not a JSON object, lacks ``id`` or ``type``, or has an
    envelope field of the wrong type.
    """
    try:
        event = _validate_event_json(data)
    except ValidationError as exc:
        return _parse_slow(data, exc)
    _store_private(event, {"source": data})
    return event


def _parse_slow(data: Union[str, bytes], typed_error: ValidationError) -> TaskEvent:
    """The path taken when the one-pass validation failed: find out why.

    Either the type is unknown or the payload failed (the envelope alone
    validates, and its ``data`` is the raw payload), or the envelope itself
    is unusable (:class:`~agentstream.errors.InvalidEventError`).
    """
    try:
        event = TaskEvent.model_validate_json(data)
    except ValidationError as exc:
        text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
        try:
            decoded = json.loads(data)
        except ValueError as json_error:  # JSONDecodeError and UnicodeDecodeError
            raise InvalidEventError(
                f"event data is not valid JSON: {json_error}", raw=text
            ) from None
        except RecursionError:  # json.loads on arrays or objects nested thousands deep
            raise InvalidEventError(
                "event data is not valid JSON: nested too deeply", raw=text
            ) from None
        raise _invalid_envelope(decoded, exc, text) from exc
    return _untyped(event, typed_error)


def _from_python(data: Any) -> TaskEvent:
    """:meth:`TaskEvent.from_dict`: the same rules as :func:`parse_event`."""
    if not isinstance(data, Mapping):
        # Also keeps pydantic from passing a model instance through unchanged.
        raise _invalid_envelope(data, None, _dump_for_error(data))
    try:
        event = _EVENT_ADAPTER.validate_python(data)
    except ValidationError as typed_error:
        try:
            untyped = TaskEvent.model_validate(data)
        except ValidationError as exc:
            raise _invalid_envelope(data, exc, _dump_for_error(data)) from exc
        return _untyped(untyped, typed_error)
    _store_private(event, {"raw": data.get("data")})
    return event


def _untyped(event: TaskEvent, typed_error: ValidationError) -> TaskEvent:
    """Finish an event whose envelope is valid but whose payload is not typed.

    For an unknown type there is nothing to say; for a known type the payload
    is what failed: it is validated alone, for an error whose locations are
    the payload's.
    """
    error: Optional[ValidationError] = None
    if isinstance(event.type, EventType):
        try:
            _PAYLOAD_ADAPTERS[event.type].validate_python(event.data)
        except ValidationError as exc:
            error = exc
        else:  # pragma: no cover - JSON and Python validation disagree
            error = typed_error
    _store_private(event, {"raw": event.data, "validation_error": error})
    return event


def _dump_for_error(data: Any) -> str:
    """``data`` as text for an :class:`~agentstream.errors.InvalidEventError`."""
    try:
        return json.dumps(data, default=str)
    except (TypeError, ValueError):
        return repr(data)


def _invalid_envelope(
    decoded: Any, error: Optional[ValidationError], raw: str
) -> InvalidEventError:
    """The error for a decoded envelope that does not validate, saying why."""
    if not isinstance(decoded, Mapping):
        return InvalidEventError(
            f"event data is not a JSON object (got {type(decoded).__name__})", raw=raw
        )
    event_id = decoded.get("id")
    if not isinstance(event_id, str):
        event_id = None
    for key in ("id", "type"):
        if key not in decoded:
            return InvalidEventError(f"event has no {key!r} field", raw=raw, event_id=event_id)
    reason = _describe_error(error) if error is not None else "not a valid envelope"
    return InvalidEventError(f"invalid event envelope: {reason}", raw=raw, event_id=event_id)
