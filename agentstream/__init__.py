"""agentstream: follow the live event stream of AI-agent tasks from synchronous Python.

The names users touch are re-exported here; the wire layer is
:mod:`agentstream.sse`, the reference server :mod:`agentstream.server`
(extra ``[server]``, imported only when used).

Importing the package imports none of its submodules: each name is imported
from its submodule on first use (PEP 562), so ``import agentstream.sse`` does
not pay for the pydantic models (docs/performance.md). To export a name, add
it to ``_EXPORTS`` (runtime), to the ``TYPE_CHECKING`` block (type checkers and
editors) and to ``__all__``; ``tests/test_packaging.py`` checks that the three agree.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

# Each public name and the submodule that defines it (a submodule maps to itself).
_EXPORTS: dict[str, str] = {
    "signals": "signals",
    "Client": "client",
    "DEFAULT_BASE_URL": "client",
    "CursorStore": "cursors",
    "FileCursorStore": "cursors",
    "LeaseStore": "cursors",
    "MemoryCursorStore": "cursors",
    "RedisCursorStore": "cursors",
    "SQLiteCursorStore": "cursors",
    "Registry": "dispatch",
    "default_registry": "dispatch",
    "on": "dispatch",
    "on_auth_event": "dispatch",
    "on_event": "dispatch",
    "on_unknown": "dispatch",
    "APIError": "errors",
    "AgentStreamError": "errors",
    "AuthenticationError": "errors",
    "BadRequestError": "errors",
    "ConfigurationError": "errors",
    "ConflictError": "errors",
    "ConnectionLostError": "errors",
    "ContentTypeError": "errors",
    "CursorExpiredError": "errors",
    "CursorMissingError": "errors",
    "EventTooLargeError": "errors",
    "InsufficientScopeError": "errors",
    "InvalidEventError": "errors",
    "LeaseLostError": "errors",
    "NotFoundError": "errors",
    "PermissionDeniedError": "errors",
    "RateLimitError": "errors",
    "RedirectError": "errors",
    "ResponseBodyError": "errors",
    "ResponseTooLargeError": "errors",
    "RetryBudgetExhaustedError": "errors",
    "ServerError": "errors",
    "StoreResetError": "errors",
    "StreamError": "errors",
    "WebhookVerificationError": "errors",
    "EventType": "event_types",
    "TaskEventType": "event_types",
    "TaskStatus": "event_types",
    "TaskUpdateEventType": "event_types",
    "ListenerHealth": "health",
    "ListenerState": "health",
    "Listener": "listener",
    "ListenerStats": "listener",
    "Analyze": "models",
    "AuthEvent": "models",
    "AuthRequiredEvent": "models",
    "MessageChunkEvent": "models",
    "PlanStep": "models",
    "PlanUpdated": "models",
    "PlanUpdatedEvent": "models",
    "ReasoningAnalyzeEvent": "models",
    "ReasoningThinkEvent": "models",
    "SubAgentTrigger": "models",
    "SubAgentTriggeredEvent": "models",
    "TaskCompacted": "models",
    "TaskCompactedEvent": "models",
    "TaskCreatedEvent": "models",
    "TaskEvent": "models",
    "TaskFinishedEvent": "models",
    "TaskReviewedData": "models",
    "TaskReviewedEvent": "models",
    "TaskShippedData": "models",
    "TaskShippedEvent": "models",
    "TaskSnapshot": "models",
    "TaskUpdatedData": "models",
    "TaskUpdatedEvent": "models",
    "Think": "models",
    "ToolCallCompletedEvent": "models",
    "ToolCallRequest": "models",
    "ToolCallRequestedEvent": "models",
    "ToolCallResult": "models",
    "parse_event": "models",
    "payload_model_for": "models",
    "RetryPolicy": "sse",
    "StreamOptions": "stream",
    "TaskEventStream": "stream",
    "Task": "tasks",
}

if TYPE_CHECKING:
    from . import signals as signals
    from .client import DEFAULT_BASE_URL as DEFAULT_BASE_URL
    from .client import Client as Client
    from .cursors import CursorStore as CursorStore
    from .cursors import FileCursorStore as FileCursorStore
    from .cursors import LeaseStore as LeaseStore
    from .cursors import MemoryCursorStore as MemoryCursorStore
    from .cursors import RedisCursorStore as RedisCursorStore
    from .cursors import SQLiteCursorStore as SQLiteCursorStore
    from .dispatch import Registry as Registry
    from .dispatch import default_registry as default_registry
    from .dispatch import on as on
    from .dispatch import on_auth_event as on_auth_event
    from .dispatch import on_event as on_event
    from .dispatch import on_unknown as on_unknown
    from .errors import AgentStreamError as AgentStreamError
    from .errors import APIError as APIError
    from .errors import AuthenticationError as AuthenticationError
    from .errors import BadRequestError as BadRequestError
    from .errors import ConfigurationError as ConfigurationError
    from .errors import ConflictError as ConflictError
    from .errors import ConnectionLostError as ConnectionLostError
    from .errors import ContentTypeError as ContentTypeError
    from .errors import CursorExpiredError as CursorExpiredError
    from .errors import CursorMissingError as CursorMissingError
    from .errors import EventTooLargeError as EventTooLargeError
    from .errors import InsufficientScopeError as InsufficientScopeError
    from .errors import InvalidEventError as InvalidEventError
    from .errors import LeaseLostError as LeaseLostError
    from .errors import NotFoundError as NotFoundError
    from .errors import PermissionDeniedError as PermissionDeniedError
    from .errors import RateLimitError as RateLimitError
    from .errors import RedirectError as RedirectError
    from .errors import ResponseBodyError as ResponseBodyError
    from .errors import ResponseTooLargeError as ResponseTooLargeError
    from .errors import RetryBudgetExhaustedError as RetryBudgetExhaustedError
    from .errors import ServerError as ServerError
    from .errors import StoreResetError as StoreResetError
    from .errors import StreamError as StreamError
    from .errors import WebhookVerificationError as WebhookVerificationError
    from .event_types import EventType as EventType
    from .event_types import TaskEventType as TaskEventType
    from .event_types import TaskStatus as TaskStatus
    from .event_types import TaskUpdateEventType as TaskUpdateEventType
    from .health import ListenerHealth as ListenerHealth
    from .health import ListenerState as ListenerState
    from .listener import Listener as Listener
    from .listener import ListenerStats as ListenerStats
    from .models import Analyze as Analyze
    from .models import AuthEvent as AuthEvent
    from .models import AuthRequiredEvent as AuthRequiredEvent
    from .models import MessageChunkEvent as MessageChunkEvent
    from .models import PlanStep as PlanStep
    from .models import PlanUpdated as PlanUpdated
    from .models import PlanUpdatedEvent as PlanUpdatedEvent
    from .models import ReasoningAnalyzeEvent as ReasoningAnalyzeEvent
    from .models import ReasoningThinkEvent as ReasoningThinkEvent
    from .models import SubAgentTrigger as SubAgentTrigger
    from .models import SubAgentTriggeredEvent as SubAgentTriggeredEvent
    from .models import TaskCompacted as TaskCompacted
    from .models import TaskCompactedEvent as TaskCompactedEvent
    from .models import TaskCreatedEvent as TaskCreatedEvent
    from .models import TaskEvent as TaskEvent
    from .models import TaskFinishedEvent as TaskFinishedEvent
    from .models import TaskReviewedData as TaskReviewedData
    from .models import TaskReviewedEvent as TaskReviewedEvent
    from .models import TaskShippedData as TaskShippedData
    from .models import TaskShippedEvent as TaskShippedEvent
    from .models import TaskSnapshot as TaskSnapshot
    from .models import TaskUpdatedData as TaskUpdatedData
    from .models import TaskUpdatedEvent as TaskUpdatedEvent
    from .models import Think as Think
    from .models import ToolCallCompletedEvent as ToolCallCompletedEvent
    from .models import ToolCallRequest as ToolCallRequest
    from .models import ToolCallRequestedEvent as ToolCallRequestedEvent
    from .models import ToolCallResult as ToolCallResult
    from .models import parse_event as parse_event
    from .models import payload_model_for as payload_model_for
    from .sse import RetryPolicy as RetryPolicy
    from .stream import StreamOptions as StreamOptions
    from .stream import TaskEventStream as TaskEventStream
    from .tasks import Task as Task
else:
    # Only at runtime: a module __getattr__ seen by a type checker would make
    # every misspelt name resolve (to Any) instead of being an error.

    def __getattr__(name: str) -> Any:
        module_name = _EXPORTS.get(name)
        if module_name is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module = importlib.import_module(f".{module_name}", __name__)
        value = module if module_name == name else getattr(module, name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "DEFAULT_BASE_URL",
    "APIError",
    "AgentStreamError",
    "Analyze",
    "AuthEvent",
    "AuthRequiredEvent",
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
    "MessageChunkEvent",
    "NotFoundError",
    "PermissionDeniedError",
    "PlanStep",
    "PlanUpdated",
    "PlanUpdatedEvent",
    "RateLimitError",
    "ReasoningAnalyzeEvent",
    "ReasoningThinkEvent",
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
    "SubAgentTriggeredEvent",
    "Task",
    "TaskCompacted",
    "TaskCompactedEvent",
    "TaskCreatedEvent",
    "TaskEvent",
    "TaskEventStream",
    "TaskEventType",
    "TaskFinishedEvent",
    "TaskReviewedData",
    "TaskReviewedEvent",
    "TaskShippedData",
    "TaskShippedEvent",
    "TaskSnapshot",
    "TaskStatus",
    "TaskUpdateEventType",
    "TaskUpdatedData",
    "TaskUpdatedEvent",
    "Think",
    "ToolCallCompletedEvent",
    "ToolCallRequest",
    "ToolCallRequestedEvent",
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
