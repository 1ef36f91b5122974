from __future__ import annotations

from django.db import models


class HandledEvent(models.Model):
    """One event a handler saw (unique by event id: redelivery is harmless)."""

    event_id = models.CharField(max_length=64, unique=True)
    type = models.CharField(max_length=64)
    task_id = models.CharField(max_length=64, null=True)
    sequence = models.BigIntegerField()
    fresh_connection = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.sequence} {self.type}"
