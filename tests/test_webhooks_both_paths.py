"""Once across both paths: a real Listener on the reference server's stream and
a real webhook receiver on a socket share one DeduplicatingRegistry, and every
event that arrives by both is handled once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests

from agentstream import Client, Registry, StreamOptions
from agentstream.webhooks import (
    DeduplicatingRegistry,
    DedupStore,
    RedisDedupStore,
    SQLiteDedupStore,
    WebhookReceiver,
)

from .redis_server import RedisServer
from .server_fixtures import ServerFactory
from .webhook_fixtures import SECRET, Recorder, ServedApp, sign

EVENTS = 20


def deliver(url: str, envelope: dict[str, object], deadline: float) -> int:
    """POST like a sender: again after a 503 (the stream has it in hand), until an answer."""
    body = json.dumps(envelope, separators=(",", ":")).encode()
    pause = threading.Event()
    while True:
        headers = sign(body, msg_id=str(envelope["id"]))
        status = requests.post(url, data=body, headers=headers, timeout=5).status_code
        if status != 503 or time.monotonic() > deadline:
            return status
        pause.wait(0.01)


@pytest.fixture(params=["sqlite", "redis"])
def shared_store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> DedupStore:
    if request.param == "sqlite":
        return SQLiteDedupStore(tmp_path / "app.sqlite3")
    return RedisDedupStore(redis_server.url, prefix=f"both{time.monotonic_ns()}:")


def test_an_event_by_stream_and_by_webhook_is_handled_once(
    servers: ServerFactory, shared_store: DedupStore
) -> None:
    server = servers.start()
    api = servers.api(server)
    recorder = Recorder()
    inner = Registry()
    inner.add(recorder)
    # Two registries over one store, as two processes (the web app, the listener) would.
    for_stream = DeduplicatingRegistry(shared_store, inner)
    for_webhooks = DeduplicatingRegistry(shared_store, inner)
    receiver = WebhookReceiver(SECRET, for_webhooks)
    client = Client(server.url, server.api_key)
    listener = client.listen(StreamOptions(heartbeat_seconds=5), registry=for_stream)
    with ServedApp(receiver) as served:
        with listener:
            assert server.app.wait_open_streams(1, timeout=10)
            envelopes = [api.publish("message.chunk", data=f"part {i}") for i in range(EVENTS)]
            deadline = time.monotonic() + 20
            statuses = [deliver(served.url, envelope, deadline) for envelope in envelopes]
            assert listener.wait_handled(envelopes[-1]["sequence"], timeout=20)
        assert statuses == [200] * EVENTS
        # The listener is stopped; more events come by webhook only, then a new
        # listener with the same name resumes from the saved cursor and replays them.
        later = [api.publish("message.chunk", data=f"late {i}") for i in range(5)]
        assert [deliver(served.url, e, deadline) for e in later] == [200] * 5
        assert recorder.calls == dict.fromkeys([str(e["id"]) for e in envelopes + later], 1)
        resumed = client.listen(StreamOptions(heartbeat_seconds=5), registry=for_stream)
        with resumed:
            assert resumed.wait_handled(later[-1]["sequence"], timeout=20)
            assert resumed.cursor == later[-1]["id"]  # it saw them all, and ran nothing
    ids = [str(e["id"]) for e in envelopes + later]
    assert recorder.calls == dict.fromkeys(ids, 1)
