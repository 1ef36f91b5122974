"""The agentstream reference server: the wire protocol, on one machine, with no account.

A WSGI application on werkzeug (:func:`create_app`) over an SQLite event log
(:class:`EventStore`), with a simulated agent that walks each task through
the whole event vocabulary. :class:`ReferenceServer` runs it on werkzeug's
threaded server in a background thread (tests, demos); :func:`serve_main` is
``agentstream serve``. Needs the ``server`` extra (``werkzeug``, ``httptools``). See
``docs/server.md``.
"""

from __future__ import annotations

from ._app import DEFAULT_MAX_BODY_BYTES, ReferenceApp, create_app
from ._auth import ALL_SCOPES, ApiKey
from ._cli import serve_main
from ._config import ServerConfig
from ._errors import (
    ExpiredCursorError,
    IdempotencyConflictError,
    InvalidCursorError,
    StoreClosedError,
    StoreError,
    StoreLockedError,
    TaskFinishedError,
    UnknownTaskError,
)
from ._serving import ReferenceServer, generate_api_key
from ._store import DEFAULT_RETENTION, EventStore
from ._webhooks import WebhookConfig

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_RETENTION",
    "ApiKey",
    "EventStore",
    "ExpiredCursorError",
    "IdempotencyConflictError",
    "InvalidCursorError",
    "ReferenceApp",
    "ReferenceServer",
    "ServerConfig",
    "StoreClosedError",
    "StoreError",
    "StoreLockedError",
    "TaskFinishedError",
    "UnknownTaskError",
    "WebhookConfig",
    "create_app",
    "generate_api_key",
    "serve_main",
]
