"""The errors of the reference server's event store."""

from __future__ import annotations

__all__ = [
    "ExpiredCursorError",
    "IdempotencyConflictError",
    "InvalidCursorError",
    "StoreClosedError",
    "StoreError",
    "StoreLockedError",
    "TaskFinishedError",
    "UnknownTaskError",
]


class StoreError(Exception):
    """Base of the errors the event store raises."""


class StoreClosedError(StoreError):
    """The store was closed (the server is shutting down)."""


class StoreLockedError(StoreError):
    """Another server holds the database file (one server per file)."""


class UnknownTaskError(StoreError, LookupError):
    """No task with this id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}")
        self.task_id = task_id


class TaskFinishedError(StoreError):
    """The task is already in a terminal status; it cannot change any more."""

    def __init__(self, task_id: str, status: str) -> None:
        super().__init__(f"task {task_id!r} is already {status}")
        self.task_id = task_id
        self.status = status


class IdempotencyConflictError(StoreError):
    """An ``Idempotency-Key`` was reused with a different request body."""


class InvalidCursorError(StoreError, ValueError):
    """The cursor is not an event id this server issued."""


class ExpiredCursorError(StoreError):
    """The cursor points at an event that retention already deleted."""

    def __init__(self, message: str, *, oldest_sequence: int) -> None:
        super().__init__(message)
        self.oldest_sequence = oldest_sequence
