"""Tasks: :class:`Task`, what ``client.create_task()`` and ``client.get_task()`` return."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Optional, Protocol

from ._multiplex import SharedTaskStreams
from .event_types import TaskStatus
from .models import TaskEvent, TaskSnapshot
from .stream import StreamOpener

__all__ = ["Task", "TaskAPI"]


class TaskAPI(StreamOpener, Protocol):
    """What a :class:`Task` needs of a :class:`~agentstream.Client`: fetching,
    stopping and streaming a task (so that this module does not import the client)."""

    def get_task(self, task_id: str) -> Task:
        """Fetch a task."""
        ...

    def stop_task(self, task_id: str) -> Task:
        """Cancel a task."""
        ...

    @property
    def task_streams(self) -> SharedTaskStreams:
        """The upstream that this client's ``task.events()`` iterators share."""
        ...


class Task:
    """A task on the server, as last fetched.

    Attributes mirror the task snapshot: ``id``, ``identifier``, ``status``,
    ``prompt``, ``result``, ``error``, ``events_streaming``, ``metadata``,
    ``version``, ``created_at``, ``updated_at``, ``finished_at``.
    :meth:`reload` fetches it again; :meth:`stop` cancels it; :meth:`events`
    follows it live.
    """

    def __init__(self, client: TaskAPI, snapshot: TaskSnapshot) -> None:
        self._client = client
        self._snapshot = snapshot

    @classmethod
    def from_json(cls, client: TaskAPI, data: Any) -> Task:
        """Build a task from the server's JSON answer."""
        return cls(client, TaskSnapshot.model_validate(data))

    @property
    def snapshot(self) -> TaskSnapshot:
        """The task's data as last fetched."""
        return self._snapshot

    @property
    def id(self) -> str:
        """The task id (``task_…``)."""
        return self._snapshot.id

    @property
    def identifier(self) -> str:
        """The human handle, ``AS-<n>``."""
        return self._snapshot.identifier

    @property
    def prompt(self) -> str:
        """What the task was asked to do."""
        return self._snapshot.prompt

    @property
    def result(self) -> Optional[str]:
        """The final result, once there is one."""
        return self._snapshot.result

    @property
    def error(self) -> Optional[str]:
        """Why the task failed, if it did."""
        return self._snapshot.error

    @property
    def metadata(self) -> dict[str, Any]:
        """Caller-supplied metadata."""
        return self._snapshot.metadata

    @property
    def version(self) -> int:
        """The task's version; grows with every change."""
        return self._snapshot.version

    @property
    def status(self) -> TaskStatus:
        """The status as last fetched."""
        return self._snapshot.status

    @property
    def events_streaming(self) -> bool:
        """Whether the task was created with ``events_streaming=True``."""
        return self._snapshot.events_streaming

    @property
    def created_at(self) -> datetime:
        """When the task was created."""
        return self._snapshot.created_at

    @property
    def updated_at(self) -> datetime:
        """When the task last changed."""
        return self._snapshot.updated_at

    @property
    def finished_at(self) -> Optional[datetime]:
        """When the task reached a terminal status, if it has."""
        return self._snapshot.finished_at

    @property
    def is_finished(self) -> bool:
        """True once the status is terminal (as last fetched)."""
        return self._snapshot.status.is_terminal

    def reload(self) -> Task:
        """Fetch the task again; returns ``self``, updated."""
        self._snapshot = self._client.get_task(self.id).snapshot
        return self

    def stop(self) -> Task:
        """Cancel the task (``POST /tasks/{id}/stop``); returns ``self``, updated.

        The server emits ``task.updated`` and then ``task.finished`` with
        status ``cancelled``. Stopping a finished task raises
        :class:`~agentstream.errors.ConflictError`.
        """
        self._snapshot = self._client.stop_task(self.id).snapshot
        return self

    def events(
        self, *, heartbeat_seconds: Optional[int] = None, cursor: Optional[str] = None
    ) -> Iterator[TaskEvent]:
        """Follow this task's events live, from its first one, until ``task.finished``.

        Raises ``ValueError`` at once if the task was not created with
        ``events_streaming=True``. The iterator reconnects by itself and
        raises a network error only when the client's retry budget is spent.
        Breaking out of the loop frees the iterator (and nothing else).

        All the iterators of one client share one upstream connection: each
        catches up on its own task-scoped request, then switches to the shared
        stream at an exact sequence (see ``docs/client.md``).
        ``heartbeat_seconds`` applies to that catch-up request; ``cursor``
        starts after that event instead of at the task's first one.
        """
        if not self.events_streaming:
            raise ValueError(
                f"task {self.id} was not created with events_streaming=True; "
                "create it with client.create_task(..., events_streaming=True) to stream its events"
            )
        return self._client.task_streams.events(
            self.id, cursor=cursor, heartbeat_seconds=heartbeat_seconds
        )

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.identifier} {self.status.value}>"
