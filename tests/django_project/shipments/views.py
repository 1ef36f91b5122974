from __future__ import annotations

import threading

from django.http import HttpRequest, HttpResponseBase, JsonResponse

from agentstream.contrib.django.live import live_response

from .models import HandledEvent


def handled_events(request: HttpRequest) -> JsonResponse:
    events = HandledEvent.objects.order_by("-sequence").values("event_id", "type", "sequence")
    return JsonResponse({"events": list(events)})


LIVE_PAGE_WORKERS: list[threading.Thread] = []
"""The threads that served task_events (the tests check each one returns)."""


def task_events(request: HttpRequest, task_id: str) -> HttpResponseBase:
    """A live task page's event stream (``?heartbeat=`` seconds, for the tests)."""
    LIVE_PAGE_WORKERS.append(threading.current_thread())
    return live_response(
        request, task_id, heartbeat_seconds=float(request.GET.get("heartbeat", "15"))
    )


def shipped_events(request: HttpRequest) -> HttpResponseBase:
    """Every task's ``task.shipped`` events, from the live end."""
    return live_response(
        request,
        event_types=["task.shipped"],
        heartbeat_seconds=float(request.GET.get("heartbeat", "15")),
    )
