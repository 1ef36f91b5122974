from __future__ import annotations

from django.urls import path
from tracker.views import finished_tasks

from agentstream.contrib.django.views import webhook

urlpatterns = [
    path("tasks/", finished_tasks),
    # agentstream serve --webhook http://127.0.0.1:8000/agentstream/webhooks/
    path("agentstream/webhooks/", webhook),
]
