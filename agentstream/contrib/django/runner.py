"""The listener the settings describe, with Django's database rules around
each event's handlers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

from django.db import close_old_connections

from ...client import Client
from ...listener import Listener
from ...models import TaskEvent
from .. import _common
from . import conf

__all__ = ["build_listener", "database_connections"]


@contextmanager
def database_connections(event: TaskEvent) -> Iterator[None]:
    """Around each event's handlers, what Django's request cycle does around
    a view: connections that are broken or past ``CONN_MAX_AGE`` are closed
    before (a handler survives a database restart) and after (none leaks)."""
    close_old_connections()
    try:
        yield
    finally:
        close_old_connections()


def build_listener(
    *,
    name: Optional[str] = None,
    workers: Optional[int] = None,
    heartbeat_seconds: Optional[int] = None,
    event_types: Optional[list[str]] = None,
    queue_size: Optional[int] = None,
) -> tuple[Client, Listener]:
    """The client and a listener (not started) for ``settings.AGENTSTREAM``;
    arguments win over the settings. A missing key or a wrong value is a
    ConfigurationError. Close the client when the listener is done."""
    settings = conf.listener_settings()
    client = settings.client(conf.MISSING_KEY_HINT)
    kwargs: dict[str, Any] = settings.listen_kwargs()
    kwargs.update(
        {
            k: v
            for k, v in {"name": name, "workers": workers, "queue_size": queue_size}.items()
            if v is not None
        }
    )
    options = settings.stream_options(
        heartbeat_seconds=heartbeat_seconds, event_types=event_types or None
    )
    # With webhooks on, the stream claims each event too: handled once by either path.
    listener = _common.listen(
        client,
        options,
        handler_context=database_connections,
        registry=conf.once() if conf.webhook_settings().enabled else conf.registry(),
        cursor_store=conf.cursor_store(),
        **kwargs,
    )
    return client, listener
