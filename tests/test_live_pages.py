"""Live task pages with Flask: ``AgentStream.live_response`` on a real werkzeug server,
read as a browser's EventSource reads it, against a real reference server.

Most tests make the simulated agent idle (one step an hour after
``task.created``) and publish the task's events themselves, so that they know
exactly what each page must show; the full simulated run is used where the
whole transcript matters. The browser itself is in test_live_page_browser.py.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
import requests
from flask import Flask, request

from agentstream import Client, EventType, Task
from agentstream._multiplex import SharedTaskStreams
from agentstream.contrib import _live
from agentstream.contrib.flask import AgentStream
from agentstream.server import ReferenceServer
from agentstream.server._agent import script_event_types
from agentstream.sse import ServerSentEvent, SSEParser

from .server_fixtures import Frame, ServerFactory, SSEReader, wait_until
from .wsgi_server import WSGIServer

IDLE_AGENT = 3600.0
QUICK_HEARTBEAT = 0.2
TEST_HEARTBEAT = 0.5


@dataclass
class Web:
    """The Flask app, served, with what its views saw."""

    url: str
    app: Flask
    extension: AgentStream
    server: ReferenceServer
    workers: list[threading.Thread] = field(default_factory=list)
    last_event_ids: list[Optional[str]] = field(default_factory=list)

    @property
    def streams(self) -> SharedTaskStreams:
        with self.app.app_context():
            return self.extension.client.task_streams

    @contextmanager
    def page(
        self, path: str, last_event_id: Optional[str] = None, **params: Any
    ) -> Iterator[SSEReader]:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        params.setdefault("heartbeat", TEST_HEARTBEAT)  # a closed page is noticed soon
        with requests.get(
            self.url + path, params=params, headers=headers, stream=True, timeout=(5, 5)
        ) as response:
            assert response.status_code == 200, response.text
            assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
            assert response.headers["Cache-Control"] == "no-cache"
            yield SSEReader(response)

    def get(self, path: str, last_event_id: Optional[str] = None) -> requests.Response:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        return requests.get(self.url + path, headers=headers, timeout=10)


def make_app(server: ReferenceServer, web: dict[str, Any]) -> tuple[Flask, AgentStream]:
    app = Flask(__name__)
    app.config.update(
        AGENTSTREAM_BASE_URL=server.url,
        AGENTSTREAM_API_KEY=server.api_key,
        AGENTSTREAM_CURSOR_STORE="memory",
    )
    extension = AgentStream(app)

    @app.get("/tasks/<task_id>/events")
    def task_events(task_id: str) -> Any:
        web["workers"].append(threading.current_thread())
        web["last_event_ids"].append(request.headers.get("Last-Event-ID"))
        return extension.live_response(
            task_id,
            heartbeat_seconds=float(request.args.get("heartbeat", "15")),
            retry_ms=500,
        )

    @app.get("/shipped/events")
    def shipped_events() -> Any:
        return extension.live_response(
            event_types=["task.shipped"],
            heartbeat_seconds=float(request.args.get("heartbeat", "15")),
        )

    return app, extension


@contextmanager
def serving(server: ReferenceServer) -> Iterator[Web]:
    seen: dict[str, Any] = {"workers": [], "last_event_ids": []}
    app, extension = make_app(server, seen)
    with WSGIServer(app) as wsgi:
        web = Web(wsgi.url, app, extension, server, seen["workers"], seen["last_event_ids"])
        try:
            yield web
            # Every page the test closed is noticed and its upstream thread ends.
            assert wait_until(lambda: not live_threads(), timeout=5), live_threads()
        finally:
            with app.app_context():
                extension.client.close()


@pytest.fixture
def idle(servers: ServerFactory) -> Iterator[Web]:
    """A page server on a reference server whose agent stays idle."""
    with serving(servers.start(agent_pace=IDLE_AGENT)) as web:
        yield web


@pytest.fixture
def running(servers: ServerFactory) -> Iterator[Web]:
    """A page server on a reference server whose agent runs each task at once."""
    with serving(servers.start()) as web:
        yield web


def api(web: Web) -> Client:
    """A client of the test's own (the app's is the one under test)."""
    return Client(web.server.url, web.server.api_key)


def chunk(client: Client, task: Task, text: str) -> str:
    return client.publish_event(EventType.CHUNK, text, task_id=task.id).id


def finish(client: Client, task: Task) -> str:
    snapshot = task.snapshot.model_dump(mode="json", by_alias=True)
    snapshot["status"] = "done"
    return client.publish_event(EventType.TASK_FINISHED, snapshot, task_id=task.id).id


def task_event_ids(client: Client, task: Task) -> list[str]:
    return [event.id for event in client.get_task(task.id).events()]


def event_ids(frames: list[Frame]) -> list[str]:
    ids = [frame.id for frame in frames]
    assert all(ids), frames
    return [i for i in ids if i is not None]


# -- what a page gets ---------------------------------------------------------------


def test_a_task_page_streams_the_whole_transcript_then_ends(running: Web) -> None:
    with api(running) as client:
        task = client.create_task("Research streams", events_streaming=True)
        with running.page(f"/tasks/{task.id}/events") as page:
            retry = page.next_frame()
            connected = page.next_frame()
            frames = page.rest()  # ends after task.finished
        expected = task_event_ids(client, task)
    assert retry is not None
    assert connected is not None
    assert page.raw_blocks[0] == b"retry: 500"  # how soon the browser reconnects
    assert connected.comments == ["connected"]
    assert [f.event for f in frames] == script_event_types()
    assert event_ids(frames) == expected
    for frame in frames:  # each frame: the event's id, its type, its JSON envelope
        envelope = frame.envelope
        assert envelope["id"] == frame.id
        assert envelope["type"] == frame.event
        assert envelope["taskId"] == task.id
    chunks = [f.envelope["data"] for f in frames if f.event == "message.chunk"]
    assert "".join(chunks) == (
        "The simulated agent looked into your request, called two tools, and wrote this answer."
    )
    assert frames[-1].envelope["data"]["status"] == "done"


def test_last_event_id_resumes_after_each_event_with_no_gap_and_no_duplicate(
    running: Web,
) -> None:
    with api(running) as client:
        task = client.create_task("Resume me", events_streaming=True)
        ids = task_event_ids(client, task)  # the whole run: the task is finished
    for index, last in enumerate(ids[:-1]):
        with running.page(f"/tasks/{task.id}/events", last_event_id=last) as page:
            assert event_ids(page.rest()) == ids[index + 1 :], f"after event {index}"
    # After its task.finished there is nothing more: 204, and EventSource stops.
    finished = running.get(f"/tasks/{task.id}/events", last_event_id=ids[-1])
    assert finished.status_code == 204
    assert finished.content == b""
    assert running.last_event_ids[-1] == ids[-1]


def test_a_browser_back_after_a_drop_misses_nothing_sent_while_it_was_away(idle: Web) -> None:
    with api(idle) as client:
        task = client.create_task("Live", events_streaming=True)
        with idle.page(f"/tasks/{task.id}/events") as page:
            seen = [page.next_event()]
            chunk(client, task, "one ")
            seen.append(page.next_event())
        # The connection dropped; the task goes on without the page.
        chunk(client, task, "two ")
        chunk(client, task, "three ")
        with idle.page(f"/tasks/{task.id}/events", last_event_id=seen[-1].id) as page:
            seen += page.events(2)
            chunk(client, task, "four ")  # live again
            seen.append(page.next_event())
            client.stop_task(task.id)  # task.updated, task.finished, and the end
            seen += page.rest()
        assert event_ids(seen) == task_event_ids(client, task)
    assert [f.envelope["data"] for f in seen if f.event == "message.chunk"] == [
        "one ",
        "two ",
        "three ",
        "four ",
    ]
    assert seen[-1].event == "task.finished"
    assert seen[-1].envelope["data"]["status"] == "cancelled"


def test_a_quiet_task_page_gets_heartbeats(idle: Web) -> None:
    with api(idle) as client:
        task = client.create_task("Quiet", events_streaming=True)
        with idle.page(f"/tasks/{task.id}/events", heartbeat=QUICK_HEARTBEAT) as page:
            assert page.next_event().event == "task.created"
            beats = [page.next_frame() for _ in range(3)]  # nothing else happens meanwhile
            assert all(b is not None and not b.is_event for b in beats), beats
            assert all(b is not None and b.comments == ["heartbeat"] for b in beats)
            chunk(client, task, "at last")
            assert page.next_event().envelope["data"] == "at last"


def test_a_browser_that_leaves_is_noticed_and_its_upstream_and_thread_freed(idle: Web) -> None:
    with api(idle) as client:
        task = client.create_task("Left open", events_streaming=True)
        with idle.page(f"/tasks/{task.id}/events", heartbeat=QUICK_HEARTBEAT) as page:
            assert page.next_event().event == "task.created"
            chunk(client, task, "on the shared stream")
            assert page.next_event().event == "message.chunk"
            (worker,) = idle.workers
            assert idle.streams.subscriptions() == 1
            pump = live_threads(task)
            assert len(pump) == 1
            assert worker.is_alive()
        # The browser is gone (its socket closed). Nothing more happens on the
        # task: the next heartbeats find out, and everything is released.
        assert wait_until(lambda: idle.streams.subscriptions() == 0, timeout=5)
        assert wait_until(lambda: not pump[0].is_alive() and not worker.is_alive(), timeout=5)
        assert idle.server.app.wait_open_streams(0, timeout=5)  # the shared one lingered 1 s
        assert not idle.streams.is_open
        # The task is unaffected: a new page follows it to its end.
        ids = [chunk(client, task, "later"), finish(client, task)]
        with idle.page(f"/tasks/{task.id}/events") as page:
            assert event_ids(page.rest())[-2:] == ids


def live_threads(task: Optional[Task] = None) -> list[threading.Thread]:
    """The pages' upstream threads (of ``task``'s pages, or all)."""
    name = f"agentstream-live-{task.id}" if task else "agentstream-live-"
    return [t for t in threading.enumerate() if t.name.startswith(name)]


def test_pages_of_many_tasks_share_one_upstream_connection(idle: Web) -> None:
    with api(idle) as client, contextlib.ExitStack() as stack:
        tasks = [client.create_task(f"page {i}", events_streaming=True) for i in range(4)]
        pages = [stack.enter_context(idle.page(f"/tasks/{t.id}/events")) for t in tasks]
        for page in pages:
            assert page.next_event().event == "task.created"
        for task, page in zip(tasks, pages):  # each page's next event moves it to the shared
            chunk(client, task, f"for {task.id}")
            frame = page.next_event()
            assert frame.envelope["taskId"] == task.id
        assert idle.streams.subscriptions() == 4
        assert idle.streams.connections_opened == 1
        assert idle.server.app.wait_open_streams(1)  # four pages, one upstream stream
        for task in tasks:
            finish(client, task)
        for task, page in zip(tasks, pages):
            rest = page.rest()
            assert [f.event for f in rest] == ["task.finished"]
            assert rest[0].envelope["taskId"] == task.id


def test_a_filter_page_follows_matching_events_from_the_live_end(running: Web) -> None:
    with api(running) as client:
        with running.page("/shipped/events") as page:
            first = client.create_task("ship one")
            second = client.create_task("ship two")
            shipped = page.events(2)
        assert [f.event for f in shipped] == ["task.shipped", "task.shipped"]
        # The two runs go on side by side: either may ship first.
        assert {f.envelope["taskId"] for f in shipped} == {first.id, second.id}
        # Back after the first: the second again, then what comes next.
        with running.page("/shipped/events", last_event_id=shipped[0].id) as page:
            assert page.next_event().id == shipped[1].id
            third = client.create_task("ship three")
            assert page.next_event().envelope["taskId"] == third.id


# -- what the browser never gets, and what it is refused ---------------------------------


def test_no_api_key_reaches_the_browser(running: Web) -> None:
    key = running.server.api_key
    with api(running) as client:
        task = client.create_task("Secret-free", events_streaming=True)
        plain = client.create_task("not streaming")
        with requests.get(f"{running.url}/tasks/{task.id}/events", timeout=10) as response:
            body = response.content
            headers = str(response.headers)
    assert body.count(b"event: ") == len(script_event_types())
    refusals = [
        running.get(f"/tasks/{plain.id}/events"),
        running.get("/tasks/task_unknown/events"),
        running.get(f"/tasks/{task.id}/events", last_event_id="not-a-cursor"),
    ]
    for answer in [body.decode(), headers, *(r.text + str(r.headers) for r in refusals)]:
        assert key not in answer
        assert "Bearer" not in answer
        assert "Authorization" not in answer


def test_what_the_browser_asks_wrong_gets_a_status_it_does_not_retry(running: Web) -> None:
    with api(running) as client:
        plain = client.create_task("not streaming")
        task = client.create_task("streaming", events_streaming=True)
    unknown = running.get("/tasks/task_unknown/events")
    assert (unknown.status_code, unknown.text) == (404, "no such task")
    not_streaming = running.get(f"/tasks/{plain.id}/events")
    assert not_streaming.status_code == 404
    assert "events_streaming" in not_streaming.text
    bad_cursor = running.get(f"/tasks/{task.id}/events", last_event_id="not-a-cursor")
    assert bad_cursor.status_code == 400
    assert "Last-Event-ID" in bad_cursor.text


# -- the framework-neutral stream -----------------------------------------------------


def test_a_slow_page_falls_behind_and_catches_up_without_losing_an_event(
    idle: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's hand-off and its shared-stream buffer both fill while its
    browser reads nothing: the pump waits, the buffer overflows, and the page
    catches up from its last event on its own request."""
    monkeypatch.setattr(_live, "HANDOFF_SIZE", 3)
    with api(idle) as client:
        client.task_streams.buffer_size = 5
        task = client.create_task("Flooded", events_streaming=True)
        live = _live.open_live_stream(client, task_id=task.id, heartbeat_seconds=30)
        try:
            frames = iter(live)
            parser = SSEParser()
            received: list[ServerSentEvent] = []

            def read_until(count: int) -> None:
                while len(received) < count:
                    for item in parser.feed(next(frames)):
                        if isinstance(item, ServerSentEvent):
                            received.append(item)

            read_until(1)
            chunk(client, task, "warm")  # moves it to the shared stream
            read_until(2)
            published = [chunk(client, task, f"{i} ") for i in range(40)]
            published.append(finish(client, task))
            read_until(43)
            assert list(frames) == []  # the stream ended after task.finished
        finally:
            live.close()
        assert [e.id for e in received] == task_event_ids(client, task)
        assert [e.id for e in received][2:] == published
        assert client.task_streams.subscriptions() == 0
