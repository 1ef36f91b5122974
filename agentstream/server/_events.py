"""Event records of the reference server's log: ids, timestamps, stored rows, read batches.

Every event gets the next ``sequence`` (strictly increasing across the whole
log, never reused) and an ``id`` that encodes it:
``evt_<16 hex digits of the sequence>_<6 random hex digits>``. Clients treat
ids as opaque; the server parses them back, which is how it tells a cursor
that fell out of retention from one it never issued.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Optional

from ..sse._encode import encode_event

__all__ = [
    "ReadBatch",
    "StoredEvent",
    "TaskPositions",
    "dumps",
    "format_event_id",
    "parse_event_id",
    "utc_now_iso",
]

_EVENT_ID_RE = re.compile(r"evt_([0-9a-f]{16})_([0-9a-f]{6})")


def utc_now_iso() -> str:
    """Now, UTC, ISO 8601 with milliseconds and ``Z`` (``2026-11-20T10:00:00.123Z``)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def format_event_id(sequence: int) -> str:
    """A fresh event id for ``sequence``: ``evt_<16 hex>_<6 random hex>``."""
    return f"evt_{sequence:016x}_{secrets.token_hex(3)}"


def parse_event_id(event_id: str) -> Optional[int]:
    """The sequence encoded in an id this server issued, or None if it is not one."""
    match = _EVENT_ID_RE.fullmatch(event_id)
    return int(match.group(1), 16) if match else None


def dumps(value: Any) -> str:
    """Compact JSON as stored (no NaN or Infinity)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class StoredEvent:
    """One event as stored: position, id, type, task, organization, wire envelope (JSON)."""

    sequence: int
    id: str
    type: str
    task_id: Optional[str]
    organization_id: Optional[str]
    envelope: str

    @cached_property
    def frame(self) -> bytes:
        """The event as one SSE frame (built once, however many streams send it)."""
        return self.sse_frame()

    def sse_frame(self) -> bytes:
        """The event as one SSE frame: ``id``, ``event`` and ``data`` lines, blank line."""
        return encode_event(self.envelope, event=self.type, id=self.id)


@dataclass(frozen=True)
class ReadBatch:
    """The answer of :meth:`EventStore.read_after`.

    ``events`` are the matching events after the asked position, in order;
    ``head`` is the last sequence of the log when they were read; ``gap`` is
    True when retention already deleted events right after the asked position
    (the reader missed them and must stop rather than skip them silently).
    """

    events: list[StoredEvent]
    head: int
    gap: bool


@dataclass(frozen=True)
class TaskPositions:
    """Where a task's events start and (once it has one) where its ``task.finished`` is."""

    first_sequence: int
    finished_sequence: Optional[int]
