"""EventSource against a real HTTP server on 127.0.0.1 (tests/scripted_server.py).

Nothing here sleeps to wait for something: readers run on a thread and the
tests wait on queues and conditions, with a bound.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from typing import Any, Callable, Optional

import pytest
import requests

from agentstream._compat import URLLIB3_READ1 as _URLLIB3_READ1
from agentstream.errors import (
    AuthenticationError,
    BadRequestError,
    ConnectionLostError,
    ContentTypeError,
    CursorExpiredError,
    EventTooLargeError,
    InsufficientScopeError,
    NotFoundError,
    RedirectError,
    RetryBudgetExhaustedError,
    ServerError,
)
from agentstream.sse import (
    Comment,
    Connected,
    Disconnected,
    EventSource,
    Failed,
    Happening,
    Retrying,
    RetryPolicy,
    ServerSentEvent,
)

from .scripted_server import (
    Conn,
    FullBacklog,
    ScriptedServer,
    never_answers,
    slow_error_body,
    sse,
)

FAST = RetryPolicy(initial_delay=0.005, max_delay=0.02)


class Log:
    """Records happenings; tests wait for one with a bound."""

    def __init__(self) -> None:
        self.items: list[Happening] = []
        self._cond = threading.Condition()

    def __call__(self, happening: Happening) -> None:
        with self._cond:
            self.items.append(happening)
            self._cond.notify_all()

    def wait_for(self, kind: type, count: int = 1, timeout: float = 5.0) -> list[Any]:
        def found() -> list[Any]:
            return [h for h in self.items if isinstance(h, kind)]

        with self._cond:
            assert self._cond.wait_for(lambda: len(found()) >= count, timeout), self.items
            return found()

    def kinds(self) -> list[str]:
        return [type(h).__name__ for h in self.items]


class Reader:
    """Iterates an EventSource on a thread, timestamping each event."""

    def __init__(self, source: EventSource) -> None:
        self.source = source
        self.events: queue.Queue[tuple[float, ServerSentEvent]] = queue.Queue()
        self.error: Optional[BaseException] = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.source:
                self.events.put((time.monotonic(), event))
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def take(self, count: int, timeout: float = 5.0) -> list[ServerSentEvent]:
        return [self.events.get(timeout=timeout)[1] for _ in range(count)]

    def finish(self, timeout: float = 5.0) -> None:
        self.source.close()
        assert self.done.wait(timeout), "reader did not stop"
        self.thread.join(timeout)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        threading.Event().wait(0.001)


def source_for(server: ScriptedServer, path: str = "/events", **kwargs: Any) -> EventSource:
    kwargs.setdefault("retry", FAST)
    return EventSource(server.url(path), **kwargs)


def stream_then_hold(*events: bytes, framing: str = "chunked") -> Callable[[Conn], None]:
    def script(conn: Conn) -> None:
        conn.start(framing=framing)
        for event in events:
            conn.send(event)
        conn.wait_closed_by_client(10)

    return script


def stream_then_end(*events: bytes, framing: str = "chunked") -> Callable[[Conn], None]:
    def script(conn: Conn) -> None:
        conn.start(framing=framing)
        for event in events:
            conn.send(event)
        conn.end()

    return script


def error(status: int, code: str = "x", headers: Optional[dict[str, str]] = None, **details: Any):
    body = json.dumps({"error": {"code": code, "message": f"m{status}", "details": details}})

    def script(conn: Conn) -> None:
        conn.respond(status, body.encode(), headers)

    return script


# -- no held events -----------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked-split", "chunk-per-event", "close-delimited"])
def test_event_delivered_at_once_while_server_stays_silent(
    server: ScriptedServer, framing: str
) -> None:
    sent_at: list[float] = []
    silence_over = threading.Event()
    release = threading.Event()

    def script(conn: Conn) -> None:
        event = sse("small", id="1")
        # The send time is taken before the last write: the client may read the
        # event before this thread runs again.
        if framing == "chunked-split":
            conn.start(framing="chunked")
            conn.send(event[:5])
            sent_at.append(time.monotonic())
            conn.send(event[5:])
        elif framing == "chunk-per-event":
            conn.start(framing="chunked")
            sent_at.append(time.monotonic())
            conn.send(event)
        else:
            conn.start(framing="close")
            sent_at.append(time.monotonic())
            conn.send(event)
        conn.hold(release, timeout=2.0)  # 2 s of silence, cut short once asserted
        silence_over.set()
        conn.end()

    server.script("/events", script)
    reader = Reader(source_for(server))
    try:
        arrived, event = reader.events.get(timeout=2.5)
        assert event.data == "small"
        assert not silence_over.is_set(), "event was held until the server spoke again"
        assert arrived - sent_at[0] < 0.5
    finally:
        release.set()
        reader.finish()


# -- request shape ------------------------------------------------------------


def test_default_headers_and_caller_headers_untouched(server: ScriptedServer) -> None:
    server.script("/events", stream_then_hold(sse("a")))
    headers = {"Authorization": "Bearer secret", "X-Trace": "t1"}
    snapshot = dict(headers)
    reader = Reader(source_for(server, headers=headers))
    reader.take(1)
    reader.finish()
    request = server.requests[0]
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["cache-control"] == "no-cache"
    assert request.headers["authorization"] == "Bearer secret"
    assert request.headers["x-trace"] == "t1"
    assert "last-event-id" not in request.headers
    assert headers == snapshot


def test_method_and_body_resent_on_every_reconnect(server: ScriptedServer) -> None:
    server.script("/events", stream_then_end(sse("1", id="1")), stream_then_hold(sse("2", id="2")))
    reader = Reader(source_for(server, method="REPORT", json={"q": [1, 2]}))
    assert [e.data for e in reader.take(2)] == ["1", "2"]
    reader.finish()
    first, second = server.requests[:2]
    assert first.method == second.method == "REPORT"
    assert json.loads(first.body) == json.loads(second.body) == {"q": [1, 2]}
    assert second.headers["last-event-id"] == "1"


def test_initial_last_event_id_and_resume_param(server: ScriptedServer) -> None:
    server.script(
        "/events", stream_then_end(sse("43", id="43")), stream_then_hold(sse("44", id="44"))
    )
    reader = Reader(source_for(server, last_event_id="42", resume_param="cursor"))
    reader.take(2)
    reader.finish()
    first, second = server.requests[:2]
    assert (first.headers["last-event-id"], first.query["cursor"]) == ("42", "42")
    assert (second.headers["last-event-id"], second.query["cursor"]) == ("43", "43")


def test_empty_initial_last_event_id_sends_no_header(server: ScriptedServer) -> None:
    server.script("/events", stream_then_hold(sse("a")))
    reader = Reader(source_for(server, last_event_id="", resume_param="cursor"))
    reader.take(1)
    reader.finish()
    assert "last-event-id" not in server.requests[0].headers
    assert "cursor" not in server.requests[0].query


# -- drops and resume ---------------------------------------------------------


def _cut_mid_event(framing: str) -> Callable[[Conn], None]:
    def script(conn: Conn) -> None:
        conn.start(framing="close" if framing == "close-delimited" else "chunked")
        conn.send(sse("one", id="1") + sse("two", id="2"))
        if framing == "truncated-chunk":
            conn.send_raw(b"40\r\nid: 3\ndata: thr")  # promises 64 bytes, sends 15
        else:
            conn.send(b"id: 3\ndata: thr")
        conn.close()  # no terminating chunk, no blank line

    return script


@pytest.mark.parametrize("framing", ["chunked", "truncated-chunk", "close-delimited"])
def test_drop_mid_event_resumes_with_nothing_lost_or_repeated(
    server: ScriptedServer, framing: str
) -> None:
    def resume(conn: Conn) -> None:
        assert conn.request.headers["last-event-id"] == "2"
        conn.start()
        conn.send(sse("three", id="3") + sse("four", id="4"))
        conn.wait_closed_by_client(10)

    server.script("/events", _cut_mid_event(framing), resume)
    log = Log()
    reader = Reader(source_for(server, on_happening=log))
    assert [(e.id, e.data) for e in reader.take(4)] == [
        ("1", "one"),
        ("2", "two"),
        ("3", "three"),
        ("4", "four"),
    ]
    reader.finish()
    assert reader.events.empty()
    assert reader.error is None
    assert len(log.wait_for(Connected, 2)) == 2


def test_clean_end_of_stream_reconnects(server: ScriptedServer) -> None:
    server.script("/events", stream_then_end(sse("a", id="1")), stream_then_hold(sse("b", id="2")))
    log = Log()
    reader = Reader(source_for(server, on_happening=log))
    assert [e.data for e in reader.take(2)] == ["a", "b"]
    reader.finish()
    assert log.wait_for(Disconnected)[0].reason == "server closed the stream"


def test_read_timeout_drops_a_silent_connection_and_resumes(server: ScriptedServer) -> None:
    server.script("/events", stream_then_hold(sse("a", id="1")), stream_then_hold(sse("b", id="2")))
    log = Log()
    reader = Reader(source_for(server, read_timeout=0.3, on_happening=log))
    assert [e.data for e in reader.take(2)] == ["a", "b"]
    reader.finish()
    disconnected = log.wait_for(Disconnected)[0]
    assert "read timeout" in disconnected.reason
    assert isinstance(disconnected.error, ConnectionLostError)
    assert server.requests[1].headers["last-event-id"] == "1"


def test_comments_keep_a_quiet_connection_alive(server: ScriptedServer) -> None:
    def script(conn: Conn) -> None:
        conn.start()
        for _ in range(8):  # 0.8 s of comments only, every 0.1 s: the pace is the test
            conn.send(b": keep-alive\n\n")
            conn.hold(timeout=0.1)
        conn.send(sse("finally"))
        conn.wait_closed_by_client(10)

    server.script("/events", script)
    log = Log()
    reader = Reader(source_for(server, read_timeout=0.3, on_happening=log))
    assert reader.take(1)[0].data == "finally"
    reader.finish()
    assert len(server.requests) == 1
    assert len(log.wait_for(Comment, 8)) == 8
    assert log.wait_for(Comment)[0] == Comment("keep-alive")


# -- backoff and budget -------------------------------------------------------


def test_server_retry_field_sets_the_reconnection_delay(server: ScriptedServer) -> None:
    server.script(
        "/events", stream_then_end(b"retry: 20\n\n" + sse("a", id="1")), stream_then_hold(sse("b"))
    )
    log = Log()
    slow = RetryPolicy(initial_delay=30.0, max_delay=60.0)
    reader = Reader(source_for(server, retry=slow, on_happening=log))
    assert [e.data for e in reader.take(2)] == ["a", "b"]
    reader.finish()
    assert log.wait_for(Retrying)[0].delay <= 0.020


def test_a_retry_field_of_5000_digits_is_capped_by_max_delay(server: ScriptedServer) -> None:
    huge = b"retry: " + b"9" * 5000 + b"\n\n"
    server.script("/events", stream_then_end(huge + sse("a", id="1")), stream_then_hold(sse("b")))
    log = Log()
    reader = Reader(source_for(server, on_happening=log))
    assert [e.data for e in reader.take(2)] == ["a", "b"]
    reader.finish()
    assert reader.error is None
    assert log.wait_for(Retrying)[0].delay <= FAST.max_delay


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured(server: ScriptedServer, status: int) -> None:
    server.script(
        "/events", error(status, headers={"Retry-After": "1"}), stream_then_hold(sse("a"))
    )
    log = Log()
    reader = Reader(source_for(server, on_happening=log))
    assert reader.take(1, timeout=5)[0].data == "a"
    reader.finish()
    retrying = log.wait_for(Retrying)[0]
    assert retrying.delay >= 1.0
    first, second = server.requests[:2]
    assert second.received_at - first.received_at >= 0.95


def test_retry_budget_exhausted_carries_the_last_error(server: ScriptedServer) -> None:
    server.script("/events", error(500, "boom"))
    log = Log()
    source = source_for(server, retry=FAST.with_(max_attempts=2), on_happening=log)
    with pytest.raises(RetryBudgetExhaustedError) as info:
        list(source)
    assert isinstance(info.value.last_error, ServerError)
    assert info.value.last_error.code == "boom"
    assert len(server.requests) == 3  # the first try and two retries
    assert [type(h) for h in log.items if not isinstance(h, Disconnected)] == [
        Retrying,
        Retrying,
        Failed,
    ]
    assert source.closed


def test_budget_resets_after_a_healthy_connection(server: ScriptedServer) -> None:
    server.script(
        "/events",
        stream_then_end(sse("1", id="1")),
        error(503),
        stream_then_end(sse("2", id="2")),
        error(503),
        stream_then_end(sse("3", id="3")),
        lambda conn: conn.respond(204),
    )
    source = source_for(server, retry=FAST.with_(max_attempts=2))
    assert [e.data for e in source] == ["1", "2", "3"]  # without the reset: exhausted at conn 3


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    log = Log()
    source = EventSource(
        f"http://127.0.0.1:{port}/events", retry=FAST.with_(max_attempts=2), on_happening=log
    )
    with pytest.raises(RetryBudgetExhaustedError) as info:
        list(source)
    assert isinstance(info.value.last_error, ConnectionLostError)
    assert len(log.wait_for(Retrying, 2)) == 2


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=10.0, multiplier=2.0)
    assert [policy.delay(n, rand=lambda: 1.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.delay(3, rand=lambda: 0.25) == 1.0
    assert policy.delay(1, rand=lambda: 0.0, retry_after=3.0) == 3.0
    assert policy.delay(2, rand=lambda: 1.0, server_retry=0.5) == 1.0
    assert not policy.exhausted(100, 299.0)
    assert policy.exhausted(1, 300.0)
    assert RetryPolicy.never().exhausted(1, 0.0)
    assert not RetryPolicy.forever().exhausted(10**6, 10.0**6)
    assert policy.waits_past_budget(290.0, 10.5)  # the next attempt would come after 300 s
    assert not policy.waits_past_budget(290.0, 10.0)
    assert not RetryPolicy.forever().waits_past_budget(10.0**6, 10.0**6)
    with pytest.raises(ValueError, match="multiplier"):
        RetryPolicy(multiplier=0.5)


# -- statuses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "invalid_cursor", BadRequestError),
        (401, "unauthenticated", AuthenticationError),
        (403, "insufficient_scope", InsufficientScopeError),
        (404, "not_found", NotFoundError),
        (410, "cursor_expired", CursorExpiredError),
    ],
)
def test_client_errors_raise_at_once_without_retry(
    server: ScriptedServer, status: int, code: str, expected: type
) -> None:
    server.script("/events", error(status, code, requiredScope="events:read"))
    log = Log()
    source = source_for(server, on_happening=log)
    with pytest.raises(expected) as info:
        next(source)
    assert info.value.status == status
    assert info.value.code == code
    assert len(server.requests) == 1
    assert log.wait_for(Failed) != []
    assert not any(isinstance(h, Retrying) for h in log.items)


def test_no_content_stops_without_reconnecting(server: ScriptedServer) -> None:
    server.script("/events", lambda conn: conn.respond(204))
    assert list(source_for(server)) == []
    assert len(server.requests) == 1


def test_wrong_content_type_is_a_clear_error(server: ScriptedServer) -> None:
    server.script(
        "/events", lambda conn: conn.respond(200, b"<html>login</html>", content_type="text/html")
    )
    with pytest.raises(ContentTypeError, match="text/html"):
        next(source_for(server))
    assert len(server.requests) == 1


def test_event_larger_than_the_limit_stops_the_stream(server: ScriptedServer) -> None:
    server.script("/events", stream_then_hold(sse("x" * 500)))
    source = source_for(server, max_event_size=100)
    with pytest.raises(EventTooLargeError):
        next(source)
    assert len(server.requests) == 1


# -- redirects ----------------------------------------------------------------


def redirect(status: int, location: Optional[str]) -> Callable[[Conn], None]:
    def script(conn: Conn) -> None:
        headers = {"Location": location} if location else {}
        conn.respond(status, b"", headers, content_type="")

    return script


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_followed(server: ScriptedServer, status: int) -> None:
    server.script("/old", redirect(status, "/events"))
    server.script("/events", stream_then_hold(sse("moved")))
    reader = Reader(source_for(server, "/old", headers={"Authorization": "Bearer k"}))
    assert reader.take(1)[0].data == "moved"
    reader.finish()
    assert server.requests[1].path == "/events"
    assert server.requests[1].headers["authorization"] == "Bearer k"  # same host


def test_post_body_kept_across_a_307(server: ScriptedServer) -> None:
    server.script("/old", redirect(307, "/events"))
    server.script("/events", stream_then_hold(sse("ok")))
    reader = Reader(source_for(server, "/old", method="POST", body=b"payload"))
    reader.take(1)
    reader.finish()
    assert (server.requests[1].method, server.requests[1].body) == ("POST", b"payload")


def test_authorization_not_sent_to_another_host(server: ScriptedServer) -> None:
    server.script("/old", redirect(302, server.url("/events", host="localhost")))
    server.script("/events", stream_then_hold(sse("elsewhere")))
    reader = Reader(source_for(server, "/old", headers={"Authorization": "Bearer secret"}))
    assert reader.take(1)[0].data == "elsewhere"
    reader.finish()
    assert server.requests[0].headers["authorization"] == "Bearer secret"
    assert "authorization" not in server.requests[1].headers


def test_redirect_without_location_is_an_error(server: ScriptedServer) -> None:
    server.script("/events", redirect(302, None))
    with pytest.raises(RedirectError, match="without a Location"):
        next(source_for(server))


# -- control ------------------------------------------------------------------


@pytest.mark.usefixtures("no_thread_leak")
def test_close_from_another_thread_unblocks_a_pending_read(server: ScriptedServer) -> None:
    client_closed = threading.Event()

    def script(conn: Conn) -> None:
        conn.start()
        conn.send(sse("a"))
        if conn.wait_closed_by_client(10):
            client_closed.set()

    server.script("/events", script)
    reader = Reader(source_for(server))
    reader.take(1)
    wait_until(lambda: reader.source._reading)  # blocked in recv(): the state under test
    started = time.monotonic()
    reader.source.close()
    assert reader.done.wait(1.0)
    assert time.monotonic() - started < 0.5
    assert reader.error is None
    assert client_closed.wait(2.0), "the connection was left open"
    reader.thread.join(1)


@pytest.mark.usefixtures("no_thread_leak")
def test_close_interrupts_a_backoff_wait(server: ScriptedServer) -> None:
    server.script("/events", error(503))
    log = Log()
    reader = Reader(
        source_for(server, retry=RetryPolicy(initial_delay=30, jitter=False), on_happening=log)
    )
    assert log.wait_for(Retrying)[0].delay == 30
    started = time.monotonic()
    reader.source.close()
    assert reader.done.wait(1.0)
    assert time.monotonic() - started < 0.5
    assert len(server.requests) == 1
    reader.thread.join(1)


def test_close_before_iterating_and_from_a_context_manager(server: ScriptedServer) -> None:
    server.script("/events", stream_then_hold(sse("a")))
    with source_for(server) as source:
        assert next(source).data == "a"
    assert source.closed
    with pytest.raises(StopIteration):
        next(source)
    unused = source_for(server)
    unused.close()
    assert list(unused) == []


def test_restart_reconnects_now_and_keeps_the_cursor(server: ScriptedServer) -> None:
    server.script("/events", stream_then_hold(sse("a", id="1")), stream_then_hold(sse("b", id="2")))
    log = Log()
    slow = RetryPolicy(initial_delay=30, jitter=False)
    reader = Reader(source_for(server, retry=slow, on_happening=log))
    reader.take(1)
    reader.source.restart()
    assert reader.take(1)[0].data == "b"
    reader.finish()
    assert server.requests[1].headers["last-event-id"] == "1"
    assert log.wait_for(Disconnected)[0].reason == "restart requested"
    assert not any(isinstance(h, Retrying) for h in log.items)


def test_restart_cuts_a_backoff_wait_short(server: ScriptedServer) -> None:
    server.script("/events", error(503), stream_then_hold(sse("after restart")))
    log = Log()
    reader = Reader(
        source_for(server, retry=RetryPolicy(initial_delay=30, jitter=False), on_happening=log)
    )
    log.wait_for(Retrying)
    reader.source.restart()
    assert reader.take(1, timeout=2)[0].data == "after restart"
    reader.finish()


def test_happenings_are_reported_apart_from_events(server: ScriptedServer) -> None:
    server.script(
        "/events",
        stream_then_end(b": hello\n\n" + sse("a", id="1")),
        stream_then_hold(sse("b", id="2")),
    )
    log = Log()
    reader = Reader(source_for(server, on_happening=log))
    assert [e.data for e in reader.take(2)] == ["a", "b"]
    reader.finish()
    assert log.kinds()[:5] == ["Connected", "Comment", "Disconnected", "Retrying", "Connected"]
    assert log.items[4] == Connected(url=server.url(), last_event_id="1")


def test_a_failing_happening_callback_does_not_break_the_stream(server: ScriptedServer) -> None:
    def explode(happening: Happening) -> None:
        raise RuntimeError("observer bug")

    server.script("/events", stream_then_hold(sse("a")))
    with source_for(server, on_happening=explode) as source:
        assert next(source).data == "a"


def test_body_and_json_are_exclusive() -> None:
    with pytest.raises(ValueError, match="either body or json"):
        EventSource("http://127.0.0.1:1/", body=b"x", json={})


def test_identity_is_asked_for_and_a_gzipped_stream_still_works(server: ScriptedServer) -> None:
    import zlib

    def gzipped(conn: Conn) -> None:
        conn.start(headers={"Content-Encoding": "gzip"})
        compressor = zlib.compressobj(wbits=31)
        for n in (1, 2):
            conn.send(
                compressor.compress(sse(f"zipped {n}", id=str(n)))
                + compressor.flush(zlib.Z_SYNC_FLUSH)
            )
        conn.wait_closed_by_client(10)

    server.script("/events", gzipped)
    reader = Reader(source_for(server))
    if _URLLIB3_READ1:
        assert [e.data for e in reader.take(2)] == ["zipped 1", "zipped 2"]
        reader.finish()
    else:  # urllib3 < 2.3 cannot decode incrementally: a clear error instead
        assert reader.done.wait(5)
        assert isinstance(reader.error, ContentTypeError)
        assert "urllib3 2.3" in str(reader.error)
    assert server.requests[0].headers["accept-encoding"] == "identity"


def test_events_before_an_oversized_one_reach_the_caller(server: ScriptedServer) -> None:
    server.script("/events", stream_then_hold(sse("fine", id="1") + sse("x" * 500, id="2")))
    source = source_for(server, max_event_size=100)
    assert next(source).data == "fine"
    with pytest.raises(EventTooLargeError):
        next(source)


@pytest.mark.parametrize(("event_id", "header"), [("€1", "€1".encode()), (" spaced", None)])
def test_any_event_id_can_be_resumed_from(
    server: ScriptedServer, event_id: str, header: Optional[bytes]
) -> None:
    server.script(
        "/events",
        stream_then_end(f"id: {event_id}\ndata: a\n\n".encode()),
        stream_then_hold(sse("b", id="2")),
    )
    reader = Reader(source_for(server, resume_param="cursor"))
    assert [e.data for e in reader.take(2)] == ["a", "b"]
    reader.finish()
    second = server.requests[1]
    assert second.query["cursor"] == event_id
    sent = second.headers.get("last-event-id")
    assert (sent.encode("latin-1") if sent is not None else None) == header


@pytest.mark.usefixtures("no_thread_leak")
def test_close_interrupts_a_wait_for_the_response_headers(server: ScriptedServer) -> None:
    server.script("/events", never_answers)
    log = Log()
    reader = Reader(source_for(server, read_timeout=30, on_happening=log))
    server.wait_for_requests(1)
    started = time.monotonic()
    reader.source.close()
    assert reader.done.wait(1.0)
    assert time.monotonic() - started < 0.5
    assert reader.error is None
    assert not any(isinstance(h, (Retrying, Disconnected)) for h in log.items)
    reader.thread.join(1)


def test_restart_interrupts_a_wait_for_the_response_headers(server: ScriptedServer) -> None:
    server.script("/events", never_answers, stream_then_hold(sse("second try")))
    reader = Reader(source_for(server, read_timeout=30))
    server.wait_for_requests(1)
    reader.source.restart()
    assert reader.take(1, timeout=2)[0].data == "second try"
    reader.finish()


def test_a_retry_after_beyond_the_budget_gives_up_at_once(server: ScriptedServer) -> None:
    server.script("/events", error(503, headers={"Retry-After": "86400"}))
    source = source_for(server, retry=RetryPolicy(max_elapsed=60))
    started = time.monotonic()
    with pytest.raises(RetryBudgetExhaustedError, match="past the retry budget"):
        next(source)
    assert time.monotonic() - started < 2
    assert len(server.requests) == 1


def test_a_zero_retry_from_the_server_still_backs_off() -> None:
    policy = RetryPolicy(max_delay=10)
    delays = [policy.delay(n, server_retry=0.0, rand=lambda: 1.0) for n in (1, 5, 11)]
    assert delays == [0.001, 0.016, 1.024]


# -- wire order of events and happenings --------------------------------------

ORDER_BYTES = sse("a", id="1") + b": between\n\n" + sse("b", id="2") + b": last\n\n" + sse("c")


def test_comments_reach_the_caller_in_wire_order_when_iterating(server: ScriptedServer) -> None:
    server.script("/events", stream_then_hold(ORDER_BYTES))  # one read holds all of it
    seen: list[str] = []

    def happening(h: Happening) -> None:
        if isinstance(h, Comment):
            seen.append(f":{h.text}")

    with source_for(server, on_happening=happening) as source:
        for event in source:
            seen.append(event.data)
            if event.data == "c":
                break
    assert seen == ["a", ":between", "b", ":last", "c"]


def test_comments_reach_the_caller_in_wire_order_in_batches(server: ScriptedServer) -> None:
    server.script("/events", stream_then_hold(ORDER_BYTES))
    seen: list[object] = []

    def happening(h: Happening) -> None:
        if isinstance(h, Comment):
            seen.append(f":{h.text}")

    with source_for(server, on_happening=happening) as source:
        for batch in source.batches():
            seen.append([event.data for event in batch])
            if batch[-1].data == "c":
                break
    assert seen == [["a"], ":between", ["b"], ":last", ["c"]]


# -- close() is prompt in every state, with any session -----------------------

SESSIONS = {
    "own session": lambda: None,
    "caller's session": requests.Session,
}


def close_is_prompt(source: EventSource, in_state: Callable[[], bool]) -> None:
    """Start reading, wait until ``in_state()``, close, and require the reader
    to stop within one second (every timeout of the source is far longer)."""
    reader = Reader(source)
    wait_until(in_state)
    started = time.monotonic()
    source.close()
    assert reader.done.wait(1.0), "close() did not interrupt the reader"
    assert time.monotonic() - started < 1.0
    assert reader.error is None, reader.error
    reader.thread.join(1)


@pytest.mark.parametrize("make_session", SESSIONS.values(), ids=SESSIONS.keys())
def test_close_interrupts_a_connect(make_session: Callable[[], Any]) -> None:
    backlog = FullBacklog()
    try:
        source = EventSource(
            backlog.url(), session=make_session(), connect_timeout=30, read_timeout=60
        )
        close_is_prompt(source, lambda: source._opening is not None)
    finally:
        backlog.close()


@pytest.mark.parametrize("make_session", SESSIONS.values(), ids=SESSIONS.keys())
def test_close_interrupts_the_wait_for_response_headers(
    server: ScriptedServer, make_session: Callable[[], Any]
) -> None:
    server.script("/events", never_answers)
    source = source_for(server, session=make_session(), connect_timeout=30, read_timeout=60)
    close_is_prompt(source, lambda: len(server.requests) >= 1)


@pytest.mark.parametrize("make_session", SESSIONS.values(), ids=SESSIONS.keys())
@pytest.mark.parametrize("status", [500, 404, 200])
def test_close_interrupts_the_read_of_a_slow_error_body(
    server: ScriptedServer, make_session: Callable[[], Any], status: int
) -> None:
    sent = threading.Event()
    server.script("/events", slow_error_body(status, sent))  # 200: not an event stream
    source = source_for(server, session=make_session(), connect_timeout=30, read_timeout=60)
    close_is_prompt(source, sent.is_set)


@pytest.mark.parametrize("make_session", SESSIONS.values(), ids=SESSIONS.keys())
def test_close_interrupts_a_read(server: ScriptedServer, make_session: Callable[[], Any]) -> None:
    server.script("/events", stream_then_hold(sse("a")))
    got = threading.Event()
    source = source_for(
        server,
        session=make_session(),
        read_timeout=60,
        on_happening=lambda h: isinstance(h, Connected) and got.set(),
    )
    close_is_prompt(source, got.is_set)


def test_a_callers_session_is_used_with_its_settings_and_left_unchanged(
    server: ScriptedServer,
) -> None:
    server.script("/events", stream_then_hold(sse("a")))
    session = requests.Session()
    session.headers["X-From-Session"] = "yes"
    adapters_before = dict(session.adapters)
    with source_for(server, session=session) as source:
        assert next(source).data == "a"
    assert server.requests[0].headers["x-from-session"] == "yes"
    assert session.adapters == adapters_before
    # The caller's session still works: the stream did not close it.
    server.script("/plain", lambda conn: conn.respond(200, b"{}"))
    assert session.get(server.url("/plain"), timeout=5).status_code == 200
