"""The payload models: one per wire type, and the types they share.

Every payload derives from :class:`PayloadModel`: camelCase keys on the wire,
snake_case attributes in Python, unknown keys ignored, immutable. Which event
type carries which payload is said by the per-type event classes in
:mod:`agentstream.models._envelope`.
"""

from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

from ..event_types import TaskStatus

__all__ = [
    "Analyze",
    "AuthEvent",
    "PayloadModel",
    "PlanStep",
    "PlanStepStatus",
    "PlanUpdated",
    "ReviewOutcome",
    "ShipEnvironment",
    "ShipStatus",
    "SubAgentTrigger",
    "TaskCompacted",
    "TaskEventActor",
    "TaskEventLinks",
    "TaskReviewedData",
    "TaskShippedData",
    "TaskSnapshot",
    "TaskUpdatedData",
    "Think",
    "ToolCallRequest",
    "ToolCallResult",
    "WireDatetime",
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

    model_config: ClassVar[ConfigDict] = _WIRE_CONFIG


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

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="allow")

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
