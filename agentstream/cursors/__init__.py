"""Durable cursors and leases: where a listener resumes, and which one consumes.

A listener saves the id of the last event whose handlers have all returned;
a new process with the same store and name resumes right after it. Events
handled but not yet saved when a process dies are delivered again
(at-least-once across processes); within one process each event reaches the
handlers exactly once.

A :class:`LeaseStore` also makes one listener per name the only consumer:
leases with a time to live, and fencing tokens that refuse the saves of a
holder that lost its lease. See docs/stores.md.
"""

from __future__ import annotations

from ._file import FileCursorStore
from ._memory import MemoryCursorStore
from ._protocol import CursorStore, LeaseStore
from ._redis import RedisCursorStore
from ._sqlite import SQLiteCursorStore

__all__ = [
    "CursorStore",
    "FileCursorStore",
    "LeaseStore",
    "MemoryCursorStore",
    "RedisCursorStore",
    "SQLiteCursorStore",
]
