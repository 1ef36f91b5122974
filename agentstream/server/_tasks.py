"""Tasks of the reference server: snapshots and status changes, as pure functions.

The store keeps the snapshot (camelCase, as on the wire) and calls these in
its write transactions; nothing here touches the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ..event_types import TaskStatus
from ._events import utc_now_iso

__all__ = ["available_actions", "new_snapshot", "task_links", "transition"]

JSONDict = dict[str, Any]


def task_links(task_id: str) -> dict[str, str]:
    """The ``links`` of a task's events."""
    return {"task": f"/tasks/{task_id}"}


def available_actions(status: TaskStatus) -> list[str]:
    """What a client may do with a task in ``status``."""
    return [] if status.is_terminal else ["stop"]


def new_snapshot(
    task_id: str,
    number: int,
    prompt: str,
    *,
    events_streaming: bool,
    metadata: Optional[Mapping[str, Any]],
) -> JSONDict:
    """A new task's snapshot: status ``todo``, version 1."""
    now = utc_now_iso()
    return {
        "id": task_id,
        "identifier": f"AS-{number}",
        "status": TaskStatus.TODO.value,
        "prompt": prompt,
        "result": None,
        "error": None,
        "eventsStreaming": bool(events_streaming),
        "metadata": dict(metadata or {}),
        "version": 1,
        "createdAt": now,
        "updatedAt": now,
        "finishedAt": None,
    }


def transition(
    snapshot: JSONDict,
    status: TaskStatus,
    *,
    summary: str,
    actor: Optional[Mapping[str, str]] = None,
    result: Optional[str] = None,
    error: Optional[str] = None,
) -> Optional[JSONDict]:
    """Move ``snapshot`` (in place) to ``status``; return the ``task.updated`` data.

    Bumps the version; a terminal status sets ``finishedAt``. ``failed`` is
    not an AgentRail status, so a move to it has no ``task.updated`` (None).
    The caller checks that the task is not terminal yet.
    """
    previous = snapshot["status"]
    now = utc_now_iso()
    changed = ["status"]
    snapshot["status"] = status.value
    snapshot["version"] = int(snapshot["version"]) + 1
    snapshot["updatedAt"] = now
    if result is not None:
        snapshot["result"] = result
        changed.append("result")
    if error is not None:
        snapshot["error"] = error
        changed.append("error")
    if status.is_terminal:
        snapshot["finishedAt"] = now
        changed.append("finishedAt")
    if status is TaskStatus.FAILED:
        return None
    return {
        "taskId": snapshot["id"],
        "taskIdentifier": snapshot["identifier"],
        "status": status.value,
        "previousStatus": previous,
        "changedFields": changed,
        "actor": dict(actor or {"id": "agentstream", "role": "system"}),
        "summary": summary,
        "availableActions": available_actions(status),
        "links": task_links(snapshot["id"]),
        "task": snapshot,
    }
