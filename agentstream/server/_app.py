"""The WSGI application of the reference server (werkzeug routing and request/response).

Every error is JSON ``{"error": {"code", "message", "details"}}`` with its
HTTP status; no input reaches a 5xx. Streams are generators that read the
event log ``WHERE sequence > last_sent`` in batches and wait on the store's
condition when they are caught up: replay and live tail are the same loop,
so the switch from one to the other can neither skip nor repeat an event.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ..event_types import WIRE_TYPES, EventType, TaskStatus
from ._agent import SimulatedAgent
from ._bodies import ApiError, field_error, json_response, read_json_object, text_field
from ._store import (
    EventStore,
    ExpiredCursorError,
    IdempotencyConflictError,
    InvalidCursorError,
    StoreClosedError,
    TaskFinishedError,
    UnknownTaskError,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_MAX_BODY_BYTES",
    "ReferenceApp",
    "create_app",
]

logger = logging.getLogger(__name__)

#: Every scope a key can hold.
ALL_SCOPES: frozenset[str] = frozenset({"events:read", "events:write", "tasks:read", "tasks:write"})
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MIN_HEARTBEAT = 1.0
MAX_HEARTBEAT = 300.0
_MAX_CURSOR_LENGTH = 200
_MAX_IDEMPOTENCY_KEY_LENGTH = 255
_BATCH = 256
_LIVENESS_INTERVAL = 0.25  # seconds between checks that an idle stream's client is there
_FINISHED = EventType.TASK_FINISHED.value

_SCOPE_OF_ENDPOINT = {
    "stream": "events:read",
    "publish": "events:write",
    "create_task": "tasks:write",
    "get_task": "tasks:read",
    "stop_task": "tasks:write",
}


@dataclass(frozen=True)
class _Principal:
    scopes: frozenset[str]
    key_digest: str  # sha256 of the key, to scope idempotency keys; never the key itself


@dataclass(frozen=True)
class _StreamSpec:
    after: int
    types: Optional[frozenset[str]]
    task_id: Optional[str]
    heartbeat: float


class _StreamHandle:
    """One open stream: its socket (when the server exposes it) and why it must stop."""

    __slots__ = ("sock", "stop")

    def __init__(self, sock: Optional[socket.socket]) -> None:
        self.sock = sock
        self.stop: Optional[str] = None  # None, "closing" or "dropped"


class _Streams:
    """The registry of open streams, to close or drop them from another thread."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._cond = threading.Condition()
        self._open: set[_StreamHandle] = set()

    def open(self, sock: Optional[socket.socket]) -> _StreamHandle:
        handle = _StreamHandle(sock)
        with self._cond:
            self._open.add(handle)
            self._cond.notify_all()
        return handle

    def release(self, handle: _StreamHandle) -> None:
        with self._cond:
            self._open.discard(handle)
            self._cond.notify_all()

    def count(self) -> int:
        with self._cond:
            return len(self._open)

    def stop_all(self, reason: str) -> int:
        with self._cond:
            handles = list(self._open)
        for handle in handles:
            handle.stop = reason
            if reason == "dropped" and handle.sock is not None:
                with contextlib.suppress(OSError):  # already gone
                    handle.sock.shutdown(socket.SHUT_RDWR)
        self._store.wake_waiters()
        return len(handles)

    def wait_count(self, count: int, timeout: float) -> bool:
        """Wait until exactly ``count`` streams are open; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._open) == count, timeout)


class ReferenceApp:
    """The reference server as a WSGI application (see :func:`create_app`).

    Call :meth:`close` when the server that runs it stops: it ends open
    streams and stops the simulated agent. The store is not closed: it
    belongs to whoever created it.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        api_keys: Mapping[str, Iterable[str]],
        agent_pace: float = 0.2,
        heartbeat_default: float = 15.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if not MIN_HEARTBEAT <= heartbeat_default <= MAX_HEARTBEAT:
            raise ValueError(
                f"heartbeat_default must be within {MIN_HEARTBEAT:g}..{MAX_HEARTBEAT:g} seconds"
            )
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self._keys: list[tuple[bytes, _Principal]] = []
        for key, scopes in api_keys.items():
            scope_set = frozenset(scopes)
            unknown = scope_set - ALL_SCOPES
            if unknown:
                raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
            if not key or any(c.isspace() for c in key):
                raise ValueError("an API key must be a non-empty string without spaces")
            digest = hashlib.sha256(key.encode()).hexdigest()
            self._keys.append((key.encode(), _Principal(scope_set, digest)))
        self.store = store
        self.heartbeat_default = float(heartbeat_default)
        self.max_body_bytes = max_body_bytes
        self.agent = SimulatedAgent(store, pace=agent_pace)
        self._streams = _Streams(store)
        self._closing = False
        self._map = Map(
            [
                Rule("/task-events/stream", endpoint="stream", methods=["GET"]),
                Rule("/task-events", endpoint="publish", methods=["POST"]),
                Rule("/tasks", endpoint="create_task", methods=["POST"]),
                Rule("/tasks/<task_id>", endpoint="get_task", methods=["GET"]),
                Rule("/tasks/<task_id>/stop", endpoint="stop_task", methods=["POST"]),
            ]
        )
        self._endpoints: dict[str, Callable[..., Response]] = {
            "stream": self._stream,
            "publish": self._publish,
            "create_task": self._create_task,
            "get_task": self._get_task,
            "stop_task": self._stop_task,
        }
        self.agent.resume_unfinished()

    # ------------------------------------------------------------------ lifecycle

    @property
    def open_streams(self) -> int:
        """How many SSE responses are being served right now."""
        return self._streams.count()

    def wait_open_streams(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until exactly ``count`` streams are open (a client connected, or
        all went away); False if ``timeout`` seconds pass first. For tests."""
        return self._streams.wait_count(count, timeout)

    def drop_streams(self) -> int:
        """Abruptly close every open stream; return how many there were.

        Under werkzeug's server the sockets are shut down at once (clients
        see a cut connection and reconnect); under other WSGI servers the
        responses just end.
        """
        count = self._streams.stop_all("dropped")
        logger.info("dropped %d open stream(s)", count)
        return count

    def close(self, timeout: float = 5.0) -> None:
        """End every open stream, stop the simulated agent; new requests get 503."""
        self._closing = True
        self._streams.stop_all("closing")
        if not self._streams.wait_count(0, timeout):
            logger.warning("%d stream(s) still open after %.1fs", self.open_streams, timeout)
        self.agent.shutdown(timeout)

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except ApiError as exc:
            response = exc.response()
        except StoreClosedError:
            response = ApiError(
                503, "shutting_down", "the server is shutting down", headers={"Retry-After": "1"}
            ).response()
        except Exception:
            logger.exception("unexpected error on %s %s", request.method, request.path)
            response = ApiError(500, "internal_error", "the server failed").response()
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        if self._closing:
            raise StoreClosedError("closing")
        adapter = self._map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            raise ApiError(404, "not_found", f"no such endpoint: {request.path}") from None
        except MethodNotAllowed as exc:
            allowed = sorted(exc.valid_methods or [])
            raise ApiError(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.path}",
                {"allowedMethods": allowed},
                {"Allow": ", ".join(allowed)},
            ) from None
        except HTTPException as exc:  # pragma: no cover - no rule redirects
            raise ApiError(
                exc.code or 400, "bad_request", exc.description or "bad request"
            ) from None
        principal = self._authenticate(request)
        required = _SCOPE_OF_ENDPOINT[str(endpoint)]
        if required not in principal.scopes:
            raise ApiError(
                403,
                "insufficient_scope",
                f"this API key lacks the {required} scope",
                {"requiredScope": required},
                {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{required}"'},
            )
        return self._endpoints[str(endpoint)](request, principal, **args)

    def _authenticate(self, request: Request) -> _Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401,
                "unauthenticated",
                "missing API key: send Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        candidate = token.encode()
        found: Optional[_Principal] = None
        for key, principal in self._keys:  # compare with every key, in constant time
            if hmac.compare_digest(candidate, key):
                found = principal
        if found is None:
            raise ApiError(
                401,
                "unauthenticated",
                "the API key is not valid",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return found

    # ------------------------------------------------------------------ tasks

    def _task_or_404(self, task_id: str) -> dict[str, Any]:
        task = self.store.get_task(task_id)
        if task is None:
            raise ApiError(404, "task_not_found", "no such task", {"taskId": task_id})
        return task

    def _create_task(self, request: Request, principal: _Principal) -> Response:
        body = read_json_object(request, self.max_body_bytes)
        prompt = text_field(body, "prompt", "a non-empty string")
        if prompt is None or not prompt.strip():
            raise field_error("prompt", "a non-empty string")
        streaming = body.get("eventsStreaming", False)
        if not isinstance(streaming, bool):
            raise field_error("eventsStreaming", "a boolean")
        metadata = body.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise field_error("metadata", "an object")
        key = request.headers.get("Idempotency-Key")
        scoped_key: Optional[str] = None
        fingerprint = ""
        if key is not None:
            if not key or len(key) > _MAX_IDEMPOTENCY_KEY_LENGTH:
                raise ApiError(
                    400,
                    "invalid_request",
                    f"Idempotency-Key must be 1 to {_MAX_IDEMPOTENCY_KEY_LENGTH} characters",
                    {"header": "Idempotency-Key"},
                )
            scoped_key = f"{principal.key_digest}:{key}"
            canonical = json.dumps(
                {"prompt": prompt, "eventsStreaming": streaming, "metadata": metadata},
                sort_keys=True,
                separators=(",", ":"),
            )
            fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        try:
            task, created = self.store.create_task_ex(
                prompt,
                events_streaming=streaming,
                metadata=metadata,
                simulated=True,
                idempotency_key=scoped_key,
                fingerprint=fingerprint,
            )
        except IdempotencyConflictError:
            raise ApiError(
                409,
                "idempotency_conflict",
                "this Idempotency-Key was already used with a different request body",
                {"header": "Idempotency-Key"},
            ) from None
        headers = {"Location": f"/tasks/{task['id']}"}
        if not created:
            headers["Idempotent-Replayed"] = "true"
            return json_response(task, 200, headers)
        self.agent.start(task["id"])
        return json_response(task, 201, headers)

    def _get_task(self, request: Request, principal: _Principal, task_id: str) -> Response:
        return json_response(self._task_or_404(task_id))

    def _stop_task(self, request: Request, principal: _Principal, task_id: str) -> Response:
        try:
            self.store.transition_task(
                task_id,
                TaskStatus.CANCELLED,
                summary="The task was cancelled on request.",
                actor={"id": "api_client", "role": "user"},
            )
        except UnknownTaskError:
            raise ApiError(404, "task_not_found", "no such task", {"taskId": task_id}) from None
        except TaskFinishedError as exc:
            raise ApiError(
                409,
                "task_finished",
                f"the task is already {exc.status}",
                {"taskId": task_id, "status": exc.status},
            ) from None
        self.agent.wake(task_id)
        return json_response(self._task_or_404(task_id))

    # ------------------------------------------------------------------ publish

    def _publish(self, request: Request, principal: _Principal) -> Response:
        body = read_json_object(request, self.max_body_bytes)
        event_type = body.get("type")
        if not isinstance(event_type, str):
            raise field_error("type", "a string: an event type")
        if event_type not in WIRE_TYPES:
            raise ApiError(
                400,
                "invalid_event_type",
                f"unknown event type: {event_type[:100]!r}",
                {"field": "type", "allowed": sorted(WIRE_TYPES)},
            )
        task_id = text_field(body, "taskId")
        trace_id = text_field(body, "traceId")
        organization_id = text_field(body, "organizationId")
        data = body.get("data", {})
        try:
            envelope = self.store.publish(
                event_type,
                data,
                task_id,
                trace_id=trace_id,
                organization_id=organization_id,
            )
        except UnknownTaskError:
            raise ApiError(404, "task_not_found", "no such task", {"taskId": task_id}) from None
        return json_response(envelope, 201)

    # ------------------------------------------------------------------ stream

    def _stream(self, request: Request, principal: _Principal) -> Response:
        spec = self._stream_spec(request)
        if spec is None:
            return Response(status=204)
        sock = _connection_socket(request.environ)
        body = self._stream_body(spec, sock)
        response = Response(body, status=200, direct_passthrough=True)
        response.headers["Content-Type"] = "text/event-stream; charset=utf-8"
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
        return response

    def _stream_spec(self, request: Request) -> Optional[_StreamSpec]:
        """Validate the stream's query; None means 204 (the task stream is over)."""
        args = request.args
        types: Optional[frozenset[str]] = None
        names = [n.strip() for raw in args.getlist("eventTypes") for n in raw.split(",")]
        names = [n for n in names if n]
        if names:
            unknown = sorted({n for n in names if n not in WIRE_TYPES})
            if unknown:
                raise ApiError(
                    400,
                    "invalid_event_type",
                    f"unknown event type(s): {', '.join(u[:100] for u in unknown[:10])}",
                    {"parameter": "eventTypes", "unknown": [u[:100] for u in unknown[:10]]},
                )
            types = frozenset(names)

        heartbeat = self.heartbeat_default
        raw_heartbeat = args.get("heartbeatSeconds")
        if raw_heartbeat is not None:
            try:
                heartbeat = float(raw_heartbeat)
            except ValueError:
                heartbeat = math.nan
            if not (math.isfinite(heartbeat) and MIN_HEARTBEAT <= heartbeat <= MAX_HEARTBEAT):
                raise ApiError(
                    400,
                    "invalid_parameter",
                    "heartbeatSeconds must be a number from "
                    f"{MIN_HEARTBEAT:g} to {MAX_HEARTBEAT:g}",
                    {
                        "parameter": "heartbeatSeconds",
                        "min": int(MIN_HEARTBEAT),
                        "max": int(MAX_HEARTBEAT),
                    },
                )

        task_id = args.get("taskId") or None
        positions = None
        if task_id is not None:
            positions = self.store.task_positions(task_id)
            if positions is None:
                raise ApiError(404, "task_not_found", "no such task", {"taskId": task_id[:100]})

        cursor = args.get("cursor") or request.headers.get("Last-Event-ID") or None
        if cursor is not None:
            if len(cursor) > _MAX_CURSOR_LENGTH:
                raise ApiError(
                    400, "invalid_cursor", "the cursor is not valid", {"parameter": "cursor"}
                )
            try:
                after = self.store.resolve_cursor(cursor)
            except InvalidCursorError as exc:
                raise ApiError(
                    400, "invalid_cursor", str(exc), {"parameter": "cursor", "cursor": cursor}
                ) from None
            except ExpiredCursorError as exc:
                raise ApiError(
                    410,
                    "cursor_expired",
                    str(exc),
                    {"cursor": cursor, "oldestSequence": exc.oldest_sequence},
                ) from None
            finished = None if positions is None else positions.finished_sequence
            if finished is not None and after >= finished:
                return None  # the task stream is over: 204 tells the client to stop
        elif positions is not None:
            after = positions.first_sequence - 1
            oldest = self.store.oldest_sequence
            if after + 1 < oldest:
                raise ApiError(
                    410,
                    "cursor_expired",
                    "the task's first events are older than the oldest event the server keeps",
                    {"taskId": task_id, "oldestSequence": oldest},
                )
        else:
            after = self.store.head_sequence  # live end: only events appended from now on
        return _StreamSpec(after, types, task_id, heartbeat)

    def _stream_body(self, spec: _StreamSpec, sock: Optional[socket.socket]) -> Iterator[bytes]:
        if sock is not None:
            with contextlib.suppress(OSError):  # every write leaves at once, no Nagle wait
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        store = self.store
        handle = self._streams.open(sock)
        query_types = spec.types
        if spec.task_id is not None and query_types is not None:
            query_types = query_types | {_FINISHED}  # to know when the task stream ends
        try:
            yield b": connected\n\n"
            position = spec.after
            last_write = time.monotonic()
            while handle.stop is None:
                try:
                    batch = store.read_after(
                        position, types=query_types, task_id=spec.task_id, limit=_BATCH
                    )
                except StoreClosedError:
                    return
                if batch.gap:
                    # Retention deleted events this stream had not sent yet. End it:
                    # the client reconnects with its cursor and gets 410, never a gap.
                    logger.info("a stream fell behind retention at sequence %d", position)
                    return
                if batch.events:
                    frames: list[bytes] = []
                    finished = False
                    for event in batch.events:
                        if spec.task_id is not None and event.type == _FINISHED:
                            finished = True
                            if spec.types is None or _FINISHED in spec.types:
                                frames.append(event.sse_frame())
                            else:  # not asked for: still move the client's cursor past it
                                frames.append(f"id: {event.id}\n\n".encode())
                            break
                        frames.append(event.sse_frame())
                    yield b"".join(frames)
                    last_write = time.monotonic()
                    if finished:
                        return
                    if len(batch.events) == _BATCH:
                        position = batch.events[-1].sequence
                        continue
                position = batch.head
                # Idle until an event comes, the store closes or the stream is
                # stopped (then read again); meanwhile heartbeats, and a check every
                # _LIVENESS_INTERVAL that the client is still there, with no query.
                while True:
                    idle = time.monotonic() - last_write
                    if idle >= spec.heartbeat:
                        yield b": heartbeat\n\n"
                        last_write = time.monotonic()
                        continue
                    wait = spec.heartbeat - idle
                    if sock is not None:
                        wait = min(wait, _LIVENESS_INTERVAL)
                    if store.wait_for_events(position, wait, lambda: handle.stop is not None):
                        break
                    if sock is not None and _peer_closed(sock):
                        logger.debug("a stream's client went away")
                        return
        finally:
            self._streams.release(handle)


