"""Many task.events() iterators over one upstream connection, on a real reference server.

The server's simulated agent is made idle (one step an hour after
``task.created``) so that each test publishes the events itself and knows
exactly what each iterator must get.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Optional

import pytest

from agentstream import Client, EventType, Task, TaskEvent
from agentstream._multiplex import IteratorStop
from agentstream.server import ReferenceServer

from .waiting import wait_until

IDLE_AGENT = 3600.0


@pytest.fixture
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer(agent_pace=IDLE_AGENT) as running:
        yield running


@pytest.fixture
def client(server: ReferenceServer) -> Iterator[Client]:
    with Client(server.url, server.api_key) as made:
        yield made


class Follower:
    """A thread that follows one task's events, optionally blocked after some of them."""

    def __init__(self, task: Task, *, pause_after: Optional[int] = None) -> None:
        self.task = task
        self.events: list[TaskEvent] = []
        self.error: Optional[BaseException] = None
        self.pause_after = pause_after
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.task.events():
                with self._lock:
                    self.events.append(event)
                if self.pause_after is not None and len(self.events) == self.pause_after:
                    self.paused.set()
                    self.resume.wait(30)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def count(self) -> int:
        with self._lock:
            return len(self.events)

    def ids(self) -> list[str]:
        with self._lock:
            return [e.id for e in self.events]


def publish_chunks(client: Client, task: Task, count: int, label: str = "") -> list[str]:
    return [
        client.publish_event(EventType.CHUNK, f"{label}{i} ", task_id=task.id).id
        for i in range(count)
    ]


def finish(client: Client, task: Task) -> str:
    snapshot = task.snapshot.model_dump(mode="json", by_alias=True)
    snapshot["status"] = "done"
    return client.publish_event(EventType.TASK_FINISHED, snapshot, task_id=task.id).id


def assert_exactly(follower: Follower, expected: list[str]) -> None:
    assert follower.error is None, follower.error
    assert follower.ids() == expected
    assert {e.task_id for e in follower.events} == {follower.task.id}
    sequences = [e.sequence for e in follower.events]
    assert sequences == sorted(set(sequences))
    assert follower.events[-1].type == EventType.TASK_FINISHED


def test_fifty_iterators_in_threads_share_one_connection(
    server: ReferenceServer, client: Client
) -> None:
    tasks = [client.create_task(f"t{i}", events_streaming=True) for i in range(50)]
    followers = [Follower(task) for task in tasks]
    assert wait_until(lambda: all(f.count() == 1 for f in followers), 20)
    assert wait_until(lambda: client.task_streams.subscriptions() == 50, 10)
    # Each iterator caught up on its own request; its next event moves it to the shared one.
    expected = {f.task.id: f.ids() for f in followers}
    for f in followers:
        expected[f.task.id] += publish_chunks(client, f.task, 1, "warm")
    assert wait_until(lambda: all(f.count() == 2 for f in followers), 20)
    assert server.app.wait_open_streams(1, timeout=10)
    for round_ in range(3):  # interleaved across tasks
        for f in followers:
            expected[f.task.id] += publish_chunks(client, f.task, 1, f"r{round_}-")
    for f in followers:
        expected[f.task.id].append(finish(client, f.task))
    for f in followers:
        assert f.done.wait(20)
        assert_exactly(f, expected[f.task.id])
    assert server.app.open_streams <= 1
    assert client.task_streams.connections_opened == 1
    # The shared connection closes a short while after the last iterator ended.
    assert server.app.wait_open_streams(0, timeout=5)
    assert not client.task_streams.is_open


def test_breaking_out_of_one_loop_frees_that_iterator_only(
    server: ReferenceServer, client: Client
) -> None:
    first = client.create_task("first", events_streaming=True)
    second = client.create_task("second", events_streaming=True)
    kept = Follower(second)
    assert wait_until(lambda: kept.count() == 1)
    kept_ids = kept.ids() + publish_chunks(client, second, 1, "a")
    assert wait_until(lambda: kept.count() == 2)
    assert wait_until(lambda: client.task_streams.subscriptions() == 1)

    broken = first.events()
    assert next(broken).type == EventType.TASK_CREATED
    publish_chunks(client, first, 1)
    assert next(broken).type == EventType.CHUNK  # now on the shared stream
    assert client.task_streams.subscriptions() == 2
    broken.close()  # what `break` does to a for loop's generator
    assert client.task_streams.subscriptions() == 1
    assert server.app.wait_open_streams(1)

    kept_ids += publish_chunks(client, second, 3, "b")
    kept_ids.append(finish(client, second))
    assert kept.done.wait(10)
    assert_exactly(kept, kept_ids)
    assert client.task_streams.connections_opened == 1


