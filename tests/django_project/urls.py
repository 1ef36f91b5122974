"""The views: the events the handlers recorded, newest first, agentstream's
webhook receiver, and live task pages' event streams."""

from __future__ import annotations

from django.urls import path

from agentstream.contrib.django.views import webhook

from .shipments.views import handled_events, shipped_events, task_events

urlpatterns = [
    path("events/", handled_events),
    path("webhooks/", webhook),
    path("tasks/<str:task_id>/events/", task_events),
    path("shipped/events/", shipped_events),
]
