"""The reconnecting stream: :class:`EventSource`, an ``EventSource`` for sync Python."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Mapping
from typing import Any, Callable, Optional, Union, cast

import requests

from ..errors import (
    AgentStreamError,
    ConnectionLostError,
    ContentTypeError,
    RateLimitError,
    RedirectError,
    RetryBudgetExhaustedError,
    ServerError,
    error_for_response,
    redact,
    secrets_in,
)
from ._events import (
    Connected,
    Disconnected,
    Failed,
    Happening,
    Retrying,
    ServerSentEvent,
)
from ._parser import DEFAULT_MAX_EVENT_SIZE, Parsed, SSEParser
from ._retry import RetryPolicy
from ._transport import (
    READ_ERRORS,
    Transport,
    connection_lost,
    read1_of,
    read_error_body,
    shutdown,
    shutdown_socket,
)

__all__ = ["EventSource"]

logger = logging.getLogger(__name__)

# What a failed connection attempt raises that is retried (after a backoff).
_RETRIED = (ConnectionLostError, ServerError, RateLimitError)


class EventSource:
    """Iterate the events of an SSE endpoint, reconnecting as a browser would.

    ::

        with EventSource("http://127.0.0.1:8787/events") as source:
            for event in source:
                print(event.event, event.data, event.id)

    The stream opens the connection on the first ``next()`` and yields each
    :class:`ServerSentEvent` as soon as its terminating blank line arrives,
    whatever the framing (chunked, one chunk per event, or close-delimited).
    When the connection drops it reconnects with exponential backoff and full
    jitter (:class:`RetryPolicy`), sending ``Last-Event-ID`` (and, with
    ``resume_param``, the same value as a query parameter), honouring the
    server's ``retry:`` field and ``Retry-After`` on 429 and 503.

    Not retried, raised at once: 400, 401, 403, 404, 410 and any other 4xx but
    408 and 429 (as the typed :mod:`agentstream.errors`), a 200 whose
    Content-Type is not ``text/event-stream`` (:class:`ContentTypeError`), a
    redirect without ``Location`` (:class:`RedirectError`), and an event larger
    than ``max_event_size`` (:class:`EventTooLargeError`). HTTP 204 ends the
    iteration without reconnecting. When the retry budget is spent, iterating
    raises :class:`RetryBudgetExhaustedError` carrying the last cause.

    :param url: the endpoint; reconnects always go back to it, not to the
        target of a redirect.
    :param method: HTTP method (``POST``, ``REPORT``... are allowed).
    :param params: query parameters.
    :param headers: extra request headers; the dict is copied, never changed.
        ``Accept: text/event-stream`` and ``Cache-Control: no-cache`` are sent
        unless overridden. requests drops ``Authorization`` when a redirect
        leads to another host.
    :param body: request body (bytes or str), sent again on every reconnect.
    :param json: a JSON body instead of ``body``, sent again on every reconnect.
    :param last_event_id: the initial Last-Event-ID; ``None`` or ``""`` send
        none. Afterwards the stream tracks the id from the events.
    :param resume_param: if set, the last event ID is also sent as this query
        parameter on every connection (for servers that resume from a
        ``cursor`` parameter).
    :param retry: the :class:`RetryPolicy` (default: :meth:`RetryPolicy.default`).
    :param connect_timeout: seconds to wait for the TCP/TLS connection.
    :param read_timeout: seconds of silence (no byte, not even a comment)
        after which the connection is taken as dead, dropped and resumed;
        ``None`` waits forever.
    :param max_event_size: largest event accepted, in bytes.
    :param chunk_size: most bytes read from the socket at once.
    :param session: a ``requests.Session`` whose settings (proxies,
        certificates, auth, headers, cookies, adapters) the stream uses; it
        is neither changed nor closed by the stream (see
        :class:`~agentstream.sse._transport.Transport`). By default the stream
        uses a session of its own.
    :param on_happening: called, on the iterating thread, with each
        :class:`Connected`, :class:`Disconnected`, :class:`Retrying`,
        :class:`Failed` and :class:`Comment`. An exception it raises is
        logged and ignored.
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        params: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
        body: Union[bytes, str, None] = None,
        json: Any = None,
        last_event_id: Optional[str] = None,
        resume_param: Optional[str] = None,
        retry: Optional[RetryPolicy] = None,
        connect_timeout: float = 10.0,
        read_timeout: Optional[float] = 300.0,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        chunk_size: int = 64 * 1024,
        session: Optional[requests.Session] = None,
        on_happening: Optional[Callable[[Happening], None]] = None,
    ) -> None:
        if body is not None and json is not None:
            raise ValueError("pass either body or json, not both")
        self.url = url
        self.method: str = method.upper()
        self._params = dict(params or {})
        self._headers = dict(headers or {})
        self._secrets = secrets_in(self._headers)
        self._body = body
        self._json = json
        self._resume_param = resume_param
        self.retry_policy: RetryPolicy = retry or RetryPolicy.default()
        self._timeout = (connect_timeout, read_timeout)
        self._chunk_size = chunk_size
        # Each new socket is reported before it connects, so that close() and
        # restart() can also interrupt a connect or a wait for headers.
        self._transport = Transport(session, self._on_new_socket)
        self._on_happening = on_happening
        self._parser = SSEParser(
            max_event_size=max_event_size,
            last_event_id=last_event_id or None,
        )

        self._lock = threading.Lock()
        self._wake = threading.Event()  # set by close() and restart()
        self._closed = False
        self._restart_requested = False
        self._response: Optional[requests.Response] = None  # headers received
        self._opening: Optional[socket.socket] = None  # connecting, no response yet
        self._reading = False  # the iterating thread is blocked on _response
        self._batches: Optional[Generator[list[ServerSentEvent], None, None]] = None
        self._buffer: deque[ServerSentEvent] = deque()
        self._mode: Optional[str] = None  # "events" or "batches", whichever is used first

    # -- public API -----------------------------------------------------

    @property
    def last_event_id(self) -> Optional[str]:
        """The ID the next connection will resume from (None: no header)."""
        return self._parser.last_event_id

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the stream ended."""
        return self._closed

    def __iter__(self) -> EventSource:
        return self

    def __next__(self) -> ServerSentEvent:
        if self._buffer and not self._closed:
            return self._buffer.popleft()
        if self._batches is None:
            self._start("events")
        assert self._batches is not None
        if self._closed:
            self._buffer.clear()
            self._batches.close()
            raise StopIteration
        batch = next(self._batches)
        self._buffer.extend(batch)
        return self._buffer.popleft()

    def batches(self) -> Iterator[list[ServerSentEvent]]:
        """Iterate lists of events instead: one non-empty list per read from the socket.

        For consumers that take events a read at a time (the Listener does)
        or hand them to another thread: one step or hand-off per read instead
        of one per event. Use either this or plain iteration on a stream, not
        both.
        """
        self._start("batches")
        assert self._batches is not None
        return self._batches

    def _start(self, mode: str) -> None:
        if self._mode is not None:
            raise RuntimeError(
                f"this stream is already being read as {self._mode}; "
                "iterate it one way only (events or batches())"
            )
        self._mode = mode
        self._batches = self._run()

    def __enter__(self) -> EventSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the stream, from any thread. Returns at once.

        A read blocked on the socket is woken by shutting the socket down; a
        backoff wait is interrupted. The iterating thread then stops (its
        ``next()`` raises ``StopIteration``) and the connection and, if the
        stream created it, the session are released.
        """
        with self._lock:
            self._closed = True
            response, reading, opening = self._response, self._reading, self._opening
        self._wake.set()
        if opening is not None:
            shutdown_socket(opening)
        if response is not None:
            shutdown(response)
            if not reading:
                self._release()

    def restart(self) -> None:
        """Drop the current connection and reconnect now, keeping the cursor.

        Callable from any thread. Events already parsed are still delivered;
        the half-received one is discarded and comes again after the resume.
        """
        with self._lock:
            if self._closed:
                return
            self._restart_requested = True
            response, opening = self._response, self._opening
        self._wake.set()
        if opening is not None:
            shutdown_socket(opening)
        if response is not None:
            shutdown(response)

    # -- the connection loop --------------------------------------------
    #
    # connecting -> open -> (backing off -> connecting ...) -> closed. Each
    # state is one method; _run only moves between them. A connection that
    # fails or ends goes to backing off, which raises when the retry budget is
    # spent; close() from any thread moves to closed from every state.

    def _run(self) -> Generator[list[ServerSentEvent], None, None]:
        budget = _Budget(self.retry_policy)
        try:
            while not self._closed:
                try:
                    response = self._connecting()
                except _RETRIED as exc:
                    error: Optional[BaseException] = exc
                    reason = f"connection failed: {exc}"
                else:
                    if response is None:  # 204, or closed meanwhile
                        if not self._closed:
                            self._emit(Disconnected(reason="server answered 204 No Content"))
                        return
                    error = yield from self._open(response, budget)
                    reason = f"connection lost: {error}" if error else "server closed the stream"
                if self.closed:  # close() was called meanwhile, from any thread
                    return
                if self._take_restart():
                    budget.reset()
                    self._emit(Disconnected(reason="restart requested"))
                    continue
                self._emit(Disconnected(reason=reason, error=error))
                self._backing_off(budget, error)
        except BaseException as exc:
            if isinstance(exc, GeneratorExit):
                raise
            if self._closed and isinstance(exc, (AgentStreamError, *READ_ERRORS)):
                return  # what close() caused (a shut socket) ends the stream quietly
            self._emit(Failed(error=exc))
            raise
        finally:
            self._closed = True  # closed
            self._release()

    def _connecting(self) -> Optional[requests.Response]:
        """Connecting: the request, up to a 200 with an event stream. None for
        204 or once closed; raises a typed error for anything else."""
        response = self._send_request()
        status = response.status_code
        with self._lock:
            if self._closed:
                response.close()
                return None
            # From here close() shuts this response's socket: also a slow error body.
            self._response = response
        if status == 200:
            content_type = response.headers.get("Content-Type", "")
            if content_type.split(";", 1)[0].strip().lower() == "text/event-stream":
                self._emit(Connected(url=self.url, last_event_id=self._parser.last_event_id))
                return response
        body = self._error_body(response)
        if status == 200:
            raise ContentTypeError(
                f"expected Content-Type text/event-stream, got {content_type or 'none'!r}: "
                f"is {self.url} an SSE endpoint?",
                status=status,
                headers=response.headers,
                details={"body": redact(body[:200].decode("utf-8", "replace"), self._secrets)},
            )
        if status == 204:
            return None
        if 300 <= status < 400:
            raise RedirectError(
                f"HTTP {status} redirect without a Location header from {self.url}",
                status=status,
                headers=response.headers,
            )
        error = error_for_response(
            status, body, response.headers, reason=response.reason or "", secrets=self._secrets
        )
        if status == 408:  # the server gave up waiting: retried like a dropped connection
            raise ConnectionLostError(str(error)) from error
        raise error  # 429 and 5xx (RateLimitError, ServerError) are retried, the rest not

    def _open(
        self, response: requests.Response, budget: _Budget
    ) -> Generator[list[ServerSentEvent], None, Optional[BaseException]]:
        """Open: read and hand out events until the connection ends. Returns
        the error that ended it (None: the server closed the stream)."""
        opened_at = time.monotonic()
        delivered = False
        try:
            for batch in self._read(response):
                delivered = True
                yield batch
        except ConnectionLostError as exc:
            return exc
        finally:
            self._release_response(response)
            self._parser.reset()  # a half-received event is discarded, id included
            if delivered or time.monotonic() - opened_at >= self.retry_policy.healthy_after:
                budget.reset()
        return None

    def _backing_off(self, budget: _Budget, error: Optional[BaseException]) -> None:
        """Backing off: count the failure, raise if the budget is spent, else
        wait (woken early by close() or restart())."""
        cause = error or ConnectionLostError("server closed the stream")
        server_retry = None if self._parser.retry is None else self._parser.retry / 1000
        delay = budget.next_delay(cause, server_retry, getattr(error, "retry_after", None))
        self._emit(Retrying(delay=delay, attempt=budget.attempts, error=error))
        self._wake.wait(delay)
        if self._take_restart():
            budget.reset()

    # -- connecting, in detail --------------------------------------------

    def _send_request(self) -> requests.Response:
        # identity: compression buffers events on the server side, and the body
        # is read below urllib3's decoders (see read1_of).
        headers = {
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "Accept-Encoding": "identity",
        }
        headers.update(self._headers)
        params = dict(self._params)
        last_event_id = self._parser.last_event_id
        if last_event_id:
            header = _header_value(last_event_id)
            if header is not None:
                headers["Last-Event-ID"] = header  # type: ignore[assignment]
            if self._resume_param:
                params[self._resume_param] = last_event_id
        try:
            return self._transport.session.request(
                self.method,
                self.url,
                params=params,
                headers=headers,
                data=self._body,
                json=self._json,
                stream=True,
                timeout=self._timeout,  # type: ignore[arg-type,unused-ignore]
                allow_redirects=True,
            )
        except requests.TooManyRedirects as exc:
            raise RedirectError(str(exc), status=0) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ConnectionLostError(f"could not connect to {self.url}: {exc}") from exc
        finally:
            with self._lock:
                self._opening = None

    def _on_new_socket(self, sock: socket.socket) -> None:
        with self._lock:
            self._opening = sock
            interrupt = self._closed or self._restart_requested
        if interrupt:
            shutdown_socket(sock)

    def _error_body(self, response: requests.Response) -> bytes:
        with self._lock:
            self._reading = True
        try:
            return read_error_body(response)
        finally:
            with self._lock:
                self._reading = False
                if self._response is response:
                    self._response = None

    # -- open, in detail ----------------------------------------------------

    def _read(self, response: requests.Response) -> Iterator[list[ServerSentEvent]]:
        read1 = read1_of(response)
        feed = self._parser.feed
        while True:
            with self._lock:
                if self._closed or self._restart_requested:
                    return
                self._reading = True
            try:
                chunk = read1(self._chunk_size)
            except READ_ERRORS as exc:
                if self.closed or self._restart_requested:
                    return
                raise connection_lost(exc, self._timeout[1]) from exc
            finally:
                with self._lock:
                    self._reading = False
            if not chunk:
                return
            comments = self._parser.comments
            batch = feed(chunk)
            if self._parser.comments != comments:
                # Comments among the events: hand them out in wire order, the
                # events before a comment first, as a batch of their own.
                for part in self._split_at_comments(batch):
                    yield part
                    if self.closed:
                        return
            elif batch:
                yield cast("list[ServerSentEvent]", batch)
                if self.closed:
                    return
            if self._parser.failure is not None:
                raise self._parser.failure

    def _split_at_comments(self, parsed: list[Parsed]) -> Iterator[list[ServerSentEvent]]:
        events: list[ServerSentEvent] = []
        for item in parsed:
            if isinstance(item, ServerSentEvent):
                events.append(item)
                continue
            if events:
                yield events
                events = []
            self._emit(item)
        if events:
            yield events

    # -- helpers --------------------------------------------------------

    def _take_restart(self) -> bool:
        with self._lock:
            requested, self._restart_requested = self._restart_requested, False
            if requested and not self._closed:
                self._wake.clear()
            return requested

    def _emit(self, happening: Happening) -> None:
        if self._on_happening is None:
            return
        try:
            self._on_happening(happening)
        except Exception:
            logger.exception("on_happening callback raised on %r", type(happening).__name__)

    def _release_response(self, response: requests.Response) -> None:
        with self._lock:
            if self._response is response:
                self._response = None
        response.close()

    def _release(self) -> None:
        with self._lock:
            response, self._response = self._response, None
        if response is not None:
            response.close()
        self._transport.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<EventSource {self.method} {self.url} {state} last_event_id={self.last_event_id!r}>"
        )