def test_a_slow_iterator_does_not_stall_the_others(
    server: ReferenceServer, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    client.task_streams.buffer_size = 5
    slow_task = client.create_task("slow", events_streaming=True)
    fast_task = client.create_task("fast", events_streaming=True)
    slow = Follower(slow_task, pause_after=2)
    fast = Follower(fast_task)
    assert wait_until(lambda: slow.count() == 1 and fast.count() == 1)
    slow_ids = slow.ids() + publish_chunks(client, slow_task, 1, "warm")
    fast_ids = fast.ids() + publish_chunks(client, fast_task, 1, "warm")
    assert slow.paused.wait(10)
    assert wait_until(lambda: client.task_streams.subscriptions() == 2)
    assert server.app.wait_open_streams(1)

    with caplog.at_level(logging.INFO, logger="agentstream._multiplex"):
        for i in range(20):  # four times what the slow iterator's buffer holds
            slow_ids += publish_chunks(client, slow_task, 1, f"s{i}-")
            fast_ids += publish_chunks(client, fast_task, 1, f"f{i}-")
        fast_ids.append(finish(client, fast_task))
        slow_ids.append(finish(client, slow_task))
        assert fast.done.wait(10)  # while the slow one is still blocked
        assert not slow.done.is_set()
        assert_exactly(fast, fast_ids)
        slow.resume.set()
        assert slow.done.wait(10)
    assert_exactly(slow, slow_ids)  # caught up from its cursor: nothing lost or repeated
    assert any("fell behind" in r.getMessage() for r in caplog.records)


def test_a_drop_mid_stream_resumes_with_nothing_lost_or_repeated(
    server: ReferenceServer, client: Client
) -> None:
    tasks = [client.create_task(f"d{i}", events_streaming=True) for i in range(3)]
    followers = [Follower(task) for task in tasks]
    assert wait_until(lambda: all(f.count() == 1 for f in followers), 10)
    assert wait_until(lambda: client.task_streams.subscriptions() == 3)
    expected = {f.task.id: f.ids() for f in followers}
    for f in followers:
        expected[f.task.id] += publish_chunks(client, f.task, 2, "before")
    assert wait_until(lambda: all(f.count() == 3 for f in followers), 10)
    assert server.app.wait_open_streams(1)

    assert server.drop_streams() == 1
    for f in followers:
        expected[f.task.id] += publish_chunks(client, f.task, 3, "after")
        expected[f.task.id].append(finish(client, f.task))
    for f in followers:
        assert f.done.wait(20)
        assert_exactly(f, expected[f.task.id])
    # The shared stream reconnected by itself, from its cursor: still one, reopened.
    assert client.task_streams.connections_opened == 1


def test_an_iterator_started_after_other_events_still_starts_at_its_tasks_first(
    server: ReferenceServer, client: Client
) -> None:
    early = client.create_task("early", events_streaming=True)
    early_ids = [e for e in publish_chunks(client, early, 3, "old")]
    running = Follower(client.create_task("running", events_streaming=True))
    assert wait_until(lambda: running.count() == 1)
    publish_chunks(client, running.task, 1)
    assert wait_until(lambda: running.count() == 2)
    assert client.task_streams.is_open  # the shared stream is past early's events

    late = Follower(early)
    assert wait_until(lambda: late.count() == 4)
    early_ids = late.ids()[:1] + early_ids
    assert late.ids() == early_ids
    early_ids += publish_chunks(client, early, 2, "new")
    early_ids.append(finish(client, early))
    assert late.done.wait(10)
    assert_exactly(late, early_ids)
    finish(client, running.task)
    assert running.done.wait(10)


class StoppableFollower(Follower):
    """A Follower whose iterator another thread can stop (an IteratorStop)."""

    def __init__(self, client: Client, task: Task) -> None:
        self.stop = IteratorStop()
        self.client = client
        super().__init__(task)

    def _run(self) -> None:
        try:
            events = self.client.task_streams.events(
                self.task.id, cursor=None, heartbeat_seconds=None, stop=self.stop
            )
            for event in events:
                with self._lock:
                    self.events.append(event)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


def test_an_iterator_stopped_from_another_thread_wakes_and_frees_its_place(
    server: ReferenceServer, client: Client
) -> None:
    kept = Follower(client.create_task("kept", events_streaming=True))
    assert wait_until(lambda: kept.count() == 1)
    kept_ids = kept.ids() + publish_chunks(client, kept.task, 1)
    assert wait_until(lambda: kept.count() == 2)  # the shared stream is open
    on_shared = StoppableFollower(client, client.create_task("busy", events_streaming=True))
    assert wait_until(lambda: on_shared.count() == 1)
    publish_chunks(client, on_shared.task, 1)
    assert wait_until(lambda: on_shared.count() == 2)  # it reads the shared buffer
    idle = client.create_task("idle", events_streaming=True)
    kept_ids += publish_chunks(client, kept.task, 1)  # the shared stream is past idle's event
    assert wait_until(lambda: kept.count() == 3)
    on_catch_up = StoppableFollower(client, idle)
    assert wait_until(lambda: on_catch_up.count() == 1)
    assert wait_until(lambda: client.task_streams.subscriptions() == 3)
    # on_catch_up waits on its own task stream (nothing new for it), on_shared
    # on the shared stream's buffer: both reads are blocked.
    assert server.app.wait_open_streams(2)
    assert not on_catch_up.done.is_set()
    assert not on_shared.done.is_set()

    on_catch_up.stop.set()
    assert on_catch_up.done.wait(5)
    assert server.app.wait_open_streams(1)  # its catch-up connection is closed
    on_shared.stop.set()
    assert on_shared.done.wait(5)
    assert client.task_streams.subscriptions() == 1
    assert on_catch_up.error is None
    assert on_shared.error is None
    assert on_catch_up.count() == 1
    assert on_shared.count() == 2

    kept_ids += publish_chunks(client, kept.task, 2)  # the others are untouched
    kept_ids.append(finish(client, kept.task))
    assert kept.done.wait(10)
    assert_exactly(kept, kept_ids)


def test_a_stop_set_before_the_iterator_starts_ends_it_at_once(client: Client) -> None:
    task = client.create_task("never read", events_streaming=True)
    stop = IteratorStop()
    stop.set()
    events = client.task_streams.events(task.id, cursor=None, heartbeat_seconds=None, stop=stop)
    assert list(events) == []
    assert client.task_streams.subscriptions() == 0
