from __future__ import annotations

from django.db import models


class FinishedTask(models.Model):
    """A task the agent finished, recorded by the handler in agentstream_handlers.py."""

    event_id = models.CharField(max_length=64, unique=True)  # redelivered? the same row
    task_id = models.CharField(max_length=64)
    status = models.CharField(max_length=32)
    prompt = models.TextField()

    def __str__(self) -> str:
        return f"{self.task_id}: {self.status}"
