from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from .models import FinishedTask


def finished_tasks(request: HttpRequest) -> JsonResponse:
    rows = FinishedTask.objects.values("task_id", "status", "prompt")
    return JsonResponse({"tasks": list(rows)})