class _Budget:
    """The retry budget of one stream: consecutive failures since the last
    healthy connection, and when the first of them happened."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.attempts = 0
        self._first_failure: Optional[float] = None

    def reset(self) -> None:
        self.attempts, self._first_failure = 0, None

    def next_delay(
        self, cause: BaseException, server_retry: Optional[float], retry_after: Optional[float]
    ) -> float:
        """Count one failure; the wait before the next attempt, or raise
        :class:`RetryBudgetExhaustedError` when the budget is spent."""
        policy = self.policy
        self.attempts += 1
        now = time.monotonic()
        if self._first_failure is None:
            self._first_failure = now
        elapsed = now - self._first_failure
        if policy.exhausted(self.attempts, elapsed):
            raise RetryBudgetExhaustedError(
                f"gave up after {self.attempts} failed attempt(s) over "
                f"{elapsed:.1f}s; last error: {cause}",
                last_error=cause,
                attempts=self.attempts,
            ) from cause
        delay = policy.delay(self.attempts, server_retry=server_retry, retry_after=retry_after)
        if policy.waits_past_budget(elapsed, delay):
            raise RetryBudgetExhaustedError(
                f"giving up: the next attempt would come {delay:.1f}s from now, past the "
                f"retry budget of {policy.max_elapsed:.0f}s; last error: {cause}",
                last_error=cause,
                attempts=self.attempts,
            ) from cause
        return delay


def _header_value(event_id: str) -> Optional[bytes]:
    """The Last-Event-ID header for an id: its UTF-8 bytes, as browsers send it.

    None for an id that no header can carry (one starting with white space):
    the stream then resumes through ``resume_param`` alone.
    """
    value = event_id.encode("utf-8")
    return None if value[:1].isspace() else value
