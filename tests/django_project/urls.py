"""Two views: the events the handlers recorded, newest first, and agentstream's
webhook receiver."""

from __future__ import annotations

from django.urls import path

from agentstream.contrib.django.views import webhook

from .shipments.views import handled_events

urlpatterns = [path("events/", handled_events), path("webhooks/", webhook)]
