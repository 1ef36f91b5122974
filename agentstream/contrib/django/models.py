"""The tables of the app: each listener name's cursor and lease, and the event
ids claimed for handling once (webhooks and the stream)."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from django.db import models


class ListenerCursor(models.Model):
    """Where the listener called ``name`` resumes, and who may consume it.

    ``token`` is the newest fencing token granted on ``name``: it only grows,
    a release keeps it. The lease is held while ``holder`` is set and
    ``expires_at`` (``time.time()`` of the host that took it) is in the future.
    Written only by :class:`~agentstream.contrib.django.store.DjangoCursorStore`.
    """

    name: models.CharField[str, str] = models.CharField(max_length=200, primary_key=True)
    cursor: models.CharField[Optional[str], Optional[str]] = models.CharField(
        max_length=200, null=True, blank=True
    )
    holder: models.CharField[str, str] = models.CharField(max_length=200, blank=True, default="")
    token: models.BigIntegerField[int, int] = models.BigIntegerField(default=0)
    expires_at: models.FloatField[float, float] = models.FloatField(default=0.0)
    updated_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "agentstream_listener_cursor"
        verbose_name = "listener cursor"

    def __str__(self) -> str:
        return f"{self.name}: {self.cursor or '(none)'}"


class WebhookDedup(models.Model):
    """An event id claimed by the webhook receiver or the listener: handled
    once across both paths.

    ``state`` is ``in_progress`` while the handlers run and ``handled`` once
    they succeeded; the row counts until ``expires_at`` (``time.time()`` of the
    host that wrote it). Written only by
    :class:`~agentstream.contrib.django.store.DjangoDedupStore`.
    """

    event_id: models.CharField[str, str] = models.CharField(max_length=256, primary_key=True)
    state: models.CharField[str, str] = models.CharField(max_length=16)
    expires_at: models.FloatField[float, float] = models.FloatField(db_index=True)

    class Meta:
        db_table = "agentstream_webhook_dedup"
        verbose_name = "webhook dedup claim"

    def __str__(self) -> str:
        return f"{self.event_id}: {self.state}"
