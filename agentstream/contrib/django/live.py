"""Live task pages for Django: :func:`live_response` answers a browser's
``EventSource`` with a task's events as they happen (``docs/live-pages.md``).

::

    from agentstream.contrib.django.live import live_response

    def task_events(request, task_id):
        check_the_user_may_see(request.user, task_id)  # it streams any task it is given
        return live_response(request, task_id)

The API key is read from the ``AGENTSTREAM`` settings and stays on the
server. Every page the process serves shares one :class:`~agentstream.Client`
(:func:`get_client`), and so one upstream connection for all of their tasks.
For WSGI servers (``runserver``, gunicorn, uWSGI): each open page holds a
worker thread for its life.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Optional, Union

from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse

from ...client import Client
from ...event_types import EventType
from .._live import DEFAULT_PAGE_HEARTBEAT_SECONDS, LiveStreamRefused, open_live_stream
from . import conf

__all__ = ["get_client", "live_response"]

_lock = threading.Lock()
_current: Optional[tuple[tuple[str, Optional[str], float], Client]] = None


def get_client() -> Client:
    """This process's client for live pages, made from ``AGENTSTREAM`` on first
    use (a missing API key is a :class:`~agentstream.errors.ConfigurationError`).
    When ``AGENTSTREAM`` changes (as tests change settings) the client is
    closed and the next call makes a new one.
    """
    global _current
    settings = conf.listener_settings()
    key = (settings.base_url, settings.api_key, settings.timeout)
    with _lock:
        if _current is not None and _current[0] == key:
            return _current[1]
        previous = _current
        client = settings.client(conf.MISSING_KEY_HINT)
        _current = (key, client)
    if previous is not None:
        previous[1].close()
    return client


def _drop_client(*, setting: str, **kwargs: Any) -> None:
    global _current
    if setting != "AGENTSTREAM":
        return
    with _lock:
        previous, _current = _current, None
    if previous is not None:
        previous[1].close()


setting_changed.connect(_drop_client, dispatch_uid="agentstream.contrib.django.live")


def live_response(
    request: HttpRequest,
    task_id: Optional[str] = None,
    *,
    event_types: Optional[Sequence[Union[str, EventType]]] = None,
    heartbeat_seconds: float = DEFAULT_PAGE_HEARTBEAT_SECONDS,
    retry_ms: Optional[int] = None,
) -> HttpResponseBase:
    """A ``text/event-stream`` response to ``request``, for a live task page's
    ``EventSource``.

    With ``task_id``, the task's events from its first one to its
    ``task.finished`` (then the response ends), over the process's shared
    task streams. Without it, the events of ``event_types`` (all when None)
    from the live end. Each event is one SSE frame (``id``: the event id,
    ``event``: its type, ``data``: its JSON envelope); a comment follows
    every ``heartbeat_seconds`` without one.

    The request's ``Last-Event-ID`` header (sent by the browser when it
    reconnects) resumes after that event: nothing missed, nothing twice. A
    browser that goes away is noticed at the next write (within two
    heartbeats) and its upstream and thread are freed. The view must check
    that the user may see the task.

    Answers 404 for an unknown task or one not created with
    ``events_streaming=True``, 400 or 410 for a ``Last-Event-ID`` the server
    refuses, and 204 for a finished task resumed after its last event.
    """
    settings = conf.listener_settings()
    try:
        live = open_live_stream(
            get_client(),
            task_id=task_id,
            event_types=event_types,
            last_event_id=request.headers.get("Last-Event-ID") or None,
            heartbeat_seconds=heartbeat_seconds,
            retry_ms=retry_ms,
            upstream_heartbeat_seconds=settings.heartbeat_seconds,
        )
    except LiveStreamRefused as refused:
        return HttpResponse(
            refused.message, status=refused.status, content_type="text/plain; charset=utf-8"
        )
    if live.status != 200:
        return HttpResponse(status=live.status)
    headers = dict(live.headers)
    response = StreamingHttpResponse(live, content_type=headers.pop("Content-Type"))
    for name, value in headers.items():
        response[name] = value
    return response
