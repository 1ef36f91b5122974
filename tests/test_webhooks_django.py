"""The Django receiver: ``agentstream.contrib.django.views.webhook`` in the test
project's urls.py (tests/django_project, CSRF on, ATOMIC_REQUESTS on), served
by pytest-django's live server on 127.0.0.1, receiving the reference server's
deliveries into the handlers ``agentstream_listen`` runs, each event once."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from .django_project import setup

setup()

from django.db import connection  # noqa: E402
from django.test import Client as DjangoClient  # noqa: E402
from pytest_django.live_server_helper import LiveServer  # noqa: E402

from agentstream import TaskEvent  # noqa: E402
from agentstream.contrib.django import checks  # noqa: E402
from agentstream.contrib.django.models import WebhookDedup  # noqa: E402
from agentstream.contrib.django.runner import build_listener  # noqa: E402
from agentstream.contrib.django.store import DjangoDedupStore  # noqa: E402
from agentstream.contrib.django.views import webhook_receiver  # noqa: E402
from agentstream.server import ReferenceServer, WebhookConfig  # noqa: E402
from agentstream.webhooks import DeduplicatingRegistry  # noqa: E402

from .django_project.shipments.events import registry  # noqa: E402
from .django_project.shipments.models import HandledEvent  # noqa: E402
from .django_settings_type import SettingsWrapper  # noqa: E402
from .server_fixtures import Api, ServerFactory, wait_until  # noqa: E402
from .webhook_fixtures import (  # noqa: E402
    OTHER_SECRET,
    SECRET,
    Recorder,
    body_of,
    envelope,
    sign,
    subscribe,
    task_event_ids,
)

pytestmark = pytest.mark.django_db(transaction=True)

FAST = WebhookConfig(retry_scale=0.001)


class InAtomicBlock:
    """A handler that records whether it ran inside a transaction."""

    def __init__(self) -> None:
        self.seen: list[bool] = []
        self._lock = threading.Lock()

    def __call__(self, event: TaskEvent) -> None:
        with self._lock:
            self.seen.append(connection.in_atomic_block)


@contextlib.contextmanager
def registered(handler: Any) -> Iterator[Any]:
    """``handler`` among the project's handlers (its registry, REGISTRY) meanwhile."""
    registry.add(handler)
    try:
        yield handler
    finally:
        registry.remove(handler)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Counts every call of the project's handlers."""
    with registered(Recorder()) as found:
        yield found


@pytest.fixture
def atomic() -> Iterator[InAtomicBlock]:
    with registered(InAtomicBlock()) as found:
        yield found


@pytest.fixture
def server(servers: ServerFactory, settings: SettingsWrapper) -> ReferenceServer:
    """A reference server delivering webhooks quickly, and AGENTSTREAM with a secret."""
    srv = servers.start(webhooks=FAST)
    settings.AGENTSTREAM = {
        **settings.AGENTSTREAM,
        "BASE_URL": srv.url,
        "API_KEY": srv.api_key,
        "WEBHOOK_SECRETS": [SECRET],
    }
    return srv


def all_delivered(api: Api, subscription_id: str, count: int) -> bool:
    found = api.request("GET", f"/task-webhook-subscriptions/{subscription_id}/deliveries")
    statuses = [d["status"] for d in found.json()["data"]]
    return len(statuses) >= count and set(statuses) == {"delivered"}


def test_the_reference_server_delivers_a_task_to_the_django_view_once(
    live_server: LiveServer,
    server: ReferenceServer,
    servers: ServerFactory,
    recorder: Recorder,
    atomic: InAtomicBlock,
) -> None:
    api = servers.api(server)
    subscription = subscribe(api, f"{live_server.url}/webhooks/")
    task = api.create_task("ship it", eventsStreaming=True)
    expected = task_event_ids(api, task["id"])
    assert recorder.wait_for(lambda calls: set(calls) >= set(expected), timeout=20)
    assert wait_until(lambda: all_delivered(api, subscription["id"], len(expected)), timeout=20)
    assert recorder.calls == dict.fromkeys(expected, 1)
    # The project's own handler wrote each event; each id is recorded as handled.
    assert set(HandledEvent.objects.values_list("event_id", flat=True)) == set(expected)
    states = dict(WebhookDedup.objects.values_list("event_id", "state"))
    assert states == dict.fromkeys(expected, "handled")
    # Out of ATOMIC_REQUESTS' transaction: the claims were committed at once.
    assert atomic.seen == [False] * len(expected)


def test_by_stream_and_by_webhook_the_same_handlers_run_each_event_once(
    live_server: LiveServer,
    server: ReferenceServer,
    servers: ServerFactory,
    recorder: Recorder,
) -> None:
    api = servers.api(server)
    subscription = subscribe(api, f"{live_server.url}/webhooks/")
    client, listener = build_listener(heartbeat_seconds=1)
    assert isinstance(listener.registry, DeduplicatingRegistry)
    assert isinstance(listener.registry.store, DjangoDedupStore)  # the default: this database
    with client:
        listener.start()
        try:
            assert server.app.wait_open_streams(1, timeout=10)
            tasks = [api.create_task(f"twice {i}", eventsStreaming=True) for i in range(3)]
            expected = [eid for task in tasks for eid in task_event_ids(api, task["id"])]
            assert recorder.wait_for(lambda calls: set(calls) >= set(expected), timeout=30)
            assert wait_until(
                lambda: all_delivered(api, subscription["id"], len(expected)), timeout=30
            )
            assert wait_until(lambda: listener.cursor == max(expected), timeout=30)
        finally:
            listener.stop(10)
    assert recorder.calls == dict.fromkeys(expected, 1)  # whichever path came first
    assert HandledEvent.objects.count() == len(expected)


