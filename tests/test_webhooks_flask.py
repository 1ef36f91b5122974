"""The Flask receiver: the route ``AgentStream.init_app`` registers when
``AGENTSTREAM_WEBHOOK_SECRETS`` is set, in a real app (tests/flask_app.py)
served on 127.0.0.1, receiving the reference server's deliveries into the
handlers its ``flask agentstream listen`` runs, each event once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, url_for

from agentstream import Registry
from agentstream.contrib.flask import AgentStream
from agentstream.errors import ConfigurationError
from agentstream.server import ReferenceServer, WebhookConfig
from agentstream.webhooks import MemoryDedupStore, RedisDedupStore, SQLiteDedupStore

from . import flask_app
from .redis_server import RedisServer
from .server_fixtures import Api, ServerFactory, wait_until
from .webhook_fixtures import (
    OTHER_SECRET,
    SECRET,
    Recorder,
    ServedApp,
    body_of,
    envelope,
    sign,
    subscribe,
    task_event_ids,
)

FAST = WebhookConfig(retry_scale=0.001)
PATH = "/agentstream/webhooks"


def handled(log: Path) -> list[str]:
    """The event ids tests/flask_app.py's handler recorded, one per call."""
    if not log.exists():
        return []
    return [
        line["handled"]
        for line in map(json.loads, log.read_text().splitlines())
        if "handled" in line
    ]


def lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def the_app(tmp_path: Path, server: ReferenceServer, **config: Any) -> Flask:
    """tests/flask_app.py with webhooks on, its cursors and claims in one SQLite file."""
    return flask_app.create_app(
        {
            "EVENTS_LOG": str(tmp_path / "events.jsonl"),
            "AGENTSTREAM_BASE_URL": server.url,
            "AGENTSTREAM_API_KEY": server.api_key,
            "AGENTSTREAM_CURSOR_STORE": f"sqlite:///{tmp_path}/agentstream.sqlite3",
            "AGENTSTREAM_WEBHOOK_SECRETS": SECRET,
            "AGENTSTREAM_HEARTBEAT_SECONDS": 1,
            **config,
        }
    )


def all_delivered(api: Api, subscription_id: str, count: int) -> bool:
    found = api.request("GET", f"/task-webhook-subscriptions/{subscription_id}/deliveries")
    statuses = [d["status"] for d in found.json()["data"]]
    return len(statuses) >= count and set(statuses) == {"delivered"}


