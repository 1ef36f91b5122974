from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from .models import HandledEvent


def handled_events(request: HttpRequest) -> JsonResponse:
    events = HandledEvent.objects.order_by("-sequence").values("event_id", "type", "sequence")
    return JsonResponse({"events": list(events)})
