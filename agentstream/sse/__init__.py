"""The SSE wire layer: raw Server-Sent Events from any endpoint, reconnects included.

:class:`EventSource` follows an SSE endpoint the way a browser's
``EventSource`` does, synchronously, and reconnects with backoff;
:class:`SSEParser` turns bytes into :class:`ServerSentEvent` objects for
those who bring their own transport. See ``docs/wire.md``.
"""

from __future__ import annotations

from ._events import (
    Comment,
    Connected,
    Disconnected,
    Failed,
    Happening,
    Retrying,
    ServerSentEvent,
)
from ._parser import DEFAULT_MAX_EVENT_SIZE, MAX_RETRY_MS, SSEParser
from ._retry import RetryPolicy
from ._source import EventSource

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "MAX_RETRY_MS",
    "Comment",
    "Connected",
    "Disconnected",
    "EventSource",
    "Failed",
    "Happening",
    "RetryPolicy",
    "Retrying",
    "SSEParser",
    "ServerSentEvent",
]