def test_the_reference_server_delivers_a_task_to_the_flask_route_once(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    app = the_app(tmp_path, server)
    log = tmp_path / "events.jsonl"
    with ServedApp(app) as served:
        subscription = subscribe(api, f"http://127.0.0.1:{served.port}{PATH}")
        task = api.create_task("ship it", eventsStreaming=True)
        expected = task_event_ids(api, task["id"])
        assert wait_until(lambda: set(handled(log)) >= set(expected), timeout=20)
        assert wait_until(lambda: all_delivered(api, subscription["id"], len(expected)), timeout=20)
    assert sorted(handled(log)) == sorted(expected)  # every event, each once
    records = [line for line in lines(log) if "handled" in line]
    # The handler ran in the app's context (its config, a fresh g), and the
    # app's teardown ran after each delivery.
    assert {r["app"] for r in records} == {"tests.flask_app"}
    assert all(r["fresh_g"] for r in records)
    assert sorted(line["teardown"] for line in lines(log) if "teardown" in line) == sorted(expected)


def test_by_stream_and_by_webhook_the_same_handlers_run_each_event_once(
    servers: ServerFactory, tmp_path: Path
) -> None:
    # The listener `flask agentstream listen` would run, and the route, in one
    # app: both dispatch through claims in the cursor store's SQLite file.
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    app = the_app(tmp_path, server)
    log = tmp_path / "events.jsonl"
    extension = flask_app.agentstream
    with app.app_context():
        assert isinstance(extension.dedup_store(), SQLiteDedupStore)
        assert extension.dedup_store().path == f"{tmp_path}/agentstream.sqlite3"
    listener = extension.create_listener(app)
    with ServedApp(app) as served, listener:
        subscription = subscribe(api, f"http://127.0.0.1:{served.port}{PATH}")
        assert server.app.wait_open_streams(1, timeout=10)
        tasks = [api.create_task(f"twice {i}", eventsStreaming=True) for i in range(3)]
        expected = [eid for task in tasks for eid in task_event_ids(api, task["id"])]
        last = api.request("GET", f"/tasks/{tasks[-1]['id']}").json()
        assert last["status"] in ("done", "failed", "cancelled")
        assert wait_until(lambda: set(handled(log)) >= set(expected), timeout=30)
        assert wait_until(lambda: all_delivered(api, subscription["id"], len(expected)), timeout=30)
        # The three tasks run at once: the newest event is the largest id (by sequence).
        assert wait_until(lambda: listener.cursor == max(expected), timeout=30)
    assert sorted(handled(log)) == sorted(expected)  # never twice, whichever came first
    assert listener.health().events_handled >= len(expected)  # the stream saw them all too


def test_the_route_answers_what_the_receiver_decides_and_runs_nothing_unproven(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    registry = Registry()
    registry.add(recorder)
    recorder.fail = lambda event: event.id == "evt_fails" and recorder.calls[event.id] == 1
    app = Flask("hooks", instance_path=str(tmp_path / "instance"))
    app.config.update(
        AGENTSTREAM_WEBHOOK_SECRETS=[OTHER_SECRET, SECRET],  # a rotation: either verifies
        AGENTSTREAM_WEBHOOK_DEDUP="memory",
    )
    AgentStream(app, registry=registry)
    client = app.test_client()
    body = body_of(envelope())

    def post(data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        answer = client.post(PATH, data=data, headers=headers)
        assert SECRET not in answer.get_data(as_text=True)
        return answer.status_code, answer.get_json()

    forged = {**sign(body), "webhook-signature": "v1," + "A" * 44}
    status, answer = post(body, forged)
    assert (status, answer["error"]["code"]) == (400, "no_matching_signature")
    assert post(body.replace(b"hello", b"HELLO"), sign(body))[1]["error"]["code"] == (
        "no_matching_signature"
    )
    stale = sign(body, timestamp=1_000_000_000)
    assert post(body, stale)[1]["error"]["code"] == "timestamp_outside_tolerance"
    no_id = {k: v for k, v in sign(body).items() if k != "webhook-id"}
    assert post(body, no_id)[1]["error"]["code"] == "missing_header"
    assert recorder.calls == {}  # nothing unproven ran
    assert post(body, sign(body)) == (200, {"status": "handled", "eventId": "evt_000000000001"})
    assert post(body, sign(body, OTHER_SECRET))[1]["status"] == "duplicate"  # the old secret too
    failing = body_of(envelope("evt_fails"))
    status, answer = post(failing, sign(failing, msg_id="evt_fails"))
    assert (status, answer["status"]) == (500, "handler_failed")
    assert post(failing, sign(failing, msg_id="evt_fails"))[1]["status"] == "handled"  # the retry
    assert recorder.calls == {"evt_000000000001": 1, "evt_fails": 2}
    huge = client.post(PATH, data=b"x" * (1024 * 1024 + 1), headers=sign(body))
    assert (huge.status_code, huge.get_json()["error"]["code"]) == (413, "payload_too_large")
    assert client.get(PATH).status_code == 405
    with app.test_request_context():
        assert url_for("agentstream.webhook") == PATH


def test_no_secret_no_route_and_the_path_is_configurable(tmp_path: Path) -> None:
    plain = Flask("plain", instance_path=str(tmp_path / "i1"))
    extension = AgentStream(plain)
    assert plain.test_client().post(PATH).status_code == 404
    with plain.app_context(), pytest.raises(ConfigurationError, match="WEBHOOK_SECRETS"):
        extension.webhook_receiver()
    moved = Flask("moved", instance_path=str(tmp_path / "i2"))
    moved.config.update(AGENTSTREAM_WEBHOOK_SECRETS=SECRET, AGENTSTREAM_WEBHOOK_PATH="/hooks/in")
    AgentStream(moved)
    client = moved.test_client()
    assert client.post(PATH).status_code == 404
    assert client.post("/hooks/in").get_json()["error"]["code"] == "missing_header"


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"AGENTSTREAM_WEBHOOK_SECRETS": 42}, "AGENTSTREAM_WEBHOOK_SECRETS must be a secret"),
        ({"AGENTSTREAM_WEBHOOK_SECRETS": ["whsec_not*base64"]}, "base64"),
        ({"AGENTSTREAM_WEBHOOK_SECRETS": [SECRET, ""]}, "non-empty"),
        ({"AGENTSTREAM_WEBHOOK_DEDUP": 3}, "AGENTSTREAM_WEBHOOK_DEDUP"),
        ({"AGENTSTREAM_WEBHOOK_TOLERANCE": 0}, "AGENTSTREAM_WEBHOOK_TOLERANCE"),
        ({"AGENTSTREAM_WEBHOOK_ACCEPT_AGENTRAIL": "maybe"}, "ACCEPT_AGENTRAIL"),
        ({"AGENTSTREAM_WEBHOOK_PATH": "hooks"}, "AGENTSTREAM_WEBHOOK_PATH"),
    ],
)
def test_a_wrong_webhook_setting_fails_init_app_naming_it(
    tmp_path: Path, config: dict[str, Any], words: str
) -> None:
    app = Flask("bad", instance_path=str(tmp_path / "instance"))
    app.config.update({"AGENTSTREAM_WEBHOOK_SECRETS": SECRET, **config})
    with pytest.raises(ConfigurationError, match=words) as caught:
        AgentStream(app)
    assert SECRET[6:] not in str(caught.value)
    assert "not*base64" not in str(caught.value)


def test_the_dedup_store_follows_the_cursor_store_unless_named(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    cases: list[tuple[dict[str, Any], type]] = [
        ({}, SQLiteDedupStore),  # the default: the instance folder's SQLite file
        ({"AGENTSTREAM_CURSOR_STORE": "memory"}, MemoryDedupStore),
        ({"AGENTSTREAM_CURSOR_STORE": redis_server.url}, RedisDedupStore),
        ({"AGENTSTREAM_WEBHOOK_DEDUP": "memory"}, MemoryDedupStore),
    ]
    for index, (config, kind) in enumerate(cases):
        app = Flask(f"a{index}", instance_path=str(tmp_path / f"i{index}"))
        app.config.update(AGENTSTREAM_WEBHOOK_SECRETS=SECRET, **config)
        extension = AgentStream(app)
        with app.app_context():
            store = extension.dedup_store()
            assert type(store) is kind, config
            assert store is extension.dedup_store()  # one per app: the route and listeners share it
            assert SECRET not in repr(extension.settings()) + repr(app.extensions["agentstream"])
        if kind is SQLiteDedupStore and not config:
            assert store.path == str(tmp_path / "i0" / "agentstream.sqlite3")  # type: ignore[attr-defined]
