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

The package has one module per concern: ``_payloads`` (the payload models),
``_envelope`` (:class:`TaskEvent` and the per-type event classes) and
``_parsing`` (the one-pass validator and its slow path). Import from
``agentstream.models``; the submodules are private. Models are immutable
(frozen).
"""

from ._envelope import (
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
from ._parsing import parse_event, payload_model_for
from ._payloads import (
    Analyze,
    AuthEvent,
    PayloadModel,
    PlanStep,
    PlanStepStatus,
    PlanUpdated,
    ReviewOutcome,
    ShipEnvironment,
    ShipStatus,
    SubAgentTrigger,
    TaskCompacted,
    TaskEventActor,
    TaskEventLinks,
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
