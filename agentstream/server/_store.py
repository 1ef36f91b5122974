"""The reference server's event log: an append-only SQLite table (WAL mode), and its tasks.

Each event's ``sequence`` is an ``INTEGER PRIMARY KEY``, strictly increasing
and never reused; its id encodes it (see ``_events``). A cursor that fell out
of retention (at or below the deletion watermark) is
:class:`ExpiredCursorError`; one this log never issued is
:class:`InvalidCursorError`.

One connection, guarded by one lock, serves every thread. Writes happen in
``BEGIN IMMEDIATE`` transactions under that lock and readers query under the
same lock, so a reader that sees sequence ``n`` has also seen every sequence
before it: ``WHERE sequence > last_sent`` never skips an event. After each
commit, still under the lock, the store hands the new events to its append
listeners (the fan-out, ``_fanout.Broadcaster``: it needs no query to learn
of them), then notifies a :class:`threading.Condition` on the same lock, on
which the webhook enqueuer waits.

The database is in WAL mode with ``synchronous=NORMAL``: a commit reaches
the file before the event is answered or sent to any stream, so it survives
the server process being killed; SQLite only syncs the WAL to disk at
checkpoints, so a power loss or an operating-system crash can lose the
last events committed before it (``docs/server.md`` says so).

Every event and task belongs to an organization (``organizationId``);
reads can be limited to one.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Collection, Mapping
from typing import Any, Callable, Optional, Protocol, TypeVar, Union

from ..event_types import TERMINAL_STATUSES, EventType, TaskStatus
from ._errors import (
    ExpiredCursorError,
    IdempotencyConflictError,
    InvalidCursorError,
    StoreClosedError,
    StoreLockedError,
    TaskFinishedError,
    UnknownTaskError,
)
from ._events import (
    ReadBatch,
    StoredEvent,
    TaskPositions,
    dumps,
    format_event_id,
    parse_event_id,
    utc_now_iso,
)
from ._tasks import new_snapshot, transition

__all__ = ["DEFAULT_ORGANIZATION_ID", "DEFAULT_RETENTION", "AppendListener", "EventStore"]

logger = logging.getLogger(__name__)

DEFAULT_RETENTION = 100_000
DEFAULT_ORGANIZATION_ID = "org_local"
_SCHEMA_VERSION = "2"  # 2: organization_id columns
_LOCK_TIMEOUT = 1.0  # seconds to wait for a database file another server holds
_FINISHED = EventType.TASK_FINISHED.value
_T = TypeVar("_T")

JSONDict = dict[str, Any]
PayloadBuilder = Callable[[Mapping[str, Any]], Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    task_id TEXT,
    envelope TEXT NOT NULL,
    organization_id TEXT
);
CREATE INDEX IF NOT EXISTS events_by_task ON events (task_id, sequence);
CREATE TABLE IF NOT EXISTS tasks (
    num INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    first_sequence INTEGER NOT NULL,
    finished_sequence INTEGER,
    agent_step INTEGER,
    organization_id TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    task_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _migrate(conn: sqlite3.Connection, default_org: str) -> None:
    """Bring a version-1 file (no organization columns) up to date; idempotent."""
    for table in ("events", "tasks"):
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if "organization_id" not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN organization_id TEXT")
    conn.execute(
        "UPDATE events SET organization_id = json_extract(envelope, '$.organizationId')"
        " WHERE organization_id IS NULL"
    )
    conn.execute(
        "UPDATE tasks SET organization_id = COALESCE((SELECT e.organization_id FROM events e"
        " WHERE e.task_id = tasks.id ORDER BY e.sequence LIMIT 1), ?)"
        " WHERE organization_id IS NULL",
        (default_org,),
    )
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (_SCHEMA_VERSION,)
    )


def _envelope(stored: StoredEvent) -> JSONDict:
    """The envelope of a stored event as a fresh dict (what the public methods return)."""
    envelope: JSONDict = json.loads(stored.envelope)
    return envelope


class _Tx:
    """State of one write transaction: the connection, the log head so far, the events
    appended."""

    __slots__ = ("conn", "events", "head")

    def __init__(self, conn: sqlite3.Connection, head: int) -> None:
        self.conn = conn
        self.head = head
        self.events: list[StoredEvent] = []


class AppendListener(Protocol):
    """Told of every event the store commits, in the committing thread (the fan-out).

    :meth:`appended` runs under the store's lock, right after the commit, so
    listeners see the events in sequence order with none missing; it must be
    quick and must not take a lock that a thread may hold while it waits for
    the store's. :meth:`committed` runs after the lock is released, in the same
    thread; what it raises is logged, never raised to the writer (its events
    are stored).
    """

    def appended(self, events: list[StoredEvent]) -> None: ...

    def committed(self) -> None: ...


class EventStore:
    """The append-only event log and the task table of the reference server.

    :param path: the SQLite file (created if missing). Reopening the same file
        later continues the same log: sequences, ids and cursors stay valid.
    :param retention: keep at most this many events; older ones are deleted
        and a cursor pointing at them is expired.
    :param organization_id: the organization of events and tasks created
        without one.

    Thread-safe. :meth:`close` it when done.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        retention: int = DEFAULT_RETENTION,
        organization_id: str = DEFAULT_ORGANIZATION_ID,
    ) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1 event")
        self._path = os.fspath(path)
        self._retention = retention
        self._organization_id = organization_id
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        conn = sqlite3.connect(
            self._path, check_same_thread=False, isolation_level=None, timeout=_LOCK_TIMEOUT
        )
        try:
            # One server per file: the exclusive lock, taken by the first write
            # transaction below and kept until close(), makes a second server on
            # the same file fail at once instead of racing this one's sequences.
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")
            conn.executescript(_SCHEMA)
            _migrate(conn, organization_id)
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            head = int(row[0]) if row else 0
            row = conn.execute("SELECT MAX(sequence), MIN(sequence) FROM events").fetchone()
            if row[0] is not None:
                head = max(head, int(row[0]))
            # Sequences have no gaps and retention deletes a prefix, so what was
            # deleted is everything before the oldest row (or all, if none is left).
            deleted = head if row[1] is None else int(row[1]) - 1
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" in str(exc):
                raise StoreLockedError(
                    f"{self._path} is in use by another agentstream server"
                ) from None
            raise
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection = conn
        self._head = head
        self._listeners: tuple[AppendListener, ...] = ()
        self._deleted_through = deleted
        if head - deleted > retention:
            self._write(lambda tx: None)  # applies retention
        logger.info("event store %s opened: head sequence %d", self._path, head)

    # ------------------------------------------------------------------ basics

    @property
    def path(self) -> str:
        """The SQLite file."""
        return self._path

    @property
    def retention(self) -> int:
        """How many events are kept at most."""
        return self._retention

    @property
    def organization_id(self) -> str:
        """The default ``organizationId``."""
        return self._organization_id

    @property
    def head_sequence(self) -> int:
        """The sequence of the last event appended (0 for an empty log)."""
        with self._cond:
            return self._head

    @property
    def oldest_sequence(self) -> int:
        """The sequence of the oldest event still kept (``head + 1`` when none is)."""
        with self._cond:
            return self._deleted_through + 1

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the database and wake every waiter. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
            self._cond.notify_all()
        logger.info("event store %s closed", self._path)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _require_open(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreClosedError("the event store is closed")
        return self._conn

    # ------------------------------------------------------------------ writes

    def _write(self, fn: Callable[[_Tx], _T]) -> _T:
        """Run ``fn`` in one write transaction, apply retention, commit, notify."""
        with self._cond:
            conn = self._require_open()
            tx = _Tx(conn, self._head)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(tx)
                deleted = self._apply_retention(tx)
                conn.execute("COMMIT")
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:  # pragma: no cover - the transaction is already gone
                    logger.exception("rollback failed")
                raise
            self._head = tx.head
            self._deleted_through = deleted
            listeners = self._listeners if tx.events else ()
            for listener in listeners:
                listener.appended(tx.events)
            if tx.events:
                self._cond.notify_all()
        for listener in listeners:
            try:
                listener.committed()
            except Exception:  # the events are stored: the writer must not see this
                logger.exception("an append listener failed")
        return result

    def add_listener(self, listener: AppendListener) -> int:
        """Tell ``listener`` of every event committed from now on; return the head
        sequence at that moment (the last event it will not be told of)."""
        with self._cond:
            self._listeners = (*self._listeners, listener)
            return self._head

    def remove_listener(self, listener: AppendListener) -> None:
        """Stop telling ``listener`` (idempotent)."""
        with self._cond:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    def write_transaction(self, fn: Callable[[sqlite3.Connection, int], _T]) -> _T:
        """Run ``fn(connection, head_sequence)`` in one write transaction of the store.

        For a component that keeps tables of its own in the store's database
        (the webhook delivery worker): the store opens its file with
        ``locking_mode=EXCLUSIVE`` (one server per file), so no second
        connection can write to it; this lends the store's own connection and
        transaction. The transaction commits when ``fn`` returns and rolls
        back when it raises (the exception propagates). ``head_sequence`` is
        the last event's sequence at the start of the transaction, so what
        ``fn`` records is consistent with it (no event is appended meanwhile).

        ``fn`` runs under the store's lock, so it must not call the store, and
        it must not write the ``events`` or ``tasks`` tables (use
        :meth:`publish` and the task methods). Raises
        :class:`StoreClosedError` once the store is closed.
        """
        return self._write(lambda tx: fn(tx.conn, tx.head))

    def _apply_retention(self, tx: _Tx) -> int:
        deleted = self._deleted_through
        limit = tx.head - self._retention
        if limit > deleted:
            tx.conn.execute("DELETE FROM events WHERE sequence <= ?", (limit,))
            deleted = limit
        return deleted

    def _insert_event(
        self,
        tx: _Tx,
        event_type: str,
        data: Any,
        *,
        task_id: Optional[str],
        task_version: Optional[int],
        organization_id: str,
        trace_id: Optional[str] = None,
    ) -> StoredEvent:
        sequence = tx.head + 1
        event_id = format_event_id(sequence)
        envelope: JSONDict = {
            "id": event_id,
            "type": event_type,
            "sequence": sequence,
            "occurredAt": utc_now_iso(),
            "taskId": task_id,
            "organizationId": organization_id,
            "taskVersion": task_version,
            "traceId": trace_id,
            "data": data,
        }
        text = dumps(envelope)
        tx.conn.execute(
            "INSERT INTO events (sequence, id, type, task_id, envelope, organization_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (sequence, event_id, event_type, task_id, text, organization_id),
        )
        if event_type == _FINISHED and task_id is not None:
            tx.conn.execute(
                "UPDATE tasks SET finished_sequence = ? WHERE id = ? AND finished_sequence IS NULL",
                (sequence, task_id),
            )
        tx.head = sequence
        # Encoded once: this text is the row, the frame every stream sends and the
        # publisher's answer.
        stored = StoredEvent(sequence, event_id, event_type, task_id, organization_id, text)
        tx.events.append(stored)
        return stored

    @staticmethod
    def _load_task(
        tx: _Tx, task_id: str, organization_id: Optional[str] = None
    ) -> tuple[JSONDict, str]:
        """The task's snapshot and organization (``UnknownTaskError`` if it is not there,
        or belongs to another organization than ``organization_id``)."""
        row = tx.conn.execute(
            "SELECT snapshot, organization_id FROM tasks WHERE id = ?", (task_id,)
        ).fetchone()
        if row is None or (organization_id is not None and row[1] != organization_id):
            raise UnknownTaskError(task_id)
        snapshot: JSONDict = json.loads(row[0])
        return snapshot, str(row[1])

    @staticmethod
    def _save_task(tx: _Tx, snapshot: Mapping[str, Any], agent_step: Optional[int]) -> None:
        tx.conn.execute(
            "UPDATE tasks SET status = ?, snapshot = ?, agent_step = COALESCE(?, agent_step)"
            " WHERE id = ?",
            (snapshot["status"], dumps(snapshot), agent_step, snapshot["id"]),
        )

    def publish(
        self,
        type: Union[EventType, str],
        data: Any,
        task_id: Optional[str] = None,
        *,
        trace_id: Optional[str] = None,
        organization_id: Optional[str] = None,
    ) -> JSONDict:
        """Append one event and return its envelope (camelCase, as on the wire).

        ``type`` must be a wire value of :class:`EventType` (``ValueError``
        otherwise); ``data`` any JSON value. With ``task_id`` the task must
        exist in ``organization_id`` (:class:`UnknownTaskError`), the event
        belongs to the task's organization and ``taskVersion`` is its current
        version; the task itself is not changed. Without ``organization_id``
        the store's default applies (or, with ``task_id``, the task's). The
        server assigns ``id``, ``sequence`` and ``occurredAt``.
        """
        stored = self._publish_stored(
            type, data, task_id, trace_id=trace_id, organization_id=organization_id
        )
        return _envelope(stored)

    def _publish_stored(
        self,
        type: Union[EventType, str],
        data: Any,
        task_id: Optional[str] = None,
        *,
        trace_id: Optional[str] = None,
        organization_id: Optional[str] = None,
    ) -> StoredEvent:
        """:meth:`publish`, returning the stored record (its ``envelope`` is the JSON text
        the publish endpoint answers with, as is)."""
        event_type = EventType(type).value

        def append(tx: _Tx) -> StoredEvent:
            version: Optional[int] = None
            organization = organization_id or self._organization_id
            if task_id is not None:
                snapshot, organization = self._load_task(tx, task_id, organization_id)
                version = int(snapshot["version"])
            return self._insert_event(
                tx,
                event_type,
                data,
                task_id=task_id,
                task_version=version,
                trace_id=trace_id,
                organization_id=organization,
            )

        return self._write(append)

    # ------------------------------------------------------------------ tasks

    def create_task(
        self,
        prompt: str,
        *,
        events_streaming: bool = False,
        metadata: Optional[Mapping[str, Any]] = None,
        organization_id: Optional[str] = None,
    ) -> JSONDict:
        """Create a task (status ``todo``), emit its ``task.created``, return the snapshot.

        No simulated agent runs it: drive it with :meth:`publish`,
        :meth:`append_task_event` and :meth:`transition_task`.
        """
        snapshot, _ = self.create_task_once(
            None,
            prompt,
            events_streaming=events_streaming,
            metadata=metadata,
            organization_id=organization_id,
        )
        return snapshot

    def create_task_once(
        self,
        idempotency_key: Optional[str],
        prompt: str,
        *,
        fingerprint: str = "",
        events_streaming: bool = False,
        metadata: Optional[Mapping[str, Any]] = None,
        organization_id: Optional[str] = None,
        simulated: bool = False,
    ) -> tuple[JSONDict, bool]:
        """Create a task at most once per ``idempotency_key``; return ``(snapshot, created)``.

        A second call with the same key and the same ``fingerprint`` (of the
        request) returns the existing task, ``created`` False; the same key
        with another fingerprint raises :class:`IdempotencyConflictError`.
        None as the key always creates. ``simulated`` marks the task as run by
        the simulated agent (its progress is then saved with each event, so a
        restarted server can resume it).
        """
        organization = organization_id or self._organization_id

        def create(tx: _Tx) -> tuple[JSONDict, bool]:
            if idempotency_key is not None:
                row = tx.conn.execute(
                    "SELECT fingerprint, task_id FROM idempotency WHERE key = ?",
                    (idempotency_key,),
                ).fetchone()
                if row is not None:
                    if row[0] != fingerprint:
                        raise IdempotencyConflictError(
                            "this Idempotency-Key was used with a different request body"
                        )
                    return self._load_task(tx, row[1])[0], False
            row = tx.conn.execute("SELECT COALESCE(MAX(num), 0) + 1 FROM tasks").fetchone()
            number = int(row[0])
            task_id = f"task_{secrets.token_hex(12)}"
            snapshot = new_snapshot(
                task_id, number, prompt, events_streaming=events_streaming, metadata=metadata
            )
            text = dumps(snapshot)
            tx.conn.execute(
                "INSERT INTO tasks (num, id, status, snapshot, first_sequence, agent_step,"
                " organization_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    number,
                    task_id,
                    snapshot["status"],
                    text,
                    tx.head + 1,
                    0 if simulated else None,
                    organization,
                ),
            )
            self._insert_event(
                tx,
                EventType.TASK_CREATED.value,
                snapshot,
                task_id=task_id,
                task_version=1,
                organization_id=organization,
            )
            if idempotency_key is not None:
                tx.conn.execute(
                    "INSERT INTO idempotency (key, fingerprint, task_id) VALUES (?, ?, ?)",
                    (idempotency_key, fingerprint, task_id),
                )
            result: JSONDict = json.loads(text)
            return result, True

        return self._write(create)

    def get_task(self, task_id: str, organization_id: Optional[str] = None) -> Optional[JSONDict]:
        """The task's snapshot, or None (also when it belongs to another organization
        than ``organization_id``)."""
        with self._cond:
            row = (
                self._require_open()
                .execute("SELECT snapshot, organization_id FROM tasks WHERE id = ?", (task_id,))
                .fetchone()
            )
        if row is None or (organization_id is not None and row[1] != organization_id):
            return None
        snapshot: JSONDict = json.loads(row[0])
        return snapshot

    def task_positions(
        self, task_id: str, organization_id: Optional[str] = None
    ) -> Optional[TaskPositions]:
        """Where the task's events start and where its ``task.finished`` is; None if unknown
        (or in another organization than ``organization_id``)."""
        with self._cond:
            row = (
                self._require_open()
                .execute(
                    "SELECT first_sequence, finished_sequence, organization_id FROM tasks"
                    " WHERE id = ?",
                    (task_id,),
                )
                .fetchone()
            )
        if row is None or (organization_id is not None and row[2] != organization_id):
            return None
        return TaskPositions(int(row[0]), None if row[1] is None else int(row[1]))

    def append_task_event(
        self,
        task_id: str,
        type: Union[EventType, str],
        data: Union[PayloadBuilder, Any],
        *,
        agent_step: Optional[int] = None,
    ) -> JSONDict:
        """Append an event about a task that is still running; return the envelope.

        Unlike :meth:`publish`, it raises :class:`TaskFinishedError` once the
        task is terminal, atomically with the append (this is how a cancelled
        run stops emitting). ``data`` may be a callable that builds the
        payload from the current snapshot, under the write lock.
        ``agent_step`` records the simulated agent's progress in the same
        transaction.
        """
        event_type = EventType(type).value

        def append(tx: _Tx) -> JSONDict:
            snapshot, organization = self._load_task(tx, task_id)
            if TaskStatus(snapshot["status"]).is_terminal:
                raise TaskFinishedError(task_id, snapshot["status"])
            payload = data(snapshot) if callable(data) else data
            envelope = _envelope(
                self._insert_event(
                    tx,
                    event_type,
                    payload,
                    task_id=task_id,
                    task_version=int(snapshot["version"]),
                    organization_id=organization,
                )
            )
            if agent_step is not None:
                tx.conn.execute(
                    "UPDATE tasks SET agent_step = ? WHERE id = ?", (agent_step, task_id)
                )
            return envelope

        return self._write(append)

    def transition_task(
        self,
        task_id: str,
        status: Union[TaskStatus, str],
        *,
        summary: str,
        actor: Optional[Mapping[str, str]] = None,
        result: Optional[str] = None,
        error: Optional[str] = None,
        agent_step: Optional[int] = None,
        organization_id: Optional[str] = None,
    ) -> list[JSONDict]:
        """Move a running task to ``status``; return the envelopes emitted.

        Bumps the task's version and emits ``task.updated`` (AgentRail's
        ``TaskUpdatedEventData`` fields plus the ``task`` snapshot). A terminal
        status also sets ``finishedAt`` and emits ``task.finished`` with the
        snapshot, in the same transaction. ``failed`` is not an AgentRail
        status, so a move to ``failed`` emits only ``task.finished``. Raises
        :class:`UnknownTaskError` (also for a task of another organization
        than ``organization_id``), or :class:`TaskFinishedError` if the task
        is already terminal.
        """
        new_status = TaskStatus(status)

        def change(tx: _Tx) -> list[JSONDict]:
            snapshot, organization = self._load_task(tx, task_id, organization_id)
            if TaskStatus(snapshot["status"]).is_terminal:
                raise TaskFinishedError(task_id, snapshot["status"])
            updated = transition(
                snapshot, new_status, summary=summary, actor=actor, result=result, error=error
            )
            version = int(snapshot["version"])
            emitted = [(EventType.TASK_UPDATED.value, updated)] if updated is not None else []
            if new_status.is_terminal:
                emitted.append((EventType.TASK_FINISHED.value, snapshot))
            envelopes = [
                _envelope(
                    self._insert_event(
                        tx,
                        event_type,
                        data,
                        task_id=task_id,
                        task_version=version,
                        organization_id=organization,
                    )
                )
                for event_type, data in emitted
            ]
            self._save_task(tx, snapshot, agent_step)
            return envelopes

        return self._write(change)

    def unfinished_simulated_tasks(self) -> list[tuple[str, int]]:
        """``(task_id, next_step)`` of every simulated run that has not finished."""
        terminal = tuple(s.value for s in TERMINAL_STATUSES)
        with self._cond:
            rows = (
                self._require_open()
                .execute(
                    "SELECT id, agent_step FROM tasks WHERE agent_step IS NOT NULL"
                    f" AND status NOT IN ({', '.join('?' * len(terminal))}) ORDER BY num",
                    terminal,
                )
                .fetchall()
            )
        return [(str(r[0]), int(r[1])) for r in rows]

    # ------------------------------------------------------------------ reads

    def resolve_cursor(self, cursor: str) -> int:
        """The sequence of the event ``cursor`` names.

        Raises :class:`ExpiredCursorError` if retention deleted it, and
        :class:`InvalidCursorError` if this log never had such an event.
        """
        sequence = parse_event_id(cursor)
        if sequence is None:
            raise InvalidCursorError("the cursor is not an event id issued by this server")
        with self._cond:
            conn = self._require_open()
            if sequence <= self._deleted_through:
                raise ExpiredCursorError(
                    "the cursor is older than the oldest event the server keeps",
                    oldest_sequence=self._deleted_through + 1,
                )
            if sequence > self._head:
                raise InvalidCursorError("the cursor names an event this server never issued")
            row = conn.execute("SELECT id FROM events WHERE sequence = ?", (sequence,)).fetchone()
        if row is None or row[0] != cursor:
            raise InvalidCursorError("the cursor names an event this server never issued")
        return sequence

    def read_after(
        self,
        after: int,
        *,
        types: Optional[Collection[str]] = None,
        task_id: Optional[str] = None,
        organization_id: Optional[str] = None,
        limit: int = 256,
    ) -> ReadBatch:
        """Up to ``limit`` events with ``sequence > after`` matching the filters, in order."""
        sql = (
            "SELECT sequence, id, type, task_id, organization_id, envelope FROM events"
            " WHERE sequence > ?"
        )
        params: list[Any] = [after]
        if task_id is not None:
            sql += " AND task_id = ?"
            params.append(task_id)
        if organization_id is not None:
            sql += " AND organization_id = ?"
            params.append(organization_id)
        if types is not None:
            wanted = sorted(types)
            sql += f" AND type IN ({','.join('?' * len(wanted))})"
            params.extend(wanted)
        sql += " ORDER BY sequence LIMIT ?"
        params.append(limit)
        with self._cond:
            conn = self._require_open()
            head = self._head
            if self._deleted_through > after:
                return ReadBatch([], head, gap=True)
            rows = conn.execute(sql, params).fetchall()
        events = [StoredEvent(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]
        return ReadBatch(events, head, gap=False)

    def wait_for_events(
        self, after: int, timeout: Optional[float], cancelled: Callable[[], bool] = lambda: False
    ) -> bool:
        """Block until an event after ``after`` exists, the store closes, or ``cancelled()``.

        Returns False when ``timeout`` (seconds; None: no limit) ran out first.
        """
        with self._cond:
            return self._cond.wait_for(
                lambda: self._head > after or self._closed or cancelled(), timeout
            )

    def wake_waiters(self) -> None:
        """Wake every :meth:`wait_for_events` so it re-checks its ``cancelled``."""
        with self._cond:
            self._cond.notify_all()
