"""The reference server's HTTP API: tasks, publishing, auth and scopes, errors, the agent."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from agentstream.event_types import EventType
from agentstream.server import ReferenceServer
from agentstream.server._agent import ANSWER_CHUNKS, script_event_types

from .server_fixtures import Api, ServerFactory, error_of

KEYS = {
    "k-all": ["events:read", "events:write", "tasks:read", "tasks:write"],
    "k-events-read": ["events:read"],
    "k-events-write": ["events:write"],
    "k-tasks-read": ["tasks:read"],
    "k-tasks-write": ["tasks:write"],
    "k-none": [],
}
ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
TASK_KEYS = {
    "id",
    "identifier",
    "status",
    "prompt",
    "result",
    "error",
    "eventsStreaming",
    "metadata",
    "version",
    "createdAt",
    "updatedAt",
    "finishedAt",
}
ENVELOPE_KEYS = {
    "id",
    "type",
    "sequence",
    "occurredAt",
    "taskId",
    "organizationId",
    "taskVersion",
    "traceId",
    "data",
}
AGENTRAIL_COMMON = {"taskId", "taskIdentifier", "status", "summary", "availableActions", "links"}


@pytest.fixture
def srv(servers: ServerFactory) -> ReferenceServer:
    return servers.start(api_keys=KEYS)


@pytest.fixture
def api(servers: ServerFactory, srv: ReferenceServer) -> Api:
    return servers.api(srv, "k-all")


def check_task(task: dict[str, Any]) -> None:
    assert set(task) == TASK_KEYS
    assert task["id"].startswith("task_")
    assert re.fullmatch(r"AS-\d+", task["identifier"])
    for key in ("createdAt", "updatedAt"):
        assert ISO_MS.fullmatch(task[key]), task[key]


def check_envelope(env: dict[str, Any]) -> None:
    assert set(env) == ENVELOPE_KEYS
    assert re.fullmatch(r"evt_[0-9a-f]{16}_[0-9a-f]{6}", env["id"])
    assert ISO_MS.fullmatch(env["occurredAt"])
    assert isinstance(env["sequence"], int)
    assert env["organizationId"] == "org_local"


# ---------------------------------------------------------------- tasks


def test_create_task_returns_the_snapshot(api: Api) -> None:
    response = api.request(
        "POST",
        "/tasks",
        json={"prompt": "Research", "eventsStreaming": True, "metadata": {"a": [1, 2]}},
    )
    assert response.status_code == 201
    task = response.json()
    check_task(task)
    assert task["status"] == "todo"
    assert task["prompt"] == "Research"
    assert task["eventsStreaming"] is True
    assert task["metadata"] == {"a": [1, 2]}
    assert task["version"] == 1
    assert task["result"] is None
    assert task["error"] is None
    assert task["finishedAt"] is None
    assert response.headers["Location"] == f"/tasks/{task['id']}"


def test_create_task_defaults(api: Api) -> None:
    task = api.create_task("only a prompt")
    assert task["eventsStreaming"] is False
    assert task["metadata"] == {}
    second = api.create_task("another", metadata=None)
    assert second["metadata"] == {}
    assert second["identifier"] != task["identifier"]


def test_get_task(api: Api) -> None:
    task = api.create_task()
    response = api.request("GET", f"/tasks/{task['id']}")
    assert response.status_code == 200
    got = response.json()
    check_task(got)
    assert got["id"] == task["id"]
    missing = api.request("GET", "/tasks/task_nope")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "task_not_found"


def test_simulated_agent_walks_the_whole_vocabulary(api: Api) -> None:
    task = api.create_task("Explain SSE", eventsStreaming=True)
    with api.stream(taskId=task["id"]) as reader:
        frames = reader.rest()  # the task stream ends by itself after task.finished
    types = [f.event for f in frames]
    assert types == script_event_types()
    envs = [f.envelope for f in frames]
    for frame, env in zip(frames, envs):
        check_envelope(env)
        assert frame.id == env["id"]
        assert frame.event == env["type"]
        assert env["taskId"] == task["id"]
        assert env["traceId"] is None
        assert isinstance(env["taskVersion"], int)
    sequences = [e["sequence"] for e in envs]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)

    by_type: dict[str, list[Any]] = {}
    for env in envs:
        by_type.setdefault(env["type"], []).append(env["data"])
    assert set(by_type) == {t.value for t in EventType}  # every wire type, once at least

    created = by_type["task.created"][0]
    check_task(created)
    assert created["status"] == "todo"

    updates = by_type["task.updated"]
    assert [u["status"] for u in updates] == ["in_progress", "in_review", "done"]
    assert [u["previousStatus"] for u in updates] == ["todo", "in_progress", "in_review"]
    for update in updates:
        assert AGENTRAIL_COMMON | {"previousStatus", "changedFields", "actor", "task"} <= set(
            update
        )
        assert set(update["actor"]) == {"id", "role"}
        assert update["links"]["task"] == f"/tasks/{task['id']}"
        assert update["task"]["status"] == update["status"]
        assert update["taskIdentifier"] == task["identifier"]
    assert "result" in updates[-1]["changedFields"]

    reviewed = by_type["task.reviewed"][0]
    assert AGENTRAIL_COMMON | {"reviewOutcome", "reviewer"} <= set(reviewed)
    assert reviewed["reviewOutcome"] == "approved"
    shipped = by_type["task.shipped"][0]
    assert AGENTRAIL_COMMON | {"shipStatus", "operationId", "targetEnvironment"} <= set(shipped)
    assert shipped["shipStatus"] == "succeeded"
    assert shipped["targetEnvironment"] == "staging"
    for data in [*updates, reviewed, shipped]:
        assert data["status"] != "failed"

    requested = by_type["tool_call.requested"]
    completed = by_type["tool_call.completed"]
    assert [c["isError"] for c in completed] == [False, True]
    for req, res in zip(requested, completed):
        assert set(req) == {"operationId", "toolCallId", "toolName", "payload", "reasoning"}
        assert set(res) == {"operationId", "toolCallId", "toolName", "payload", "result", "isError"}
        assert req["operationId"] == res["operationId"]
        assert req["toolCallId"] == res["toolCallId"]

    chunks = by_type["message.chunk"]
    assert all(isinstance(c, str) for c in chunks)
    assert "".join(chunks) == "".join(ANSWER_CHUNKS)
    auth = by_type["auth.required"][0]
    assert {"provider", "authUrl", "message"} <= set(auth)
    assert set(by_type["subagent.triggered"][0]) == {"subTaskId", "agentId", "prompt"}
    assert set(by_type["reasoning.think"][0]) == {"title", "content"}
    assert set(by_type["reasoning.analyze"][0]) == {"title", "content"}
    steps = by_type["plan.updated"][0]["steps"]
    assert all(set(s) == {"id", "title", "status"} for s in steps)
    assert set(by_type["task.compacted"][0]) == {"summary", "tokensBefore", "tokensAfter"}

    finished = by_type["task.finished"][0]
    check_task(finished)
    assert finished["status"] == "done"
    assert finished["result"] == "".join(ANSWER_CHUNKS)
    assert ISO_MS.fullmatch(finished["finishedAt"])
    assert envs[-1]["taskVersion"] == finished["version"]
    assert envs[0]["taskVersion"] == 1

    final = api.request("GET", f"/tasks/{task['id']}").json()
    assert final == finished


def test_non_streaming_task_still_runs(api: Api) -> None:
    task = api.create_task("quiet", eventsStreaming=False)
    with api.stream(taskId=task["id"]) as reader:
        frames = reader.rest()
    assert frames[-1].event == "task.finished"
    assert frames[-1].envelope["data"]["eventsStreaming"] is False


def test_stop_cancels_a_running_task(servers: ServerFactory) -> None:
    srv = servers.start(agent_pace=30.0)  # the run would wait 30 s before its first step
    api = servers.api(srv)
    task = api.create_task("long")
    with api.stream(taskId=task["id"]) as reader:
        assert reader.next_event().event == "task.created"
        response = api.request("POST", f"/tasks/{task['id']}/stop")
        assert response.status_code == 200
        stopped = response.json()
        check_task(stopped)
        assert stopped["status"] == "cancelled"
        assert stopped["finishedAt"] is not None
        rest = reader.rest()
    assert [f.event for f in rest] == ["task.updated", "task.finished"]
    update, finished = (f.envelope for f in rest)
    assert update["data"]["status"] == "cancelled"
    assert update["data"]["previousStatus"] == "todo"
    assert update["data"]["availableActions"] == []
    assert finished["data"]["status"] == "cancelled"
    assert finished["sequence"] == update["sequence"] + 1
    assert finished["taskVersion"] == update["taskVersion"] == stopped["version"]
    # the run thread ended at once: no event wait of 30 s left behind
    assert srv.app.agent.active_runs == 0 or _wait_runs(srv)

    again = api.request("POST", f"/tasks/{task['id']}/stop")
    assert again.status_code == 409
    error = error_of(again)
    assert error["code"] == "task_finished"
    assert error["details"]["status"] == "cancelled"


def _wait_runs(srv: ReferenceServer) -> bool:
    from .server_fixtures import wait_until

    return wait_until(lambda: srv.app.agent.active_runs == 0, timeout=2.0)


def test_stop_mid_run_ends_with_cancel(servers: ServerFactory) -> None:
    srv = servers.start(agent_pace=0.01)
    api = servers.api(srv)
    task = api.create_task("stop me")
    with api.stream(taskId=task["id"]) as reader:
        seen = []
        while True:
            frame = reader.next_event()
            seen.append(frame)
            if frame.event == "tool_call.requested":
                break
        response = api.request("POST", f"/tasks/{task['id']}/stop")
        assert response.status_code == 200
        seen.extend(reader.rest())
    types = [f.event for f in seen]
    assert types[-2:] == ["task.updated", "task.finished"]
    assert seen[-1].envelope["data"]["status"] == "cancelled"
    assert types.count("task.finished") == 1
    assert types[:-2] == script_event_types()[: len(types) - 2]


def test_stop_a_finished_task_is_409_and_unknown_is_404(api: Api) -> None:
    task = api.create_task()
    with api.stream(taskId=task["id"]) as reader:
        reader.rest()
    response = api.request("POST", f"/tasks/{task['id']}/stop")
    assert response.status_code == 409
    assert error_of(response)["details"]["status"] == "done"
    assert api.request("POST", "/tasks/task_missing/stop").status_code == 404


# ---------------------------------------------------------------- idempotency


def test_idempotency_key_same_body_same_task(api: Api) -> None:
    body = {"prompt": "once", "eventsStreaming": True, "metadata": {"n": 1}}
    first = api.request("POST", "/tasks", json=body, headers={"Idempotency-Key": "abc"})
    second = api.request("POST", "/tasks", json=body, headers={"Idempotency-Key": "abc"})
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    conflict = api.request(
        "POST", "/tasks", json={**body, "prompt": "twice"}, headers={"Idempotency-Key": "abc"}
    )
    assert conflict.status_code == 409
    assert error_of(conflict)["code"] == "idempotency_conflict"
    other = api.request("POST", "/tasks", json=body, headers={"Idempotency-Key": "def"})
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    empty = api.request("POST", "/tasks", json=body, headers={"Idempotency-Key": "x" * 300})
    assert empty.status_code == 400


def test_idempotency_under_concurrent_requests(api: Api, srv: ReferenceServer) -> None:
    body = {"prompt": "race"}
    results: list[Any] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def post() -> None:
        start.wait(5)
        one = Api(srv.url, "k-all")
        try:
            response = one.request("POST", "/tasks", json=body, headers={"Idempotency-Key": "r"})
        finally:
            one.close()
        with lock:
            results.append((response.status_code, response.json()["id"]))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 6
    assert len({task_id for _, task_id in results}) == 1
    assert sorted(code for code, _ in results) == [200] * 5 + [201]


def test_idempotency_keys_are_per_api_key(servers: ServerFactory) -> None:
    srv = servers.start(api_keys={"a": ["tasks:write"], "b": ["tasks:write"]})
    first = servers.api(srv, "a").request(
        "POST", "/tasks", json={"prompt": "p"}, headers={"Idempotency-Key": "k"}
    )
    second = servers.api(srv, "b").request(
        "POST", "/tasks", json={"prompt": "p"}, headers={"Idempotency-Key": "k"}
    )
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


# ---------------------------------------------------------------- publish


def test_publish_returns_the_envelope(api: Api) -> None:
    response = api.request(
        "POST",
        "/task-events",
        json={
            "type": "task.shipped",
            "data": {"x": 1},
            "traceId": "trace-1",
            "id": "ignored",
            "sequence": 999,
        },
    )
    assert response.status_code == 201
    env = response.json()
    check_envelope(env)
    assert env["type"] == "task.shipped"
    assert env["data"] == {"x": 1}
    assert env["traceId"] == "trace-1"
    assert env["taskId"] is None
    assert env["taskVersion"] is None
    assert env["id"] != "ignored"
    assert env["sequence"] != 999
    nxt = api.publish("message.chunk", "hello")
    assert nxt["sequence"] == env["sequence"] + 1
    assert nxt["data"] == "hello"
    no_data = api.publish("reasoning.think")
    assert no_data["data"] == {}
    assert no_data["organizationId"] == "org_local"  # the key's organization
    own = api.publish("reasoning.think", {}, organizationId="org_local")
    assert own["organizationId"] == "org_local"


def test_the_publish_answer_is_the_streamed_envelope_byte_for_byte(
    api: Api, srv: ReferenceServer
) -> None:
    with api.stream() as reader:
        assert srv.app.wait_open_streams(1)
        response = api.request(
            "POST", "/task-events", json={"type": "message.chunk", "data": {"é": [1.5, None]}}
        )
        assert response.status_code == 201
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        assert int(response.headers["Content-Length"]) == len(response.content)
        streamed = reader.next_event()
    # Encoded once: the answer is the stored text, the data line of the frame.
    assert streamed.data is not None
    assert response.content == streamed.data.encode()
    stored = srv.store.read_after(streamed.sequence - 1).events[0]
    assert response.content == stored.envelope.encode()


def test_head_gets_the_headers_of_get_and_no_body(api: Api, srv: ReferenceServer) -> None:
    task = srv.store.create_task("no simulated run: the snapshot stays as it is")
    got = api.request("GET", f"/tasks/{task['id']}")
    head = api.request("HEAD", f"/tasks/{task['id']}")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == got.headers["Content-Length"]
    assert head.headers["Content-Type"] == "application/json"


def test_publish_for_a_task_carries_its_version(api: Api, srv: ReferenceServer) -> None:
    task = srv.store.create_task("manual", events_streaming=True)  # no simulated run
    env = api.publish("message.chunk", "hi", taskId=task["id"])
    assert env["taskId"] == task["id"]
    assert env["taskVersion"] == 1
    missing = api.request("POST", "/task-events", json={"type": "task.updated", "taskId": "nope"})
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "task_not_found"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"type": "task.nope"}, "invalid_event_type"),
        ({"type": "TASK_SHIPPED"}, "invalid_event_type"),
        ({"type": 3}, "invalid_request"),
        ({}, "invalid_request"),
        ({"type": "task.shipped", "taskId": 7}, "invalid_request"),
        ({"type": "task.shipped", "traceId": ["x"]}, "invalid_request"),
        ({"type": "task.shipped", "organizationId": {}}, "invalid_request"),
    ],
)
def test_publish_rejects_bad_bodies(api: Api, body: dict[str, Any], code: str) -> None:
    response = api.request("POST", "/task-events", json=body)
    assert response.status_code == 400
    assert error_of(response)["code"] == code


# ---------------------------------------------------------------- auth and scopes


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/task-events/stream", "events:read"),
        ("POST", "/task-events", "events:write"),
        ("POST", "/tasks", "tasks:write"),
        ("GET", "/tasks/task_x", "tasks:read"),
        ("POST", "/tasks/task_x/stop", "tasks:write"),
    ],
)
def test_scopes(
    srv: ReferenceServer, servers: ServerFactory, method: str, path: str, scope: str
) -> None:
    anon = servers.api(srv, "")
    for key in (None, "wrong-key"):
        response = anon.request(method, path, key=key, json={})
        assert response.status_code == 401
        assert error_of(response)["code"] == "unauthenticated"
        assert "wrong-key" not in response.text
    basic = anon.request(method, path, headers={"Authorization": "Basic k-all"}, json={})
    assert basic.status_code == 401
    for key, scopes in KEYS.items():
        if scope in scopes:
            continue
        response = anon.request(method, path, key=key, json={})
        assert response.status_code == 403, (key, response.text)
        error = error_of(response)
        assert error["code"] == "insufficient_scope"
        assert error["details"]["requiredScope"] == scope
        assert key not in response.text
    allowed = next(k for k, s in KEYS.items() if scope in s and k != "k-all")
    if method == "GET" and path.endswith("stream"):
        with anon.stream(key=allowed) as reader:
            assert reader.comments == ["connected"]
    else:
        response = anon.request(method, path, key=allowed, json={"prompt": "p", "type": "x"})
        assert response.status_code not in (401, 403)


def test_stream_403_before_any_event(srv: ReferenceServer, servers: ServerFactory) -> None:
    srv.store.publish("task.shipped", {})
    api = servers.api(srv, "k-tasks-read")
    response = api.stream_response()
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("application/json")
    assert error_of(response)["details"] == {"requiredScope": "events:read"}


def test_bearer_scheme_is_case_insensitive(api: Api) -> None:
    response = api.request("GET", "/tasks/x", headers={"Authorization": "bearer k-all"})
    assert response.status_code == 404


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b"\xff\xfe\x00", "invalid_json"),
        (b'{"prompt": NaN}', "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
        (b"1" * 5000, "invalid_json"),
        (b'["a list"]', "invalid_request"),
        (b'"a string"', "invalid_request"),
        (b'{"prompt": 1}', "invalid_request"),
        (b'{"prompt": ""}', "invalid_request"),
        (b'{"prompt": "p", "eventsStreaming": "yes"}', "invalid_request"),
        (b'{"prompt": "p", "eventsStreaming": 1}', "invalid_request"),
        (b'{"prompt": "p", "metadata": [1]}', "invalid_request"),
    ],
)
def test_create_task_rejects_bad_bodies(api: Api, data: bytes, code: str) -> None:
    response = api.request(
        "POST", "/tasks", data=data, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == code


def test_huge_body_is_413(api: Api) -> None:
    big = b'{"prompt": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    for path in ("/tasks", "/task-events"):
        response = api.request("POST", path, data=big)
        assert response.status_code == 413
        assert error_of(response)["code"] == "payload_too_large"
    chunked = api.request("POST", "/tasks", data=iter([big[:1000], big[1000:]]))
    assert chunked.status_code == 413
    assert api.create_task()["status"] == "todo"  # still serving


def test_unknown_paths_and_wrong_methods(api: Api) -> None:
    for path in ("/", "/nope", "/tasks/a/b/c", "/task-events/stream/x"):
        response = api.request("GET", path)
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"
    for method, path, allowed in [
        ("DELETE", "/tasks", "POST"),
        ("GET", "/tasks", "POST"),
        ("POST", "/task-events/stream", "GET"),
        ("PUT", "/tasks/task_x", "GET"),
        ("GET", "/tasks/task_x/stop", "POST"),
        ("GET", "/task-events", "POST"),
    ]:
        response = api.request(method, path)
        assert response.status_code == 405, (method, path)
        assert error_of(response)["code"] == "method_not_allowed"
        assert allowed in response.headers["Allow"]


def test_huge_headers_get_a_json_error(api: Api) -> None:
    response = api.request("GET", "/tasks/x", headers={"X-Big": "a" * 70_000})
    assert response.status_code == 431
    assert error_of(response)["code"] == "header_fields_too_large"
