"""Found by agentstream.contrib.django's discovery when Django starts."""

from __future__ import annotations

from django.db import connection

from agentstream import TaskEvent

from .events import registry
from .models import HandledEvent


@registry.on_event
def record(event: TaskEvent) -> None:
    """Write the event to the database, once per event id."""
    HandledEvent.objects.get_or_create(
        event_id=event.id,
        defaults={
            "type": str(event.type),
            "task_id": event.task_id,
            "sequence": event.sequence,
            # CONN_MAX_AGE is 0: Django's rules close the connection after each
            # event, so every handler call starts without one.
            "fresh_connection": connection.connection is None,
        },
    )
