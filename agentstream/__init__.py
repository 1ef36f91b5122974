"""agentstream: follow the live event stream of AI-agent tasks from synchronous Python."""

from __future__ import annotations

import logging

from .errors import (
    AgentStreamError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionLostError,
    ContentTypeError,
    CursorExpiredError,
    EventTooLargeError,
    InsufficientScopeError,
    InvalidEventError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    RetryBudgetExhaustedError,
    ServerError,
    StreamError,
)
from .event_types import EventType, TaskEventType, TaskStatus, TaskUpdateEventType

__version__ = "0.1.0.dev0"

__all__ = [
    "APIError",
    "AgentStreamError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ConnectionLostError",
    "ContentTypeError",
    "CursorExpiredError",
    "EventTooLargeError",
    "EventType",
    "InsufficientScopeError",
    "InvalidEventError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedirectError",
    "RetryBudgetExhaustedError",
    "ServerError",
    "StreamError",
    "TaskEventType",
    "TaskStatus",
    "TaskUpdateEventType",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
