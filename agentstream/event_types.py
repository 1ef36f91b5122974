"""The event vocabulary: one enum of wire types, and the task statuses.

:class:`EventType` has one member per wire type; each member also answers to
the spellings of the two SDKs agentstream unifies, as enum aliases of the
same member::

    EventType.TASK_SHIPPED.value == "task.shipped"      # AgentRail spelling
    EventType.Chunk is EventType.MESSAGE_CHUNK           # xpander spelling

``TaskEventType`` and ``TaskUpdateEventType`` are the same enum under the
names those SDKs export.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "TERMINAL_STATUSES",
    "WIRE_TYPES",
    "EventType",
    "TaskEventType",
    "TaskStatus",
    "TaskUpdateEventType",
]


class EventType(str, Enum):
    """Wire type of a task event. Compares equal to its wire string."""

    TASK_CREATED = "task.created"
    TASK_UPDATED = "task.updated"
    TASK_REVIEWED = "task.reviewed"
    TASK_SHIPPED = "task.shipped"
    TASK_FINISHED = "task.finished"
    MESSAGE_CHUNK = "message.chunk"
    AUTH_REQUIRED = "auth.required"
    TOOL_CALL_REQUESTED = "tool_call.requested"
    TOOL_CALL_COMPLETED = "tool_call.completed"
    SUBAGENT_TRIGGERED = "subagent.triggered"
    REASONING_THINK = "reasoning.think"
    REASONING_ANALYZE = "reasoning.analyze"
    PLAN_UPDATED = "plan.updated"
    TASK_COMPACTED = "task.compacted"

    # xpander spellings (aliases of the members above)
    TaskCreated = "task.created"
    TaskUpdated = "task.updated"
    TaskFinished = "task.finished"
    CHUNK = "message.chunk"
    Chunk = "message.chunk"
    AUTH_EVENT = "auth.required"
    AuthEvent = "auth.required"
    TOOL_CALL_REQUEST = "tool_call.requested"
    ToolCallRequest = "tool_call.requested"
    TOOL_CALL_RESULT = "tool_call.completed"
    ToolCallResult = "tool_call.completed"
    SUB_AGENT_TRIGGER = "subagent.triggered"
    SubAgentTrigger = "subagent.triggered"
    THINK = "reasoning.think"
    Think = "reasoning.think"
    ANALYZE = "reasoning.analyze"
    Analyze = "reasoning.analyze"
    PlanUpdated = "plan.updated"
    TASK_COMPACTIZATION = "task.compacted"
    TaskCompactization = "task.compacted"

    def __str__(self) -> str:
        return self.value


TaskEventType = EventType
TaskUpdateEventType = EventType


WIRE_TYPES: frozenset[str] = frozenset(member.value for member in EventType)
"""Every wire type of the vocabulary (``"task.created"``, …), as plain strings."""


class TaskStatus(str, Enum):
    """Status of a task. ``done``, ``failed`` and ``cancelled`` are terminal."""

    TODO = "todo"
    IN_PROGRESS = "in_progress"
    IN_REVIEW = "in_review"
    BLOCKED = "blocked"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True for ``done``, ``failed`` and ``cancelled``."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED})
