"""The reference server delivers webhooks: AgentRail's subscription API, deliveries
signed twice to real receivers on 127.0.0.1, retries, restarts, disabling, rotation."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from agentstream import Client, Registry, StreamOptions
from agentstream.server import ALL_SCOPES, ApiKey, ReferenceServer, serve_main
from agentstream.server._webhooks import RetryPolicy, WebhookConfig, backoff_delay, host_allowed
from agentstream.webhooks import (
    DeduplicatingRegistry,
    MemoryDedupStore,
    SQLiteDedupStore,
    WebhookReceiver,
    verify,
)

from .child_output import read_line
from .redis_server import free_port
from .server_fixtures import Api, ServerFactory, error_of, wait_until
from .webhook_fixtures import SECRET, Capture, Recorder, ServedApp, subscribe, task_event_ids

FAST = WebhookConfig(retry_scale=0.001)  # a 5 s backoff takes 5 ms
PATIENT = {"maxAttempts": 50, "initialBackoffSeconds": 5, "maxBackoffSeconds": 60}


def receiver_with(recorder: Recorder, *secrets: str) -> WebhookReceiver:
    registry = Registry()
    registry.add(recorder)
    return WebhookReceiver(list(secrets) or [SECRET], registry)


# -- the subscription API ----------------------------------------------------------


def test_create_list_get_and_deactivate_in_agentrails_shape(servers: ServerFactory) -> None:
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    data = subscribe(
        api,
        "http://127.0.0.1:9/hook",
        eventTypes=["task.shipped", "task.updated"],
        description="ship notices",
        filters={"taskIds": ["task_1"]},
    )
    assert data["id"].startswith("whsub_")
    assert data["url"] == "http://127.0.0.1:9/hook"
    assert data["eventTypes"] == ["task.shipped", "task.updated"]
    assert data["filters"] == {"taskIds": ["task_1"]}
    assert (data["status"], data["signingAlgorithm"]) == ("active", "hmac_sha256")
    assert data["retryPolicy"] == {
        "maxAttempts": 8,
        "initialBackoffSeconds": 5,
        "maxBackoffSeconds": 3600,
    }
    assert data["createdAt"].endswith("Z")
    assert "secret" not in data  # the caller chose it: never echoed
    listed = api.request("GET", "/task-webhook-subscriptions").json()
    assert [s["id"] for s in listed["data"]] == [data["id"]]
    one = api.request("GET", f"/task-webhook-subscriptions/{data['id']}").json()
    assert one["data"] == data
    gone = api.request("DELETE", f"/task-webhook-subscriptions/{data['id']}")
    assert gone.status_code == 200
    assert gone.json()["data"]["status"] == "disabled"
    missing = api.request("GET", "/task-webhook-subscriptions/whsub_nope")
    assert (missing.status_code, error_of(missing)["code"]) == (404, "subscription_not_found")


def test_optional_event_types_and_a_generated_secret_shown_once(servers: ServerFactory) -> None:
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    response = api.request(
        "POST", "/task-webhook-subscriptions", json={"url": "http://localhost/x"}
    )
    data = response.json()["data"]
    assert data["eventTypes"] == []  # all types
    assert data["secret"].startswith("whsec_")
    again = api.request("GET", f"/task-webhook-subscriptions/{data['id']}").json()["data"]
    assert "secret" not in again


def test_idempotency_key_replays_and_conflicts(servers: ServerFactory) -> None:
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    body = {"url": "http://127.0.0.1:9/hook", "secret": SECRET}
    headers = {"Idempotency-Key": "sub-1"}
    first = api.request("POST", "/task-webhook-subscriptions", json=body, headers=headers)
    replay = api.request("POST", "/task-webhook-subscriptions", json=body, headers=headers)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["data"]["id"] == first.json()["data"]["id"]
    other = {**body, "url": "http://127.0.0.1:10/hook"}
    conflict = api.request("POST", "/task-webhook-subscriptions", json=other, headers=headers)
    assert (conflict.status_code, error_of(conflict)["code"]) == (409, "idempotency_conflict")
    assert len(api.request("GET", "/task-webhook-subscriptions").json()["data"]) == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "http://10.0.0.1/hook"}, "url_not_allowed"),
        ({"url": "http://example.com/hook"}, "url_not_allowed"),
        ({"url": "ftp://127.0.0.1/hook"}, "url_not_allowed"),
        ({"url": "http://user:pw@127.0.0.1/hook"}, "url_not_allowed"),
        ({"url": 12}, "invalid_request"),
        ({"url": "http://127.0.0.1/h", "eventTypes": ["task.nope"]}, "invalid_request"),
        ({"url": "http://127.0.0.1/h", "eventTypes": "task.shipped"}, "invalid_request"),
        ({"url": "http://127.0.0.1/h", "secret": "short"}, "invalid_request"),
        ({"url": "http://127.0.0.1/h", "secret": "whsec_not*base64!"}, "invalid_request"),
        ({"url": "http://127.0.0.1/h", "filters": {"taskIds": [1]}}, "invalid_request"),
        ({"url": "http://127.0.0.1/h", "retryPolicy": {"maxAttempts": 0}}, "invalid_request"),
    ],
)
def test_bad_subscriptions_get_400_with_a_reason(
    servers: ServerFactory, body: dict[str, Any], code: str
) -> None:
    server = servers.start(webhooks=FAST)
    response = servers.api(server).request("POST", "/task-webhook-subscriptions", json=body)
    assert (response.status_code, error_of(response)["code"]) == (400, code)


def test_the_routes_need_the_webhook_scopes(servers: ServerFactory) -> None:
    server = servers.start(api_keys={"full": ["events:read", "webhooks:read"]}, webhooks=FAST)
    api = servers.api(server, "full")
    assert api.request("GET", "/task-webhook-subscriptions").status_code == 200
    response = api.request("POST", "/task-webhook-subscriptions", json={"url": "http://x"})
    assert response.status_code == 403
    assert error_of(response)["details"] == {"requiredScope": "webhooks:write"}


def test_allowed_hosts_and_backoff_schedule() -> None:
    assert host_allowed("http://127.0.0.1:8000/x", ("127.0.0.1",))
    assert host_allowed("https://[::1]/x", ("::1",))
    assert not host_allowed("http://127.0.0.1.example.com/x", ("127.0.0.1",))
    assert host_allowed("http://hooks.example.com/x", ("*",))
    policy = RetryPolicy(8, 5, 60)
    assert [backoff_delay(n, policy, 1.0, lambda: 1.0) for n in range(1, 7)] == [
        5,
        10,
        20,
        40,
        60,
        60,
    ]
    assert backoff_delay(1, policy, 1.0, lambda: 0.0) == 2.5  # jitter: half to all


# -- deliveries ----------------------------------------------------------------


def test_a_simulated_task_is_delivered_verified_and_handled_once(servers: ServerFactory) -> None:
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    recorder = Recorder()
    with ServedApp(receiver_with(recorder)) as receiver:
        subscribe(api, receiver.url)
        task = api.create_task("ship it", eventsStreaming=True)
        expected = task_event_ids(api, task["id"])
        assert expected
        assert recorder.wait_for(lambda calls: set(calls) >= set(expected), timeout=20)
    # Every event of the task, each once (webhooks promise no order: see docs/webhooks.md).
    assert recorder.calls == dict.fromkeys(expected, 1)


def test_each_delivery_is_signed_both_ways(servers: ServerFactory) -> None:
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    capture = Capture()
    with ServedApp(capture) as receiver:
        sub = subscribe(api, receiver.url)
        published = api.publish("message.chunk", data="hi")
        assert capture.wait_count(1)
    body, headers = capture.deliveries[0]
    assert verify(body, headers, SECRET).id == published["id"]
    assert headers["webhook-id"] == published["id"]
    assert headers["content-type"] == "application/json"
    assert headers["x-agentrail-webhook-id"] == sub["id"]
    assert headers["x-agentrail-event-id"] == published["id"]
    assert headers["x-agentrail-event-type"] == "message.chunk"
    assert headers["x-agentrail-delivery-id"].startswith("whdel_")
    assert headers["x-agentrail-delivery-attempt"] == "1"
    assert (
        verify(
            body,
            {"x-agentrail-signature": headers["x-agentrail-signature"]},
            SECRET,
            accept_agentrail=True,
        ).id
        == published["id"]
    )


def test_a_receiver_that_answers_500_gets_the_event_again_and_handles_it_once(
    servers: ServerFactory,
) -> None:
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    recorder = Recorder()
    recorder.fail = lambda event: recorder.calls[event.id] == 1
    with ServedApp(receiver_with(recorder)) as receiver:
        sub = subscribe(api, receiver.url, retryPolicy=PATIENT)
        published = api.publish("message.chunk", data="retry me")
        assert recorder.wait_for(lambda calls: calls[published["id"]] == 2)
        assert wait_until(
            lambda: (
                api.request("GET", f"/task-webhook-subscriptions/{sub['id']}/deliveries").json()[
                    "data"
                ][0]["status"]
                == "delivered"
            )
        )
    deliveries = api.request("GET", f"/task-webhook-subscriptions/{sub['id']}/deliveries").json()
    (delivery,) = deliveries["data"]
    assert (delivery["eventId"], delivery["attempts"], delivery["lastStatusCode"]) == (
        published["id"],
        2,
        200,
    )
    assert recorder.calls[published["id"]] == 2  # once failed (500), once handled


def test_a_receiver_down_for_a_while_gets_every_event_once_back(servers: ServerFactory) -> None:
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    port = free_port()
    recorder = Recorder()
    served = ServedApp(receiver_with(recorder), port=port)
    subscribe(api, served.url, retryPolicy=PATIENT)
    published = [api.publish("message.chunk", data=f"part {i}")["id"] for i in range(10)]
    assert server.app.webhooks.wait_attempts(30, timeout=20)  # refused, refused, ...
    assert recorder.calls == {}
    with served:
        assert recorder.wait_for(lambda calls: set(calls) == set(published), timeout=20)
    assert recorder.calls == dict.fromkeys(published, 1)


def test_a_server_restart_mid_retry_loses_no_delivery(servers: ServerFactory) -> None:
    first = servers.start("events.sqlite3", webhooks=FAST)
    api = servers.api(first)
    port = free_port()
    recorder = Recorder()
    served = ServedApp(receiver_with(recorder), port=port)
    subscribe(api, served.url, retryPolicy=PATIENT)
    published = [api.publish("message.chunk", data=f"part {i}")["id"] for i in range(5)]
    assert first.app.webhooks.wait_attempts(10, timeout=20)
    key = first.api_key
    first.stop()
    second = servers.start("events.sqlite3", api_keys={key: ["events:read"]}, webhooks=FAST)
    with served:
        assert recorder.wait_for(lambda calls: set(calls) == set(published), timeout=20)
    assert recorder.calls == dict.fromkeys(published, 1)
    assert second.app.webhooks.wait_attempts(5, timeout=10)  # resumed by the new server


def test_a_url_that_keeps_failing_is_disabled(servers: ServerFactory) -> None:
    config = WebhookConfig(retry_scale=0.001, disable_after=3)
    server = servers.start(webhooks=config)
    api = servers.api(server)
    capture = Capture(status=lambda count: 500)
    with ServedApp(capture) as receiver:
        sub = subscribe(api, receiver.url, retryPolicy={"maxAttempts": 2})
        for i in range(3):
            api.publish("message.chunk", data=f"part {i}")
        path = f"/task-webhook-subscriptions/{sub['id']}"
        assert wait_until(lambda: api.request("GET", path).json()["data"]["status"] == "disabled")
        data = api.request("GET", path).json()["data"]
        assert data["disabledReason"] == "3 deliveries in a row failed"
        api.publish("message.chunk", data="after")
        assert capture.wait_count(6)
        deliveries = api.request("GET", f"{path}/deliveries").json()["data"]
    assert sorted(d["status"] for d in deliveries) == ["failed"] * 3  # nothing more enqueued
    assert all(d["attempts"] == 2 and d["lastStatusCode"] == 500 for d in deliveries)


def test_rotation_signs_with_both_secrets_during_the_overlap(servers: ServerFactory) -> None:
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    capture = Capture()
    with ServedApp(capture) as receiver:
        sub = subscribe(api, receiver.url)
        rotated = api.request("POST", f"/task-webhook-subscriptions/{sub['id']}/rotate-secret")
        assert rotated.status_code == 200
        new_secret = rotated.json()["data"]["secret"]
        assert new_secret.startswith("whsec_")
        assert rotated.json()["data"]["previousSecretExpiresAt"].endswith("Z")
        published = api.publish("message.chunk", data="rotated")
        assert capture.wait_count(1)
    body, headers = capture.deliveries[0]
    assert len(headers["webhook-signature"].split()) == 2
    assert verify(body, headers, new_secret).id == published["id"]  # an updated receiver
    assert verify(body, headers, SECRET).id == published["id"]  # one not updated yet
    assert verify(body, headers, [new_secret, SECRET]).id == published["id"]


def test_stream_and_webhooks_from_the_server_into_one_registry_handle_each_event_once(
    servers: ServerFactory, tmp_path: Any
) -> None:
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    recorder = Recorder()
    inner = Registry()
    inner.add(recorder)
    store = SQLiteDedupStore(tmp_path / "app.sqlite3")
    shared = DeduplicatingRegistry(store, inner)
    receiver = WebhookReceiver(SECRET, shared)
    client = Client(server.url, server.api_key)
    listener = client.listen(StreamOptions(heartbeat_seconds=5), registry=shared)
    with ServedApp(receiver) as served, listener:
        assert server.app.wait_open_streams(1, timeout=10)
        subscribe(api, served.url, retryPolicy=PATIENT)
        task = api.create_task("both ways", eventsStreaming=True)
        expected = task_event_ids(api, task["id"])
        assert recorder.wait_for(lambda calls: set(calls) >= set(expected), timeout=20)
        assert listener.wait_handled(server.store.head_sequence, timeout=20)
        # Every delivery was answered (200: handled, or a duplicate of the stream's).
        assert wait_until(lambda: server.app.webhooks.attempts_made >= len(expected), timeout=20)
    assert all(recorder.calls[event_id] == 1 for event_id in expected)
    store.close()


def test_the_receiver_answers_duplicates_200_so_the_server_stops(servers: ServerFactory) -> None:
    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    recorder = Recorder()
    dedup = MemoryDedupStore()
    registry = Registry()
    registry.add(recorder)
    with ServedApp(WebhookReceiver(SECRET, registry, dedup=dedup)) as served:
        first = subscribe(api, served.url)
        second = subscribe(api, served.url)  # the same event, delivered twice
        published = api.publish("message.chunk", data="twice")
        for sub in (first, second):
            path = f"/task-webhook-subscriptions/{sub['id']}/deliveries"
            assert wait_until(
                lambda p=path: (
                    [d["status"] for d in api.request("GET", p).json()["data"]] == ["delivered"]
                )
            )
    assert recorder.calls == {published["id"]: 1}


def test_an_operator_may_allow_other_hosts() -> None:
    with ReferenceServer(webhooks=WebhookConfig(allowed_hosts=("hooks.example.com",))) as server:
        response = requests.post(
            f"{server.url}/task-webhook-subscriptions",
            json={"url": "https://hooks.example.com/x"},
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=5,
        )
        assert response.status_code == 201
        response = requests.post(
            f"{server.url}/task-webhook-subscriptions",
            json={"url": "http://127.0.0.1/x"},
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=5,
        )
        assert error_of(response)["details"]["allowedHosts"] == ["hooks.example.com"]


@pytest.mark.skipif(sys.version_info < (3, 10), reason="agentrail needs Python 3.10+")
def test_agentrails_sdk_manages_subscriptions_and_parses_a_delivery(
    servers: ServerFactory,
) -> None:
    import agentrail.client as agentrail_client
    from agentrail.models import TaskWebhookSubscriptionCreateRequest
    from agentrail.webhooks import parse_webhook_event

    server = servers.start(webhooks=FAST)
    api = servers.api(server)
    capture = Capture()
    with ServedApp(capture) as receiver:

        async def manage() -> tuple[Any, Any, Any, Any, dict[str, Any], bool]:
            # One event loop for the whole exchange: httpx keeps its connections.
            async with agentrail_client.AgentRailClient(
                base_url=server.url, api_key=server.api_key
            ) as client:
                request = TaskWebhookSubscriptionCreateRequest(
                    url=receiver.url, event_types=["task.shipped"], secret="agentrail-secret"
                )
                created = await client.create_webhook_subscription(request, "key-1")
                listed = await client.list_webhook_subscriptions()
                fetched = await client.get_webhook_subscription(created.data.id)
                task = await asyncio.to_thread(api.create_task, "ship it", eventsStreaming=True)
                arrived = await asyncio.to_thread(capture.wait_count, 1, 20)  # task.shipped
                deactivated = await client.deactivate_webhook_subscription(created.data.id)
                return created, listed, fetched, deactivated, task, arrived

        created, listed, fetched, deactivated, task, arrived = asyncio.run(
            asyncio.wait_for(manage(), 40)
        )
    assert created.data.status.value == "active"
    assert [s.id for s in listed.data] == [created.data.id] == [fetched.data.id]
    assert arrived
    assert deactivated.data.status.value == "disabled"
    body, headers = capture.deliveries[0]
    event = parse_webhook_event(body, "agentrail-secret", headers["x-agentrail-signature"])
    assert type(event).__name__ == "TaskShippedEvent"
    assert event.data.task_id == task["id"]


def test_agentstream_serve_with_a_webhook_in_one_command(tmp_path: Path) -> None:
    recorder = Recorder()
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks"
    code = (
        "import sys; from agentstream.server import serve_main; sys.exit(serve_main(sys.argv[1:]))"
    )
    args = ["--port", "0", "--db", str(tmp_path / "cli.sqlite3"), "--pace", "0"]
    args += ["--webhook", url, "--webhook-retry-scale", "0.001"]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    try:
        assert proc.stdout is not None
        found: dict[str, str] = {}
        while len(found) < 3:
            line = read_line(proc.stdout)
            for name, pattern in (
                ("url", r"listening on (http://\S+)"),
                ("key", r"AGENTSTREAM_API_KEY=(\S+)$"),
                ("secret", r"secret \(shown only this once\): (whsec_\S+)$"),
            ):
                if match := re.search(pattern, line):
                    found[name] = match.group(1)
        with ServedApp(receiver_with(recorder, found["secret"]), port=port):
            api = Api(found["url"], found["key"])
            try:
                task = api.create_task("from the CLI", eventsStreaming=True)
                expected = task_event_ids(api, task["id"])
            finally:
                api.close()
            assert recorder.wait_for(lambda calls: set(calls) >= set(expected), timeout=20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert found["secret"] not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_agentstream_serve_refuses_a_webhook_outside_the_allowed_hosts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert serve_main(["--webhook", "http://example.com/hook"]) == 2
    assert "allowed host" in capsys.readouterr().err


def test_subscriptions_and_deliveries_stay_inside_their_organization(
    servers: ServerFactory,
) -> None:
    server = servers.start(
        api_keys={"key-a": ApiKey(ALL_SCOPES, "org_a"), "key-b": ApiKey(ALL_SCOPES, "org_b")},
        webhooks=FAST,
    )
    a, b = servers.api(server, "key-a"), servers.api(server, "key-b")
    capture_a, capture_b = Capture(), Capture()
    with ServedApp(capture_a) as receiver_a, ServedApp(capture_b) as receiver_b:
        sub_a = subscribe(a, receiver_a.url)
        sub_b = subscribe(b, receiver_b.url)
        ids_a = [a.publish("message.chunk", data="a1")["id"]]
        ids_b = [b.publish("message.chunk", data="b1")["id"]]
        ids_a.append(a.publish("message.chunk", data="a2")["id"])
        ids_b.append(b.publish("message.chunk", data="b2")["id"])
        assert capture_a.wait_count(2)
        assert capture_b.wait_count(2)
    assert {json.loads(body)["id"] for body, _ in capture_a.deliveries} == set(ids_a)
    assert {json.loads(body)["id"] for body, _ in capture_b.deliveries} == set(ids_b)
    listed = b.request("GET", "/task-webhook-subscriptions").json()["data"]
    assert [s["id"] for s in listed] == [sub_b["id"]]
    other = b.request("GET", f"/task-webhook-subscriptions/{sub_a['id']}")
    assert (other.status_code, error_of(other)["code"]) == (404, "subscription_not_found")
    assert b.request("DELETE", f"/task-webhook-subscriptions/{sub_a['id']}").status_code == 404