def test_the_view_answers_what_the_receiver_decides_and_runs_nothing_unproven(
    settings: SettingsWrapper, recorder: Recorder
) -> None:
    settings.AGENTSTREAM = {**settings.AGENTSTREAM, "WEBHOOK_SECRETS": [OTHER_SECRET, SECRET]}
    recorder.fail = lambda event: event.id == "evt_fails" and recorder.calls[event.id] == 1
    client = DjangoClient(enforce_csrf_checks=True)  # no CSRF token: the view is exempt
    body = body_of(envelope())

    def post(data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        answer = client.post(
            "/webhooks/", data=data, content_type="application/json", headers=headers
        )
        assert SECRET not in answer.content.decode()
        return answer.status_code, json.loads(answer.content)

    forged = {**sign(body), "webhook-signature": "v1," + "A" * 44}
    status, answer = post(body, forged)
    assert (status, answer["error"]["code"]) == (400, "no_matching_signature")
    tampered = body.replace(b"hello", b"HELLO")
    assert post(tampered, sign(body))[1]["error"]["code"] == "no_matching_signature"
    stale = sign(body, timestamp=1_000_000_000)
    assert post(body, stale)[1]["error"]["code"] == "timestamp_outside_tolerance"
    no_signature = {k: v for k, v in sign(body).items() if k != "webhook-signature"}
    assert post(body, no_signature)[1]["error"]["code"] == "missing_header"
    assert recorder.calls == {}
    assert post(body, sign(body)) == (200, {"status": "handled", "eventId": "evt_000000000001"})
    assert post(body, sign(body)) == (200, {"status": "duplicate", "eventId": "evt_000000000001"})
    assert post(body, sign(body, OTHER_SECRET))[1]["status"] == "duplicate"  # rotation
    failing = body_of(envelope("evt_fails"))
    status, answer = post(failing, sign(failing, msg_id="evt_fails"))
    assert (status, answer["status"]) == (500, "handler_failed")
    assert post(failing, sign(failing, msg_id="evt_fails"))[1]["status"] == "handled"
    assert recorder.calls == {"evt_000000000001": 1, "evt_fails": 2}
    huge = client.post("/webhooks/", data=b"x" * (1024 * 1024 + 1), content_type="application/json")
    assert (huge.status_code, json.loads(huge.content)["error"]["code"]) == (
        413,
        "payload_too_large",
    )
    assert client.get("/webhooks/").status_code == 405


def test_without_a_secret_the_view_asks_the_sender_to_retry(
    settings: SettingsWrapper, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    settings.AGENTSTREAM = {k: v for k, v in settings.AGENTSTREAM.items() if k != "WEBHOOK_SECRETS"}
    body = body_of(envelope())
    answer = DjangoClient().post(
        "/webhooks/", data=body, content_type="application/json", headers=sign(body)
    )
    assert answer.status_code == 503
    assert answer["Retry-After"] == "60"
    assert json.loads(answer.content)["error"]["code"] == "webhooks_not_configured"
    assert "WEBHOOK_SECRETS" in caplog.text
    assert recorder.calls == {}
    # Once configured (the setting changes), the next attempt is handled.
    settings.AGENTSTREAM = {**settings.AGENTSTREAM, "WEBHOOK_SECRETS": SECRET}
    again = DjangoClient().post(
        "/webhooks/", data=body, content_type="application/json", headers=sign(body)
    )
    assert again.status_code == 200
    assert recorder.calls == {"evt_000000000001": 1}


def test_the_receiver_follows_the_settings(settings: SettingsWrapper) -> None:
    settings.AGENTSTREAM = {**settings.AGENTSTREAM, "WEBHOOK_SECRETS": SECRET}
    first = webhook_receiver()
    assert webhook_receiver() is first  # one per process
    assert isinstance(first.registry.store, DjangoDedupStore)
    assert first.registry.registry is registry  # REGISTRY's handlers
    assert SECRET not in repr(first)
    settings.AGENTSTREAM = {
        **settings.AGENTSTREAM,
        "WEBHOOK_DEDUP": "memory",
        "WEBHOOK_TOLERANCE": 30,
    }
    second = webhook_receiver()
    assert second is not first
    assert second.verifier.tolerance == 30
    assert type(second.registry.store).__name__ == "MemoryDedupStore"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"WEBHOOK_SECRETS": {"a": 1}}, "WEBHOOK_SECRETS"),
        ({"WEBHOOK_SECRETS": ["whsec_***"]}, "base64"),
        ({"WEBHOOK_DEDUP": 7}, "WEBHOOK_DEDUP"),
        ({"WEBHOOK_TOLERANCE": -1}, "WEBHOOK_TOLERANCE"),
    ],
)
def test_a_wrong_webhook_setting_is_a_check_warning_that_names_it(
    settings: SettingsWrapper, extra: dict[str, Any], words: str
) -> None:
    settings.AGENTSTREAM = {**settings.AGENTSTREAM, "API_KEY": "k", **extra}
    messages = checks.check_settings()
    assert [m.id for m in messages] == ["agentstream.W002"]
    assert words in messages[0].msg
    assert "***" not in messages[0].msg


def test_the_webhook_keys_are_known_to_the_checks(settings: SettingsWrapper) -> None:
    settings.AGENTSTREAM = {
        **settings.AGENTSTREAM,
        "API_KEY": "k",
        "WEBHOOK_SECRETS": [SECRET],
        "WEBHOOK_DEDUP": "django",
        "WEBHOOK_TOLERANCE": 60,
        "WEBHOOK_ACCEPT_AGENTRAIL": False,
    }
    assert checks.check_settings() == []
