"""Handlers of this app: imported by agentstream.contrib.django when Django starts."""

from __future__ import annotations

from agentstream import TaskEvent, on

from .models import FinishedTask


@on("task.finished")
def record_finished(event: TaskEvent) -> None:
    # get_or_create by event id: an event delivered again after a crash is harmless.
    FinishedTask.objects.get_or_create(
        event_id=event.id,
        defaults={
            "task_id": event.task_id,
            "status": event.data.status.value,
            "prompt": event.data.prompt,
        },
    )
