"""client.stream_events against the real reference server on 127.0.0.1."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentstream import (
    Client,
    CursorExpiredError,
    EventType,
    InsufficientScopeError,
    RetryPolicy,
    StreamOptions,
)
from agentstream.server import ALL_SCOPES, ReferenceServer
from agentstream.sse import Comment, Connected, Happening

from .scripted_server import Conn, ScriptedServer

FAST = RetryPolicy(initial_delay=0.01, max_delay=0.05)


def chunks(server: ReferenceServer, task_id: str, count: int) -> list[dict[str, Any]]:
    return [server.store.publish("message.chunk", f"c{n}", task_id) for n in range(count)]


def test_filters_by_type_and_task(agentstream_server: ReferenceServer) -> None:
    store = agentstream_server.store
    a = store.create_task("a", events_streaming=True)["id"]
    b = store.create_task("b", events_streaming=True)["id"]
    start = store.publish("reasoning.think", {"title": "t", "content": "c"}, a)
    store.publish("message.chunk", "from b", b)
    store.publish("reasoning.think", {"title": "t2", "content": "c"}, b)
    last = store.publish("message.chunk", "from a", a)
    client = Client(agentstream_server.url, agentstream_server.api_key, retry=FAST)
    options = StreamOptions(event_types=[EventType.Chunk], cursor=start["id"])
    with client.stream_events(options) as stream:
        assert [next(stream).data for _ in range(2)] == ["from b", "from a"]
    options = StreamOptions(task_id=a, event_types=["message.chunk", "reasoning.think"])
    with client.stream_events(options) as stream:
        assert [e.id for e in [next(stream), next(stream)]] == [start["id"], last["id"]]


def test_cursor_resume_receives_exactly_the_rest(agentstream_server: ReferenceServer) -> None:
    task_id = agentstream_server.store.create_task("t", events_streaming=True)["id"]
    published = chunks(agentstream_server, task_id, 10)
    client = Client(agentstream_server.url, agentstream_server.api_key, retry=FAST)
    options = StreamOptions(event_types=["message.chunk"], cursor=published[0]["id"])
    with client.stream_events(options) as stream:
        first = [next(stream) for _ in range(4)]
        cursor = stream.cursor
    assert cursor == first[-1].id
    resumed = client.stream_events(StreamOptions(event_types=["message.chunk"], cursor=cursor))
    with resumed:
        rest = [next(resumed) for _ in range(5)]
    assert [e.id for e in first + rest] == [p["id"] for p in published[1:]]


def test_task_scoped_stream_ends_after_task_finished(agentstream_client: Client) -> None:
    task = agentstream_client.create_task("run", events_streaming=True)
    stream = agentstream_client.stream_events(StreamOptions(task_id=task.id))
    events = list(stream)  # ends by itself: the server closes, then answers 204
    assert events[-1].type == EventType.TASK_FINISHED
    assert len({e.sequence for e in events}) == len(events)


def test_missing_scope_fails_before_any_event_without_retry() -> None:
    keys = {"reader-of-tasks": ["tasks:read"], "full": sorted(ALL_SCOPES)}
    with ReferenceServer(api_keys=keys) as server:
        connections: list[Happening] = []
        client = Client(server.url, "reader-of-tasks", retry=FAST)
        stream = client.stream_events(on_happening=connections.append)
        with pytest.raises(InsufficientScopeError) as info:
            next(stream)
    assert info.value.required_scope == "events:read"
    assert not any(isinstance(h, Connected) for h in connections)
    assert "reader-of-tasks" not in str(info.value)


def test_an_expired_cursor_is_410_never_a_silent_gap() -> None:
    with ReferenceServer(retention=5) as server:
        task_id = server.store.create_task("t", events_streaming=True)["id"]
        old = chunks(server, task_id, 20)[0]
        client = Client(server.url, server.api_key, retry=FAST)
        with pytest.raises(CursorExpiredError) as info:
            next(client.stream_events(StreamOptions(cursor=old["id"])))
    assert info.value.status == 410
    assert info.value.code == "cursor_expired"


def test_heartbeats_keep_a_quiet_stream_alive(agentstream_server: ReferenceServer) -> None:
    # heartbeat 1 s gives a read timeout of 3 s: 4 heartbeats prove the quiet
    # stream outlived it on the same connection.
    happenings: list[Happening] = []
    enough = threading.Event()

    def record(happening: Happening) -> None:
        happenings.append(happening)
        if sum(isinstance(h, Comment) and h.text == "heartbeat" for h in happenings) >= 4:
            enough.set()

    client = Client(agentstream_server.url, agentstream_server.api_key, retry=FAST)
    stream = client.stream_events(StreamOptions(heartbeat_seconds=1), on_happening=record)
    reader = threading.Thread(target=lambda: list(stream), daemon=True)
    reader.start()
    try:
        assert enough.wait(8)
    finally:
        stream.close()
        reader.join(5)
    assert sum(isinstance(h, Connected) for h in happenings) == 1


def test_a_dead_connection_is_detected_from_the_heartbeat(server: ScriptedServer) -> None:
    # A server that stops sending anything, not even heartbeats: dropped after
    # 2 * heartbeat + 1 seconds and resumed from the cursor.
    envelope = (
        b'id: evt_1\nevent: message.chunk\ndata: {"id":"evt_1","type":"message.chunk",'
        b'"sequence":1,"occurredAt":"2026-11-20T10:00:00.000Z","data":"x"}\n\n'
    )

    def stall(conn: Conn) -> None:
        conn.start()
        conn.send(envelope)
        conn.wait_closed_by_client(10)

    def resumed(conn: Conn) -> None:
        conn.start()
        conn.send(envelope.replace(b"evt_1", b"evt_2").replace(b'"sequence":1', b'"sequence":2'))
        conn.wait_closed_by_client(10)

    server.script("/task-events/stream", stall, resumed)
    client = Client(server.url(""), "k", retry=FAST)
    with client.stream_events(StreamOptions(heartbeat_seconds=1)) as stream:
        assert next(stream).id == "evt_1"
        assert next(stream).id == "evt_2"
    second = server.requests[1]
    assert second.headers["last-event-id"] == "evt_1"
    assert second.received_at - server.requests[0].received_at >= 3.0
