"""One view: the events the handlers recorded, newest first."""

from __future__ import annotations

from django.urls import path

from .shipments.views import handled_events

urlpatterns = [path("events/", handled_events)]
