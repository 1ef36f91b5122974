from __future__ import annotations

from django.urls import path
from tracker.views import finished_tasks

urlpatterns = [path("tasks/", finished_tasks)]
