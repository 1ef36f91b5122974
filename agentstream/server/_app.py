"""The WSGI application of the reference server (werkzeug routing and request/response).

Every error is JSON ``{"error": {"code", "message", "details"}}`` with its
HTTP status; no input reaches a 5xx. Request bodies are read by
``_bodies``, keys checked by ``_auth``, streams written by ``_streams``; this
module routes, checks scopes and organizations, and runs the task and publish
endpoints.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ..event_types import WIRE_TYPES, TaskStatus
from ._agent import SimulatedAgent
from ._auth import ALL_SCOPES, KeyRing, KeySpec, Principal
from ._bodies import (
    Answer,
    ApiError,
    field_error,
    json_response,
    json_text_response,
    read_json_object,
    text_field,
)
from ._errors import (
    IdempotencyConflictError,
    StoreClosedError,
    TaskFinishedError,
    UnknownTaskError,
)
from ._store import EventStore
from ._streams import MAX_HEARTBEAT, MIN_HEARTBEAT, OpenStreams, parse_stream_query
from ._webhook_api import ROUTES as WEBHOOK_ROUTES
from ._webhook_api import WebhookApi, WebhookApiError
from ._webhooks import WebhookConfig, WebhookDelivery

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_FANOUT_INTERVAL",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_STREAM_BACKLOG",
    "MAX_HEARTBEAT",
    "MIN_HEARTBEAT",
    "ReferenceApp",
    "create_app",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_STREAM_BACKLOG = 10_000
DEFAULT_FANOUT_INTERVAL = 0.005
_MAX_IDEMPOTENCY_KEY_LENGTH = 255

_SCOPE_OF_ENDPOINT = {
    "stream": "events:read",
    "publish": "events:write",
    "create_task": "tasks:write",
    "get_task": "tasks:read",
    "stop_task": "tasks:write",
    **{str(rule.endpoint): scope for rule, scope in WEBHOOK_ROUTES},
}


_STATIC_ROUTES = {
    ("/task-events", "POST"): "publish",
    ("/task-events/stream", "GET"): "stream",
}


class ReferenceApp:
    """The reference server as a WSGI application (see :func:`create_app`).

    Call :meth:`close` when the server that runs it stops: it ends open
    streams and stops the simulated agent and the fan-out. The store is not
    closed: it belongs to whoever created it.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        api_keys: Mapping[str, KeySpec],
        agent_pace: float = 0.2,
        heartbeat_default: float = 15.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        stream_backlog: int = DEFAULT_STREAM_BACKLOG,
        webhooks: Optional[WebhookConfig] = None,
        fanout_interval: float = DEFAULT_FANOUT_INTERVAL,
    ) -> None:
        if not MIN_HEARTBEAT <= heartbeat_default <= MAX_HEARTBEAT:
            raise ValueError(
                f"heartbeat_default must be within {MIN_HEARTBEAT:g}..{MAX_HEARTBEAT:g} seconds"
            )
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        if stream_backlog < 1:
            raise ValueError("stream_backlog must be positive")
        if not fanout_interval > 0:
            raise ValueError("fanout_interval must be positive")
        self._keys = KeyRing(api_keys, store.organization_id)
        self.store = store
        self.heartbeat_default: float = float(heartbeat_default)
        self.max_body_bytes = max_body_bytes
        self._streams = OpenStreams(store, backlog=stream_backlog, interval=fanout_interval)
        self.agent: SimulatedAgent = SimulatedAgent(store, pace=agent_pace)
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
        self._endpoints: dict[str, Callable[..., Answer]] = {
            "stream": self._stream,
            "publish": self._publish,
            "create_task": self._create_task,
            "get_task": self._get_task,
            "stop_task": self._stop_task,
        }
        self.webhooks: WebhookDelivery = WebhookDelivery(store, webhooks)
        webhook_api = WebhookApi(
            self.webhooks, lambda request: read_json_object(request, self.max_body_bytes)
        )
        for rule, _ in WEBHOOK_ROUTES:
            self._map.add(rule.empty())
        self._endpoints.update(webhook_api.endpoints)
        self.agent.resume_unfinished()
        self.webhooks.start()

    # ------------------------------------------------------------------ lifecycle

    @property
    def organizations(self) -> frozenset[str]:
        """The organizations the API keys act for (one: the server is single-tenant)."""
        return self._keys.organizations

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
        self._streams.close(timeout)
        self.agent.shutdown(timeout)
        self.webhooks.stop(timeout)

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        response: Answer
        try:
            response = self._dispatch(request)
        except ApiError as exc:
            response = exc.response()
        except WebhookApiError as exc:
            response = ApiError(exc.status, exc.code, exc.message, exc.details).response()
        except StoreClosedError:
            response = ApiError(
                503, "shutting_down", "the server is shutting down", headers={"Retry-After": "1"}
            ).response()
        except Exception:
            logger.exception("unexpected error on %s %s", request.method, request.path)
            response = ApiError(500, "internal_error", "the server failed").response()
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Answer:
        if self._closing:
            raise StoreClosedError("closing")
        environ = request.environ
        # The hot paths (publish, stream) have no parameter: a dict finds them. Binding
        # and matching the whole map was 8% of a publish's instructions
        # (bench/server_fanout.py --instructions).
        route = (str(environ.get("PATH_INFO", "")), str(environ.get("REQUEST_METHOD", "")))
        static = _STATIC_ROUTES.get(route)
        if static is not None:
            return self._call(static, request, {})
        adapter = self._map.bind_to_environ(environ)
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
        return self._call(str(endpoint), request, args)

    def _call(self, endpoint: str, request: Request, args: Mapping[str, Any]) -> Answer:
        principal = self._authenticate(request)
        required = _SCOPE_OF_ENDPOINT[endpoint]
        if required not in principal.scopes:
            raise ApiError(
                403,
                "insufficient_scope",
                f"this API key lacks the {required} scope",
                {"requiredScope": required},
                {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{required}"'},
            )
        return self._endpoints[endpoint](request, principal, **args)

    def _authenticate(self, request: Request) -> Principal:
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
        found = self._keys.find(token)
        if found is None:
            raise ApiError(
                401,
                "unauthenticated",
                "the API key is not valid",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return found

    # ------------------------------------------------------------------ tasks

    def _task_or_404(self, task_id: str, principal: Principal) -> dict[str, Any]:
        task = self.store.get_task(task_id, principal.organization_id)
        if task is None:
            raise ApiError(404, "task_not_found", "no such task", {"taskId": task_id})
        return task

    def _create_task(self, request: Request, principal: Principal) -> Answer:
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
            task, created = self.store.create_task_once(
                scoped_key,
                prompt,
                fingerprint=fingerprint,
                events_streaming=streaming,
                metadata=metadata,
                organization_id=principal.organization_id,
                simulated=True,
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

    def _get_task(self, request: Request, principal: Principal, task_id: str) -> Answer:
        return json_response(self._task_or_404(task_id, principal))

    def _stop_task(self, request: Request, principal: Principal, task_id: str) -> Answer:
        try:
            self.store.transition_task(
                task_id,
                TaskStatus.CANCELLED,
                summary="The task was cancelled on request.",
                actor={"id": "api_client", "role": "user"},
                organization_id=principal.organization_id,
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
        return json_response(self._task_or_404(task_id, principal))

    # ------------------------------------------------------------------ publish

    def _publish(self, request: Request, principal: Principal) -> Answer:
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
        if organization_id is not None and organization_id != principal.organization_id:
            raise ApiError(
                403,
                "organization_forbidden",
                "this API key publishes only for its own organization",
                {"field": "organizationId", "organizationId": principal.organization_id},
            )
        data = body.get("data", {})
        try:
            stored = self.store._publish_stored(
                event_type,
                data,
                task_id,
                trace_id=trace_id,
                organization_id=principal.organization_id,
            )
        except UnknownTaskError:
            raise ApiError(404, "task_not_found", "no such task", {"taskId": task_id}) from None
        # The envelope as stored and streamed, sent as it is: encoded once, not decoded
        # and encoded again (the same compact JSON json_response would write).
        return json_text_response(stored.envelope, 201)

    # ------------------------------------------------------------------ stream

    def _stream(self, request: Request, principal: Principal) -> Answer:
        spec = parse_stream_query(
            request, self.store, principal.organization_id, self.heartbeat_default
        )
        if spec is None:
            return Response(status=204)
        body = self._streams.body(spec, request.environ)
        response = Response(body, status=200, direct_passthrough=True)
        response.headers["Content-Type"] = "text/event-stream; charset=utf-8"
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
        return response


def create_app(
    store: EventStore,
    *,
    api_keys: Mapping[str, KeySpec],
    agent_pace: float = 0.2,
    heartbeat_default: float = 15.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    stream_backlog: int = DEFAULT_STREAM_BACKLOG,
    webhooks: Optional[WebhookConfig] = None,
    fanout_interval: float = DEFAULT_FANOUT_INTERVAL,
) -> ReferenceApp:
    """Build the reference server's WSGI application on ``store``.

    :param api_keys: ``{key: ApiKey(scopes, organization_id)}``, or ``{key:
        scopes}`` for keys of the store's default organization; scopes among
        ``events:read``, ``events:write``, ``tasks:read``, ``tasks:write``.
    :param agent_pace: seconds between two events of a simulated run.
    :param heartbeat_default: heartbeat interval of streams that do not ask
        for one (``heartbeatSeconds``), 1..300.
    :param max_body_bytes: larger request bodies get 413.
    :param stream_backlog: events a stream may lag behind before it is
        disconnected (its client resumes from its cursor).
    :param webhooks: how webhooks are delivered (allowed hosts, retry
        scale...); default :class:`WebhookConfig` (loopback hosts only).
    :param fanout_interval: seconds between two writes of new events to a
        stream at least, while events keep coming (they go out together);
        an event after a quiet spell goes out at once.

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
        stream_backlog=stream_backlog,
        webhooks=webhooks,
        fanout_interval=fanout_interval,
    )
