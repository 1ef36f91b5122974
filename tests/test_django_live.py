"""Live task pages with Django: ``agentstream.contrib.django.live.live_response`` in the
test project (tests/django_project), served by pytest-django's live server (Django's
threaded WSGI server), against a real reference server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import pytest
import requests

from .django_project import setup

setup()

from pytest_django.live_server_helper import LiveServer  # noqa: E402

from agentstream import Client, EventType  # noqa: E402
from agentstream.contrib.django.live import get_client  # noqa: E402
from agentstream.server import ReferenceServer  # noqa: E402
from agentstream.server._agent import script_event_types  # noqa: E402

from .django_project.shipments.views import LIVE_PAGE_WORKERS  # noqa: E402
from .django_settings_type import SettingsWrapper  # noqa: E402
from .server_fixtures import Frame, ServerFactory, SSEReader, wait_until  # noqa: E402

IDLE_AGENT = 3600.0


def point_at(settings: SettingsWrapper, server: ReferenceServer) -> None:
    settings.AGENTSTREAM = {
        **settings.AGENTSTREAM,
        "BASE_URL": server.url,
        "API_KEY": server.api_key,
    }


@pytest.fixture
def running(servers: ServerFactory, settings: SettingsWrapper) -> ReferenceServer:
    server = servers.start()
    point_at(settings, server)
    return server


@pytest.fixture
def idle(servers: ServerFactory, settings: SettingsWrapper) -> ReferenceServer:
    server = servers.start(agent_pace=IDLE_AGENT)
    point_at(settings, server)
    return server


@contextmanager
def page(
    live_server: LiveServer, path: str, last_event_id: Optional[str] = None, **params: Any
) -> Iterator[SSEReader]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with requests.get(
        live_server.url + path, params=params, headers=headers, stream=True, timeout=(5, 5)
    ) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        # Django's server sends no chunked encoding: read byte by byte, or urllib3
        # waits for a whole buffer (or the end) before handing anything over.
        yield SSEReader(response, chunk_size=1)


def ids(frames: list[Frame]) -> list[Optional[str]]:
    return [frame.id for frame in frames]


def test_a_django_page_streams_a_task_and_resumes_after_each_event(
    running: ReferenceServer, live_server: LiveServer
) -> None:
    with Client(running.url, running.api_key) as client:
        task = client.create_task("From Django", events_streaming=True)
        with page(live_server, f"/tasks/{task.id}/events/") as reader:
            frames = reader.rest()
        expected = [event.id for event in client.get_task(task.id).events()]
    assert [f.event for f in frames] == script_event_types()
    assert ids(frames) == expected
    assert frames[-1].envelope["data"]["status"] == "done"
    for index in (0, 7, len(expected) - 2):  # first, mid-transcript, before task.finished
        with page(live_server, f"/tasks/{task.id}/events/", last_event_id=expected[index]) as r:
            assert ids(r.rest()) == expected[index + 1 :]
    after_the_end = requests.get(
        f"{live_server.url}/tasks/{task.id}/events/",
        headers={"Last-Event-ID": expected[-1]},
        timeout=10,
    )
    assert after_the_end.status_code == 204


def test_a_quiet_django_page_gets_heartbeats_and_is_freed_when_the_browser_leaves(
    idle: ReferenceServer, live_server: LiveServer
) -> None:
    with Client(idle.url, idle.api_key) as client:
        task = client.create_task("Quiet", events_streaming=True)
        streams = get_client().task_streams
        with page(live_server, f"/tasks/{task.id}/events/", heartbeat=0.2) as reader:
            assert reader.next_event().event == "task.created"
            beats = [reader.next_frame() for _ in range(2)]
            assert all(b is not None and b.comments == ["heartbeat"] for b in beats), beats
            client.publish_event(EventType.CHUNK, "hello", task_id=task.id)
            assert reader.next_event().envelope["data"] == "hello"
            assert streams.subscriptions() == 1
            (pump,) = [t for t in threading.enumerate() if t.name == f"agentstream-live-{task.id}"]
            worker = LIVE_PAGE_WORKERS[-1]
            assert worker.is_alive()
        # The browser is gone: within two heartbeats its upstream place, its
        # upstream thread and the server's worker thread are all released.
        assert wait_until(lambda: streams.subscriptions() == 0, timeout=5)
        assert wait_until(lambda: not pump.is_alive() and not worker.is_alive(), timeout=5)
        assert idle.app.wait_open_streams(0, timeout=5)


def test_a_django_page_refuses_what_it_cannot_stream_and_never_shows_the_key(
    running: ReferenceServer, live_server: LiveServer
) -> None:
    with Client(running.url, running.api_key) as client:
        task = client.create_task("Keyless", events_streaming=True)
    with requests.get(f"{live_server.url}/tasks/{task.id}/events/", timeout=10) as response:
        body = response.text + str(response.headers)
    unknown = requests.get(f"{live_server.url}/tasks/task_unknown/events/", timeout=10)
    bad = requests.get(
        f"{live_server.url}/tasks/{task.id}/events/",
        headers={"Last-Event-ID": "not-a-cursor"},
        timeout=10,
    )
    assert (unknown.status_code, unknown.text) == (404, "no such task")
    assert bad.status_code == 400
    for answer in (body, unknown.text, bad.text):
        assert running.api_key not in answer
        assert "Bearer" not in answer
    assert body.count("event: ") == len(script_event_types())


def test_a_django_filter_page_follows_shipped_events_from_the_live_end(
    running: ReferenceServer, live_server: LiveServer
) -> None:
    client = Client(running.url, running.api_key)
    with client, page(live_server, "/shipped/events/", heartbeat=0.2) as reader:
        task = client.create_task("ship it")
        shipped = reader.next_event()
    assert shipped.event == "task.shipped"
    assert shipped.envelope["taskId"] == task.id
    # A filter page never ends by itself: leaving it frees its upstream thread.
    assert wait_until(lambda: not live_threads(), timeout=5)


def live_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("agentstream-live-")]
