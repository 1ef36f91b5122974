"""The client: configuration, the task API, and typed event streams."""

from __future__ import annotations

import json as jsonlib
import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Callable, Optional
from urllib.parse import quote, urlsplit

import requests

from ._bodies import ACCEPT_ENCODING, read_body, read_body_prefix
from ._multiplex import SharedTaskStreams
from .cursors import CursorStore, MemoryCursorStore
from .dispatch import Registry
from .errors import (
    ConfigurationError,
    ConnectionLostError,
    InvalidEventError,
    error_for_response,
    secrets_in,
)
from .event_types import EventType
from .listener import DEFAULT_LEASE_TTL, DEFAULT_SAVE_INTERVAL, HandlerContext, Listener
from .models import TaskEvent
from .sse import EventSource, Happening, RetryPolicy
from .stream import StreamOptions, TaskEventStream, read_timeout_for
from .tasks import Task

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MAX_BODY_SIZE", "Client"]

logger: logging.Logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8787"
"""Where the reference server listens by default (``agentstream serve``)."""

STREAM_PATH = "/task-events/stream"

DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
"""Largest API response body a client reads by default (16 MiB, decompressed)."""

_ERROR_BODY_LIMIT = 64 * 1024  # most bytes of an error body read for its message


class Client:
    """A connection to an agentstream (or AgentRail-compatible) server.

    ::

        client = Client()  # AGENTSTREAM_BASE_URL / AGENTSTREAM_API_KEY
        for event in client.stream_events(StreamOptions(heartbeat_seconds=30)):
            print(event.type, event.data)

    :param base_url: the server; default ``AGENTSTREAM_BASE_URL``, else
        ``http://127.0.0.1:8787``.
    :param api_key: sent as ``Authorization: Bearer <key>``; default
        ``AGENTSTREAM_API_KEY``. A missing key raises
        :class:`~agentstream.errors.ConfigurationError` here, not at the
        first request. The key never appears in a repr, log line or error.
    :param timeout: seconds for connecting and for each plain API call.
    :param retry: the :class:`~agentstream.sse.RetryPolicy` of streams.
    :param session: a ``requests.Session`` to use (proxies, certificates);
        the client does not close a session it was given. TLS verification is
        requests' default and is never turned off by agentstream. Without
        one, the client keeps one session per thread (requests does not
        promise that a Session is safe to share between threads); a session
        you pass is used from every thread that calls the client.
    :param max_body_size: largest API response body read, in bytes after
        decompression; a larger one raises
        :class:`~agentstream.errors.ResponseTooLargeError` as soon as it is
        known, having read at most that much. Streams bound each event with
        ``max_event_size`` instead.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: float = 30.0,
        retry: Optional[RetryPolicy] = None,
        session: Optional[requests.Session] = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int):
            raise ConfigurationError("max_body_size must be a number of bytes (an int)")
        if max_body_size <= 0:
            raise ConfigurationError("max_body_size must be a positive number of bytes")
        base_url = base_url or os.environ.get("AGENTSTREAM_BASE_URL") or DEFAULT_BASE_URL
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError("base_url must start with http:// or https://")
        parts = urlsplit(base_url)
        if parts.username or parts.password:
            raise ConfigurationError(
                "base_url must not carry credentials (user:password@); pass the key as api_key"
            )
        origin = "api_key"
        if not api_key:
            api_key, origin = os.environ.get("AGENTSTREAM_API_KEY"), "AGENTSTREAM_API_KEY"
        if not api_key:
            raise ConfigurationError(
                "no API key: pass Client(api_key=...) or set AGENTSTREAM_API_KEY "
                "(`agentstream serve` prints a development key when it starts)"
            )
        _check_api_key(api_key, origin)
        self.base_url: str = base_url.rstrip("/")
        self.timeout = timeout
        self.retry: RetryPolicy = retry or RetryPolicy.default()
        self.__api_key = api_key
        self.max_body_size = max_body_size
        self._given_session = session
        self._local = threading.local()  # .session: this thread's own session
        self._sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()
        self._sessions_lock = threading.Lock()
        # Listeners of this client share it, so listen() again resumes in-process.
        self._cursors = MemoryCursorStore()
        # One upstream connection for all of this client's task.events() iterators.
        self.task_streams: SharedTaskStreams = SharedTaskStreams(self)

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, api_key=<hidden>)"

    # -- streams ----------------------------------------------------------

    def stream_events(
        self,
        options: Optional[StreamOptions] = None,
        *,
        retry: Optional[RetryPolicy] = None,
        on_happening: Optional[Callable[[Happening], None]] = None,
        on_invalid: Optional[Callable[[InvalidEventError], None]] = None,
        on_sequence_reset: Optional[Callable[[TaskEvent, int], None]] = None,
    ) -> TaskEventStream:
        """Stream typed task events: ``GET /task-events/stream``.

        Returns a :class:`~agentstream.stream.TaskEventStream`: iterate it (each
        event as it arrives), close it or use it as a context manager. It
        reconnects by itself and resumes from its cursor with nothing lost
        and nothing repeated. A key without ``events:read`` raises
        :class:`~agentstream.errors.InsufficientScopeError` on the first
        ``next()``, before any event, without retrying.

        ``retry`` overrides the client's :class:`~agentstream.sse.RetryPolicy`
        for this stream (a one-shot stream keeps the client's budget; a
        listener passes one without a budget). ``on_happening`` receives the
        connection's happenings, ``on_invalid`` each event that cannot be
        parsed, and ``on_sequence_reset`` each event whose sequence went back
        (the server's log was reset; see ``TaskEventStream``).
        """
        options = options or StreamOptions()
        source = EventSource(
            self.base_url + STREAM_PATH,
            params=options.query_params(),
            headers=self._auth_headers(),
            last_event_id=options.cursor or None,
            resume_param="cursor",
            retry=retry or self.retry,
            connect_timeout=self.timeout,
            read_timeout=read_timeout_for(options),
            session=self._given_session,
            on_happening=on_happening,
        )
        return TaskEventStream(source, on_invalid=on_invalid, on_sequence_reset=on_sequence_reset)

    def listen(
        self,
        options: Optional[StreamOptions] = None,
        *,
        registry: Optional[Registry] = None,
        cursor_store: Optional[CursorStore] = None,
        name: str = "default",
        workers: int = 1,
        queue_size: int = 1000,
        save_interval: float = DEFAULT_SAVE_INTERVAL,
        retry: Optional[RetryPolicy] = None,
        handler_context: Optional[HandlerContext] = None,
        lease_ttl: Optional[float] = DEFAULT_LEASE_TTL,
        on_missing_cursor: str = "live",
        restart_after_fork: bool = False,
    ) -> Listener:
        """A :class:`~agentstream.listener.Listener` for this client's stream (not started).

        ``client.listen(StreamOptions(heartbeat_seconds=30)).run_forever()``
        runs the handlers registered with :func:`agentstream.on` until Ctrl-C.
        Without ``cursor_store``, the listeners of one client share an
        in-memory store: a second ``listen()`` with the same ``name`` resumes
        where the first stopped.

        A listener never gives up: without ``retry`` it reconnects with the
        client's backoff and no retry budget (errors that are not retried,
        such as 401 or 403, still end it). The cursor is written to the store
        every ``save_interval`` seconds and on stop. With a ``cursor_store``
        that supports leases (SQLite, Redis, Django, memory), the listener
        holds a lease on ``name`` (``lease_ttl`` seconds, renewed) so that one
        listener per name consumes across processes; the client's own
        in-memory store takes none. See :class:`~agentstream.listener.Listener`
        for the other arguments.
        """
        return Listener(
            self,
            options,
            registry=registry,
            cursor_store=cursor_store if cursor_store is not None else self._cursors,
            # The client's implicit store is for resuming in-process, not for
            # coordinating: two listeners of one client may share a name.
            lease_ttl=lease_ttl if cursor_store is not None else None,
            on_missing_cursor=on_missing_cursor,
            restart_after_fork=restart_after_fork,
            name=name,
            workers=workers,
            queue_size=queue_size,
            save_interval=save_interval,
            retry=retry or self.retry.with_(max_attempts=None, max_elapsed=None),
            handler_context=handler_context,
        )

    # -- tasks --------------------------------------------------------------

    def create_task(
        self,
        prompt: str,
        *,
        events_streaming: bool = False,
        metadata: Optional[Mapping[str, Any]] = None,
        idempotency_key: Optional[str] = None,
    ) -> Task:
        """Create a task (``POST /tasks``). With ``idempotency_key``, retrying
        the same call returns the same task instead of creating another."""
        body = {
            "prompt": prompt,
            "eventsStreaming": events_streaming,
            "metadata": dict(metadata or {}),
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Task.from_json(self, self.request("POST", "/tasks", json=body, headers=headers))

    def get_task(self, task_id: str) -> Task:
        """Fetch a task (``GET /tasks/{id}``); raises ``NotFoundError`` if there is none."""
        return Task.from_json(self, self.request("GET", f"/tasks/{_segment(task_id)}"))

    def stop_task(self, task_id: str) -> Task:
        """Cancel a task (``POST /tasks/{id}/stop``) and return it."""
        return Task.from_json(self, self.request("POST", f"/tasks/{_segment(task_id)}/stop"))

    def publish_event(
        self,
        type: Any,
        data: Any = None,
        *,
        task_id: Optional[str] = None,
        trace_id: Optional[str] = None,
    ) -> TaskEvent:
        """Publish an event (``POST /task-events``, scope ``events:write``).

        The server assigns ``id``, ``sequence`` and ``occurredAt``; the
        stored event is returned.
        """
        body: dict[str, Any] = {"type": str(EventType(type)), "data": data}
        if task_id is not None:
            body["taskId"] = task_id
        if trace_id is not None:
            body["traceId"] = trace_id
        return TaskEvent.from_dict(self.request("POST", "/task-events", json=body))

    # -- plain API calls --------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Any:
        """Call the API and return the decoded JSON body; errors are typed.

        The body is read up to :attr:`max_body_size` (decompressed), an error
        body up to 64 KiB; only gzip and deflate are asked for and accepted.
        """
        all_headers = self._auth_headers()
        all_headers["Accept"] = "application/json"
        all_headers["Accept-Encoding"] = ACCEPT_ENCODING
        all_headers.update(headers or {})
        try:
            response = self._thread_session().request(
                method,
                self.base_url + path,
                json=json,
                headers=all_headers,
                timeout=self.timeout,
                stream=True,  # read below, with a bound
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ConnectionLostError(f"{method} {path} failed: {exc}") from exc
        with response:
            if response.status_code >= 400:
                raise error_for_response(
                    response.status_code,
                    read_body_prefix(response, _ERROR_BODY_LIMIT),
                    response.headers,
                    reason=response.reason or "",
                    secrets=secrets_in(all_headers),
                )
            try:
                body = read_body(response, self.max_body_size)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise ConnectionLostError(f"{method} {path} failed: {exc}") from exc
        return jsonlib.loads(body) if body else None

    def close(self) -> None:
        """Release the client's connections (not a session it was given)."""
        self.task_streams.close()
        with self._sessions_lock:
            sessions = list(self._sessions)
            self._sessions.clear()
        for session in sessions:
            session.close()

    def _thread_session(self) -> requests.Session:
        """The given session, or the calling thread's own (created on first use)."""
        if self._given_session is not None:
            return self._given_session
        session: Optional[requests.Session] = getattr(self._local, "session", None)
        if session is None:
            # Held by the thread-local only: it goes when its thread ends.
            session = self._local.session = requests.Session()
            with self._sessions_lock:
                self._sessions.add(session)
        return session

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.__api_key}"}


def _check_api_key(key: str, origin: str) -> None:
    """Raise :class:`ConfigurationError` for a key no ``Authorization`` header can
    carry intact, saying what is wrong and where, never what the key is.

    A header value is printable ASCII here: requests refuses CR, LF and leading
    white space (quoting the whole header in its error), http.client refuses
    what latin-1 cannot encode, and servers strip trailing white space.
    """
    for position, char in enumerate(key, 1):
        if " " <= char <= "~":
            continue
        if char == "\r":
            what = "a CR (\\r)"
        elif char == "\n":
            what = "an LF (\\n)"
        elif char < " " or char == "\x7f":
            what = f"a control character (U+{ord(char):04X})"
        else:
            what = f"a non-ASCII character (U+{ord(char):04X})"
        hint = " (a .env file with CRLF line endings?)" if char in "\r\n" else ""
        raise ConfigurationError(
            f"the API key from {origin} contains {what} at position {position} of {len(key)}"
            f"{hint}: an HTTP header cannot carry it; remove it"
        )
    if key != key.strip(" "):
        raise ConfigurationError(
            f"the API key from {origin} starts or ends with white space; remove it"
        )


def _segment(value: str) -> str:
    return quote(value, safe="")
