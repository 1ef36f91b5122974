"""The reference server's SSE stream: framing, filters, cursors, retention, heartbeats, ends."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agentstream.server import ReferenceServer

from .server_fixtures import Api, ServerFactory, error_of, wait_until


@pytest.fixture
def srv(servers: ServerFactory) -> ReferenceServer:
    return servers.start()


@pytest.fixture
def api(servers: ServerFactory, srv: ReferenceServer) -> Api:
    return servers.api(srv)


def publish_many(
    srv: ReferenceServer, count: int, type_: str = "message.chunk"
) -> list[dict[str, Any]]:
    return [srv.store.publish(type_, f"event {i}") for i in range(count)]


# ---------------------------------------------------------------- framing and liveness


def test_headers_frame_format_and_live_delivery(api: Api, srv: ReferenceServer) -> None:
    with api.stream(timeout=3) as reader:
        headers = reader.response.headers
        assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert headers["Cache-Control"] == "no-cache"
        assert headers["X-Accel-Buffering"] == "no"
        for i in range(3):
            # one event, read while the connection stays open: it must arrive on its own
            env = api.publish("task.shipped", {"n": i}, traceId=f"t{i}")
            frame = reader.next_event()
            assert frame.envelope == env
            block = reader.raw_blocks[-1].decode()
            lines = block.split("\n")
            assert lines[0] == f"id: {env['id']}"
            assert lines[1] == "event: task.shipped"
            assert lines[2] == "data: " + json.dumps(env, separators=(",", ":"))
            assert len(lines) == 3
        assert reader.response.raw is not None
        assert not reader.response.raw.closed


def test_unscoped_stream_without_cursor_starts_at_the_live_end(
    api: Api, srv: ReferenceServer
) -> None:
    publish_many(srv, 5)
    with api.stream() as reader:
        fresh = srv.store.publish("reasoning.think", {"title": "t", "content": "c"})
        frame = reader.next_event()
    assert frame.envelope["id"] == fresh["id"]


# ---------------------------------------------------------------- filters


def test_event_types_filter(api: Api, srv: ReferenceServer) -> None:
    start = srv.store.publish("task.created", {})
    kinds = ["message.chunk", "task.shipped", "reasoning.think", "auth.required"] * 5
    published = [srv.store.publish(k, {}) for k in kinds]
    wanted = {"task.shipped", "auth.required"}
    expected = [e["id"] for e in published if e["type"] in wanted]
    with api.stream(cursor=start["id"], eventTypes="task.shipped, auth.required") as reader:
        got = [f.envelope["id"] for f in reader.events(len(expected))]
        marker = srv.store.publish("auth.required", {"last": True})
        assert reader.next_event().envelope["id"] == marker["id"]
    assert got == expected
    # repeated parameters work too
    with api.stream(cursor=start["id"], eventTypes=["task.shipped", "auth.required"]) as reader:
        assert [f.envelope["id"] for f in reader.events(len(expected))] == expected


def test_task_id_filter_starts_at_the_tasks_first_event(api: Api, srv: ReferenceServer) -> None:
    srv.store.publish("message.chunk", "before")
    one = srv.store.create_task("one")
    two = srv.store.create_task("two")
    mine = []
    for i in range(5):
        mine.append(srv.store.publish("message.chunk", f"one {i}", one["id"]))
        srv.store.publish("message.chunk", f"two {i}", two["id"])
        srv.store.publish("message.chunk", "global")
    with api.stream(taskId=one["id"]) as reader:
        first = reader.next_event()
        assert first.event == "task.created"
        assert first.envelope["data"]["id"] == one["id"]
        got = [f.envelope["id"] for f in reader.events(5)]
        assert got == [e["id"] for e in mine]
        later = srv.store.publish("message.chunk", "live", one["id"])
        srv.store.publish("message.chunk", "not mine", two["id"])
        assert reader.next_event().envelope["id"] == later["id"]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"eventTypes": "task.shipped,task.nope"}, 400, "invalid_event_type"),
        ({"eventTypes": "TASK_SHIPPED"}, 400, "invalid_event_type"),
        ({"heartbeatSeconds": "0"}, 400, "invalid_parameter"),
        ({"heartbeatSeconds": "0.5"}, 400, "invalid_parameter"),
        ({"heartbeatSeconds": "301"}, 400, "invalid_parameter"),
        ({"heartbeatSeconds": "-5"}, 400, "invalid_parameter"),
        ({"heartbeatSeconds": "abc"}, 400, "invalid_parameter"),
        ({"heartbeatSeconds": "nan"}, 400, "invalid_parameter"),
        ({"heartbeatSeconds": "inf"}, 400, "invalid_parameter"),
        ({"heartbeatSeconds": ""}, 400, "invalid_parameter"),
        ({"taskId": "task_unknown"}, 404, "task_not_found"),
        ({"cursor": "garbage"}, 400, "invalid_cursor"),
        ({"cursor": "evt_00000000000000ff_abcdef"}, 400, "invalid_cursor"),
        ({"cursor": "x" * 5000}, 400, "invalid_cursor"),
    ],
)
def test_stream_rejects_bad_parameters(
    api: Api, params: dict[str, Any], status: int, code: str
) -> None:
    response = api.stream_response(**params)
    assert response.status_code == status
    assert error_of(response)["code"] == code


def test_heartbeat_bounds_are_accepted(api: Api) -> None:
    for value in ("1", "300", "2.5"):
        with api.stream(heartbeatSeconds=value) as reader:
            assert reader.comments == ["connected"]


# ---------------------------------------------------------------- cursors


def test_resume_with_cursor_query_receives_exactly_the_rest(api: Api, srv: ReferenceServer) -> None:
    with api.stream() as reader:
        published = publish_many(srv, 10)
        seen = reader.events(4)
    assert [f.envelope for f in seen] == published[:4]
    with api.stream(cursor=seen[-1].id) as reader:
        rest = reader.events(6)
        marker = srv.store.publish("task.shipped", {})
        after = reader.next_event()
    assert [f.envelope for f in rest] == published[4:]
    assert after.envelope["id"] == marker["id"]


def test_resume_with_last_event_id_header(api: Api, srv: ReferenceServer) -> None:
    published = publish_many(srv, 6)
    with api.stream(headers={"Last-Event-ID": published[1]["id"]}) as reader:
        assert [f.envelope for f in reader.events(4)] == published[2:]
    # the query cursor wins over the header
    with api.stream(
        cursor=published[3]["id"], headers={"Last-Event-ID": published[0]["id"]}
    ) as reader:
        assert [f.envelope for f in reader.events(2)] == published[4:]
    response = api.stream_response(headers={"Last-Event-ID": "nonsense"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_cursor"


def test_cursor_with_a_wrong_random_part_is_unknown(api: Api, srv: ReferenceServer) -> None:
    env = srv.store.publish("task.shipped", {})
    forged = env["id"][:-6] + ("000000" if not env["id"].endswith("000000") else "111111")
    response = api.stream_response(cursor=forged)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_cursor"


def test_expired_cursor_is_410(servers: ServerFactory) -> None:
    srv = servers.start(retention=5)
    api = servers.api(srv)
    published = publish_many(srv, 20)
    assert srv.store.oldest_sequence == published[15]["sequence"]
    for old in (published[0], published[14]):
        response = api.stream_response(cursor=old["id"])
        assert response.status_code == 410
        error = error_of(response)
        assert error["code"] == "cursor_expired"
        assert error["details"]["oldestSequence"] == published[15]["sequence"]
    with api.stream(cursor=published[15]["id"]) as reader:
        assert [f.envelope for f in reader.events(4)] == published[16:]
    # a task whose first events were deleted cannot be streamed from its start
    task = srv.store.create_task("old")
    publish_many(srv, 6)
    response = api.stream_response(taskId=task["id"])
    assert response.status_code == 410
    assert error_of(response)["code"] == "cursor_expired"


def test_reader_that_fell_behind_retention_sees_a_gap(tmp_path: Path) -> None:
    from agentstream.server import EventStore

    with EventStore(tmp_path / "gap.sqlite3", retention=3) as store:
        first = store.publish("message.chunk", "a")
        batch = store.read_after(first["sequence"])
        assert not batch.gap
        for i in range(5):
            store.publish("message.chunk", str(i))
        assert store.read_after(first["sequence"]).gap
        assert not store.read_after(store.oldest_sequence - 1).gap


def test_what_retention_deleted_is_known_again_after_a_reopen(tmp_path: Path) -> None:
    from agentstream.server import EventStore

    path = tmp_path / "reopen.sqlite3"
    with EventStore(path, retention=3) as store:
        published = [store.publish("message.chunk", str(i)) for i in range(10)]
        oldest = store.oldest_sequence
    assert oldest == published[7]["sequence"]
    with EventStore(path, retention=3) as store:
        assert store.oldest_sequence == oldest
        assert store.read_after(published[5]["sequence"]).gap
        assert not store.read_after(published[6]["sequence"]).gap
    with EventStore(path, retention=1) as store:  # a smaller retention applies at open
        assert store.oldest_sequence == published[9]["sequence"]
    with EventStore(path, retention=3) as store:
        assert store.oldest_sequence == published[9]["sequence"]


# ---------------------------------------------------------------- heartbeats


def test_heartbeats_on_a_quiet_stream(api: Api) -> None:
    with api.stream(heartbeatSeconds="1", timeout=3) as reader:
        opened = time.monotonic()
        stamps = []
        for _ in range(2):
            frame = reader.next_frame()
            assert frame is not None
            assert frame.comments == ["heartbeat"]
            assert not frame.is_event
            stamps.append(time.monotonic())
    # 1 s apart (loose bounds: a loaded CI machine delays threads, never by 15 s)
    assert 0.5 <= stamps[0] - opened <= 2.5
    assert 0.7 <= stamps[1] - stamps[0] <= 2.5


def test_heartbeat_counts_from_the_last_write(api: Api, srv: ReferenceServer) -> None:
    with api.stream(heartbeatSeconds="1", timeout=3) as reader:
        srv.store.publish("message.chunk", "x")
        assert reader.next_event().event == "message.chunk"
        sent = time.monotonic()
        frame = reader.next_frame()
        assert frame is not None
        assert frame.comments == ["heartbeat"]
        assert 0.5 <= time.monotonic() - sent <= 2.5


def test_server_default_heartbeat(servers: ServerFactory) -> None:
    srv = servers.start(heartbeat_default=1)
    with servers.api(srv).stream(timeout=3) as reader:
        frame = reader.next_frame()
        assert frame is not None
        assert frame.comments == ["heartbeat"]


def test_server_notices_a_client_that_went_away(api: Api, srv: ReferenceServer) -> None:
    with api.stream() as reader:
        assert reader.comments == ["connected"]
        assert srv.app.open_streams == 1
    # idle stream, default heartbeat 15 s: the server must not wait for a write to notice
    began = time.monotonic()
    assert wait_until(lambda: srv.app.open_streams == 0, timeout=5)
    assert time.monotonic() - began < 2.0


# ---------------------------------------------------------------- task-scoped ends


def test_task_stream_ends_after_finished_and_then_answers_204(
    api: Api, srv: ReferenceServer
) -> None:
    task = api.create_task("short")
    with api.stream(taskId=task["id"]) as reader:
        frames = reader.rest()
    assert frames[-1].event == "task.finished"
    last = frames[-1].id
    response = api.stream_response(taskId=task["id"], cursor=last)
    assert response.status_code == 204
    assert response.content == b""
    late = srv.store.publish("message.chunk", "after the end", task["id"])
    assert api.stream_response(taskId=task["id"], cursor=late["id"]).status_code == 204
    # resuming before the end replays up to task.finished, then ends
    with api.stream(taskId=task["id"], cursor=frames[-3].id) as reader:
        assert [f.id for f in reader.rest()] == [f.id for f in frames[-2:]]
    # an unscoped stream does not end at a task's finish
    with api.stream(cursor=frames[-2].id) as reader:
        assert reader.next_event().id == last
        assert reader.next_event().id == late["id"]


def test_filtered_task_stream_still_ends_and_moves_the_cursor(api: Api) -> None:
    task = api.create_task("filtered")
    with api.stream(taskId=task["id"], eventTypes="message.chunk") as reader:
        frames = reader.rest()
        tail = reader.raw_blocks[-1].decode()
    assert {f.event for f in frames} == {"message.chunk"}
    assert tail.startswith("id: evt_")
    assert "\n" not in tail
    finished_id = tail[len("id: ") :]
    assert api.stream_response(taskId=task["id"], cursor=finished_id).status_code == 204


def test_task_stream_of_a_cancelled_task(servers: ServerFactory) -> None:
    srv = servers.start(agent_pace=30.0)
    api = servers.api(srv)
    task = api.create_task("cancel")
    assert api.request("POST", f"/tasks/{task['id']}/stop").status_code == 200
    with api.stream(taskId=task["id"]) as reader:
        assert [f.event for f in reader.rest()] == ["task.created", "task.updated", "task.finished"]


# ---------------------------------------------------------------- replay-to-live switch


def test_replay_to_live_switch_under_a_concurrent_publisher(servers: ServerFactory) -> None:
    """Clients join mid-publish at random cursors: each gets a gapless, duplicate-free run."""
    srv = servers.start()
    store = srv.store
    total = 2000
    clients = 8
    base = store.head_sequence
    final = base + total
    ids: list[str] = []
    progress = threading.Condition()
    rng = random.Random(20261121)
    failures: list[BaseException] = []
    results: dict[int, tuple[int, list[int], list[str]]] = {}
    published_when_open: dict[int, int] = {}

    def publisher() -> None:
        pause = threading.Event()
        for i in range(total):
            env = store.publish("message.chunk", f"n{i}")
            with progress:
                ids.append(env["id"])
                progress.notify_all()
            if i % 20 == 0:
                pause.wait(0.002)  # steady, not one burst

    def client(index: int, threshold: int, pick: float) -> None:
        try:
            with progress:
                assert progress.wait_for(lambda: len(ids) >= threshold, 10)
                cursor = ids[int(pick * (len(ids) - 1))] if index % 4 else None
            api = Api(srv.url, srv.api_key)
            try:
                params: dict[str, Any] = {} if cursor is None else {"cursor": cursor}
                with api.stream(timeout=10, **params) as reader:
                    with progress:
                        published_when_open[index] = len(ids)
                    seqs: list[int] = []
                    datas: list[str] = []
                    while not seqs or seqs[-1] < final:
                        env = reader.next_event().envelope
                        seqs.append(env["sequence"])
                        datas.append(env["data"])
            finally:
                api.close()
            start = int(cursor[4:20], 16) if cursor else seqs[0] - 1
            results[index] = (start, seqs, datas)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [
        threading.Thread(target=client, args=(i, 100 + i * (total - 300) // clients, rng.random()))
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    pub = threading.Thread(target=publisher)
    pub.start()
    pub.join(30)
    for t in threads:
        t.join(30)
    assert not failures, failures
    assert len(results) == clients
    for start, seqs, datas in results.values():
        assert seqs == list(range(start + 1, final + 1))
        assert datas == [f"n{s - base - 1}" for s in seqs]
    # the switch from replay to live happened while the publisher was still going,
    # for clients that started well behind the head
    mid = [i for i, n in published_when_open.items() if n < total]
    assert len(mid) >= clients // 2, published_when_open
    behind = [i for i in mid if results[i][0] < base + published_when_open[i] - 50]
    assert behind, (published_when_open, {i: r[0] for i, r in results.items()})


def test_many_events_in_one_read(api: Api, srv: ReferenceServer) -> None:
    start = srv.store.publish("message.chunk", "start")
    published = publish_many(srv, 700)
    with api.stream(cursor=start["id"]) as reader:
        got = reader.events(700)
    assert [f.envelope["id"] for f in got] == [e["id"] for e in published]