def _connection_socket(environ: WSGIEnvironment) -> Optional[socket.socket]:
    """The client's socket, when the WSGI server exposes it (werkzeug, gunicorn)."""
    for key in ("werkzeug.socket", "gunicorn.socket"):
        sock = environ.get(key)
        if isinstance(sock, socket.socket):
            return sock
    return None


def _peer_closed(sock: socket.socket) -> bool:
    """True when the client closed its end of an idle stream.

    An SSE client sends nothing after its request, so a readable socket means
    EOF (or a reset); a write would only find out at the next heartbeat.
    """
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            readable = bool(poller.poll(0))
        else:  # pragma: no cover - Windows
            readable = bool(select.select([sock], [], [], 0)[0])
        return readable and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def create_app(
    store: EventStore,
    *,
    api_keys: Mapping[str, Iterable[str]],
    agent_pace: float = 0.2,
    heartbeat_default: float = 15.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> ReferenceApp:
    """Build the reference server's WSGI application on ``store``.

    :param api_keys: ``{key: scopes}``; scopes among ``events:read``,
        ``events:write``, ``tasks:read``, ``tasks:write``.
    :param agent_pace: seconds between two events of a simulated run.
    :param heartbeat_default: heartbeat interval of streams that do not ask
        for one (``heartbeatSeconds``), 1..300.
    :param max_body_bytes: larger request bodies get 413.

    Serve it with any WSGI server that runs requests in threads (streams hold
    their thread while open). Unfinished simulated runs found in the store
    are resumed at once. Call :meth:`ReferenceApp.close` when the server stops.
    """
    return ReferenceApp(
        store,
        api_keys=api_keys,
        agent_pace=agent_pace,
        heartbeat_default=heartbeat_default,
        max_body_bytes=max_body_bytes,
    )
