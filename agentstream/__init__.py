"""agentstream: follow the live event stream of AI-agent tasks from synchronous Python.

The names users touch are re-exported here; the wire layer is
:mod:`agentstream.sse`, the reference server :mod:`agentstream.server`
(extra ``[server]``, imported only when used).
"""

from __future__ import annotations

import logging

from . import signals
from .client import DEFAULT_BASE_URL, Client
from .cursors import (
    CursorStore,
    FileCursorStore,
    LeaseStore,
    MemoryCursorStore,
    RedisCursorStore,
    SQLiteCursorStore,
)
from .dispatch import Registry, default_registry, on, on_auth_event, on_event, on_unknown
from .errors import (
    AgentStreamError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ConnectionLostError,
    ContentTypeError,
    CursorExpiredError,
    CursorMissingError,
    EventTooLargeError,
    InsufficientScopeError,
    InvalidEventError,
    LeaseLostError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    ResponseBodyError,
    ResponseTooLargeError,
    RetryBudgetExhaustedError,
    ServerError,
    StoreResetError,
    StreamError,
    WebhookVerificationError,
)
from .event_types import EventType, TaskEventType, TaskStatus, TaskUpdateEventType
from .health import ListenerHealth, ListenerState
from .listener import Listener, ListenerStats
from .models import (
    Analyze,
    AuthEvent,
    PlanStep,
    PlanUpdated,
    SubAgentTrigger,
    TaskCompacted,
    TaskEvent,
    TaskReviewedData,
    TaskShippedData,
    TaskSnapshot,
    TaskUpdatedData,
    Think,
    ToolCallRequest,
    ToolCallResult,
    parse_event,
    payload_model_for,
)
from .sse import RetryPolicy
from .stream import StreamOptions, TaskEventStream
from .tasks import Task

__version__ = "0.1.0.dev0"

__all__ = [
    "DEFAULT_BASE_URL",
    "APIError",
    "AgentStreamError",
    "Analyze",
    "AuthEvent",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "ConnectionLostError",
    "ContentTypeError",
    "CursorExpiredError",
    "CursorMissingError",
    "CursorStore",
    "EventTooLargeError",
    "EventType",
    "FileCursorStore",
    "InsufficientScopeError",
    "InvalidEventError",
    "LeaseLostError",
    "LeaseStore",
    "Listener",
    "ListenerHealth",
    "ListenerState",
    "ListenerStats",
    "MemoryCursorStore",
    "NotFoundError",
    "PermissionDeniedError",
    "PlanStep",
    "PlanUpdated",
    "RateLimitError",
    "RedirectError",
    "RedisCursorStore",
    "Registry",
    "ResponseBodyError",
    "ResponseTooLargeError",
    "RetryBudgetExhaustedError",
    "RetryPolicy",
    "SQLiteCursorStore",
    "ServerError",
    "StoreResetError",
    "StreamError",
    "StreamOptions",
    "SubAgentTrigger",
    "Task",
    "TaskCompacted",
    "TaskEvent",
    "TaskEventStream",
    "TaskEventType",
    "TaskReviewedData",
    "TaskShippedData",
    "TaskSnapshot",
    "TaskStatus",
    "TaskUpdateEventType",
    "TaskUpdatedData",
    "Think",
    "ToolCallRequest",
    "ToolCallResult",
    "WebhookVerificationError",
    "__version__",
    "default_registry",
    "on",
    "on_auth_event",
    "on_event",
    "on_unknown",
    "parse_event",
    "payload_model_for",
    "signals",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
