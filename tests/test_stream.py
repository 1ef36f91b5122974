"""Client.stream_events and TaskEventStream: options, resume, de-duplication, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

import agentstream.stream
from agentstream import (
    AgentStreamError,
    Client,
    ConfigurationError,
    EventType,
    InsufficientScopeError,
    InvalidEventError,
    NotFoundError,
    Registry,
    RetryPolicy,
    StreamOptions,
    TaskEvent,
    TaskEventType,
)
from agentstream.sse import Comment
from agentstream.stream import DEFAULT_STREAM_READ_TIMEOUT, read_timeout_for

from .scripted_server import Conn, ScriptedServer

KEY = "sk_test_do_not_print_me"
FAST = RetryPolicy(initial_delay=0.005, max_delay=0.02)


def envelope(sequence: int, type: str = "message.chunk", data: Any = "hi") -> dict[str, Any]:
    return {
        "id": f"evt_{sequence}",
        "type": type,
        "sequence": sequence,
        "occurredAt": "2026-11-20T10:00:00.123Z",
        "taskId": "task_1",
        "organizationId": "org_local",
        "taskVersion": sequence,
        "traceId": None,
        "data": data,
    }


def frame(env: dict[str, Any]) -> bytes:
    return f"id: {env['id']}\nevent: {env['type']}\ndata: {json.dumps(env)}\n\n".encode()


def client_for(server: ScriptedServer) -> Client:
    return Client(server.url(""), KEY, retry=FAST)


def stream_and_hold(*frames: bytes, end: bool = False):
    def script(conn: Conn) -> None:
        conn.start()
        for f in frames:
            conn.send(f)
        if end:
            conn.end()
        else:
            conn.wait_closed_by_client(10)

    return script


# -- options ----------------------------------------------------------------------


@pytest.mark.parametrize("heartbeat", [0, 301, -1, 1.5, True, "30"])
def test_heartbeat_outside_1_to_300_is_a_value_error(heartbeat: Any) -> None:
    with pytest.raises(ValueError, match="heartbeat_seconds"):
        StreamOptions(heartbeat_seconds=heartbeat)


def test_unknown_event_type_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"unknown event type 'task\.exploded'"):
        StreamOptions(event_types=["task.shipped", "task.exploded"])
    with pytest.raises(ValueError, match="list of event types"):
        StreamOptions(event_types="task.shipped")


def test_options_accept_wire_strings_and_every_alias() -> None:
    options = StreamOptions(
        event_types=[TaskEventType.TASK_SHIPPED.value, EventType.Chunk, "auth.required"],
        task_id="task_9",
        heartbeat_seconds=30,
    )
    assert options.query_params() == {
        "eventTypes": "task.shipped,message.chunk,auth.required",
        "taskId": "task_9",
        "heartbeatSeconds": "30",
    }
    assert StreamOptions().query_params() == {}


def test_read_timeout_follows_the_heartbeat() -> None:
    assert read_timeout_for(StreamOptions(heartbeat_seconds=1)) == 3.0
    assert read_timeout_for(StreamOptions(heartbeat_seconds=30)) == 61.0
    assert read_timeout_for(StreamOptions()) == DEFAULT_STREAM_READ_TIMEOUT


# -- client configuration -----------------------------------------------------------


def test_missing_key_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSTREAM_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="AGENTSTREAM_API_KEY"):
        Client()


def test_environment_fallback_and_hidden_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTREAM_BASE_URL", "http://127.0.0.1:9999/")
    monkeypatch.setenv("AGENTSTREAM_API_KEY", KEY)
    client = Client()
    assert client.base_url == "http://127.0.0.1:9999"
    assert KEY not in repr(client)
    with pytest.raises(ConfigurationError, match="http"):
        Client("127.0.0.1:8787", KEY)


# -- streaming ------------------------------------------------------------------------


def test_request_carries_options_key_and_resumes_with_the_cursor(server: ScriptedServer) -> None:
    server.script(
        "/task-events/stream",
        stream_and_hold(frame(envelope(1)), frame(envelope(2)), end=True),
        stream_and_hold(frame(envelope(3))),
    )
    options = StreamOptions(event_types=["message.chunk"], heartbeat_seconds=5, cursor="evt_0")
    with client_for(server).stream_events(options) as stream:
        assert [next(stream).sequence for _ in range(3)] == [1, 2, 3]
        assert stream.cursor == "evt_3"
    first, second = server.requests[:2]
    assert first.query == {
        "eventTypes": "message.chunk",
        "heartbeatSeconds": "5",
        "cursor": "evt_0",
    }
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.headers["last-event-id"] == "evt_0"
    assert (second.query["cursor"], second.headers["last-event-id"]) == ("evt_2", "evt_2")


def test_events_already_delivered_are_not_delivered_again(server: ScriptedServer) -> None:
    # A server that replays from an older point after a reconnect: the stream
    # drops what it has already delivered, by sequence.
    server.script(
        "/task-events/stream",
        stream_and_hold(frame(envelope(1)), frame(envelope(2)), end=True),
        stream_and_hold(frame(envelope(1)), frame(envelope(2)), frame(envelope(3))),
    )
    with client_for(server).stream_events() as stream:
        assert [next(stream).id for _ in range(3)] == ["evt_1", "evt_2", "evt_3"]


def restarted(sequence: int) -> dict[str, Any]:
    """An event of a server whose sequences started again (its database was reset)."""
    return dict(envelope(sequence), id=f"evt_after_reset_{sequence}")


@pytest.mark.parametrize("use_batches", [False, True])
def test_a_server_whose_sequences_restart_is_a_loud_reset_not_silent_loss(
    server: ScriptedServer, use_batches: bool, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(
        "/task-events/stream",
        stream_and_hold(frame(envelope(1)), frame(envelope(2)), frame(envelope(3)), end=True),
        # After the reconnect: a replayed duplicate, then a restarted sequence.
        stream_and_hold(frame(envelope(3)), frame(restarted(1)), frame(restarted(2))),
    )
    resets: list[tuple[str, int]] = []
    with client_for(server).stream_events() as stream:
        stream.on_sequence_reset = lambda event, previous: resets.append((event.id, previous))
        if use_batches:
            ids = []
            for batch in stream.batches():
                ids.extend(event.id for event in batch)
                if len(ids) >= 5:
                    break
        else:
            ids = [next(stream).id for _ in range(5)]
        assert stream.sequence_resets == 1
    assert ids == ["evt_1", "evt_2", "evt_3", "evt_after_reset_1", "evt_after_reset_2"]
    assert resets == [("evt_after_reset_1", 3)]
    [warning] = [r for r in caplog.records if r.levelname == "WARNING" and "reset" in r.message]
    assert "evt_after_reset_1" in warning.message
    assert "3" in warning.message


def test_unparseable_event_is_reported_and_the_stream_goes_on(server: ScriptedServer) -> None:
    reported: list[InvalidEventError] = []
    server.script(
        "/task-events/stream",
        stream_and_hold(
            b"id: evt_x\ndata: {not json\n\n",
            b'id: evt_y\ndata: {"type": "task.shipped"}\n\n',
            frame(envelope(5)),
        ),
    )
    with client_for(server).stream_events(on_invalid=reported.append) as stream:
        event = next(stream)
    assert event.sequence == 5
    assert [type(e) for e in reported] == [InvalidEventError, InvalidEventError]
    assert reported[0].raw == "{not json"
    assert "'id'" in str(reported[1])


def test_an_event_nested_too_deeply_is_reported_and_the_stream_goes_on(
    server: ScriptedServer,
) -> None:
    reported: list[InvalidEventError] = []
    server.script(
        "/task-events/stream",
        stream_and_hold(
            frame(envelope(1)), b"id: deep\ndata: " + b"[" * 100_000 + b"\n\n", frame(envelope(2))
        ),
    )
    with client_for(server).stream_events(on_invalid=reported.append) as stream:
        assert [next(stream).id for _ in range(2)] == ["evt_1", "evt_2"]
    assert [str(e) for e in reported] == ["event data is not valid JSON: nested too deeply"]


def test_an_unexpected_error_while_parsing_is_reported_and_the_stream_goes_on(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Iteration runs in one generator: an exception escaping it would end the
    # stream for good, so a parsing bug must be reported like invalid input.
    real_parse_event = agentstream.stream.parse_event

    def parse_event(data: str) -> TaskEvent:
        if '"sequence": 2' in data:
            raise RuntimeError("a bug")
        return real_parse_event(data)

    monkeypatch.setattr(agentstream.stream, "parse_event", parse_event)
    reported: list[InvalidEventError] = []
    unknown = envelope(2, type="task.someday")  # not typed: takes the slow path
    server.script(
        "/task-events/stream",
        stream_and_hold(frame(envelope(1)), frame(unknown), frame(envelope(3))),
    )
    with client_for(server).stream_events(on_invalid=reported.append) as stream:
        assert [next(stream).id for _ in range(2)] == ["evt_1", "evt_3"]
        assert not stream.closed
    assert [str(e) for e in reported] == ["event could not be parsed: RuntimeError: a bug"]
    assert isinstance(reported[0].__cause__, RuntimeError)


def test_unknown_types_and_drifted_payloads_pass_through(server: ScriptedServer) -> None:
    server.script(
        "/task-events/stream",
        stream_and_hold(
            frame(envelope(1, "task.teleported", {"to": "mars"})),
            frame(envelope(2, "tool_call.completed", {"toolName": 7})),
        ),
    )
    with client_for(server).stream_events() as stream:
        unknown, drifted = next(stream), next(stream)
    assert (unknown.type, unknown.data) == ("task.teleported", {"to": "mars"})
    assert drifted.type == EventType.TOOL_CALL_COMPLETED
    assert drifted.data == {"toolName": 7}
    assert drifted.validation_error is not None
    assert drifted.task_id == "task_1"


def test_insufficient_scope_before_any_event_without_retry(server: ScriptedServer) -> None:
    body = {
        "error": {
            "code": "insufficient_scope",
            "message": "needs events:read",
            "details": {"requiredScope": "events:read"},
        }
    }
    server.script("/task-events/stream", lambda conn: conn.respond(403, json.dumps(body).encode()))
    stream = client_for(server).stream_events()
    with pytest.raises(InsufficientScopeError) as info:
        next(stream)
    assert info.value.required_scope == "events:read"
    assert len(server.requests) == 1
    assert KEY not in f"{info.value} {info.value!r} {info.value.headers}"


def test_invalid_options_fail_before_any_request(server: ScriptedServer) -> None:
    client = client_for(server)
    with pytest.raises(ValueError, match="heartbeat"):
        client.stream_events(StreamOptions(heartbeat_seconds=0))
    assert server.requests == []


def test_api_call_errors_are_typed(server: ScriptedServer) -> None:
    server.script(
        "/tasks/nope",
        lambda conn: conn.respond(404, b'{"error": {"code": "not_found", "message": "no task"}}'),
    )
    with pytest.raises(NotFoundError, match="no task"):
        client_for(server).request("GET", "/tasks/nope")


def _echo_key(status: int, content_type: str = "application/json"):
    def script(conn: Conn) -> None:
        header = conn.request.headers.get("authorization", "")
        if content_type == "application/json":
            body = json.dumps(
                {
                    "error": {
                        "code": "x",
                        "message": f"key {header} rejected",
                        "details": {"got": header},
                    }
                }
            ).encode()
        else:
            body = f"<html>you sent {header}</html>".encode()
        conn.respond(status, body, content_type=content_type)

    return script


def test_a_server_echoing_the_key_does_not_put_it_in_errors(server: ScriptedServer) -> None:
    server.script("/task-events/stream", _echo_key(401))
    server.script("/tasks/t1", _echo_key(403))
    client = client_for(server)
    texts = []
    with pytest.raises(AgentStreamError) as stream_error:
        next(client.stream_events())
    texts.append(f"{stream_error.value} {stream_error.value!r} {stream_error.value.details}")
    with pytest.raises(AgentStreamError) as api_error:
        client.request("GET", "/tasks/t1")
    texts.append(f"{api_error.value} {api_error.value.details}")
    listener = client.listen(registry=Registry())
    with pytest.raises(SystemExit) as exit_info:
        listener.run_forever()
    texts.append(str(exit_info.value))
    assert all("<redacted>" in text for text in texts), texts
    assert not any(KEY in text for text in texts), texts


def test_a_non_sse_page_echoing_the_key_is_redacted(server: ScriptedServer) -> None:
    server.script("/task-events/stream", _echo_key(200, content_type="text/html"))
    with pytest.raises(AgentStreamError) as info:
        next(client_for(server).stream_events())
    assert KEY not in str(info.value.details)
    assert "<redacted>" in str(info.value.details)


def test_credentials_in_the_base_url_are_refused_without_repeating_them() -> None:
    with pytest.raises(ConfigurationError) as info:
        Client("http://user:hunter22@127.0.0.1:8787", KEY)
    assert "hunter22" not in str(info.value)


def test_heartbeats_and_typed_events_arrive_in_wire_order(server: ScriptedServer) -> None:
    wire = frame(envelope(1)) + b": tick\n\n" + frame(envelope(2)) + frame(envelope(3))
    server.script("/task-events/stream", stream_and_hold(wire + b": tock\n\n" + frame(envelope(4))))
    for use_batches in (False, True):
        seen: list[object] = []

        def happening(h: Any, seen: list[object] = seen) -> None:
            if isinstance(h, Comment):
                seen.append(h.text)

        with client_for(server).stream_events(on_happening=happening) as stream:
            if use_batches:
                for batch in stream.batches():
                    seen.append([event.sequence for event in batch])
                    if batch[-1].sequence == 4:
                        break
            else:
                for event in stream:
                    seen.append(event.sequence)
                    if event.sequence == 4:
                        break
        expected: list[object] = [[1], "tick", [2, 3], "tock", [4]]
        if not use_batches:
            expected = [1, "tick", 2, 3, "tock", 4]
        assert seen == expected
