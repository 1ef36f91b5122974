"""The Listener against the real reference server on 127.0.0.1.

Waits are on conditions (EventRecorder, Listener.wait_handled, threading
events), each with a bound; nothing sleeps to let something happen.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable

import pytest

from agentstream import (
    Client,
    EventType,
    Registry,
    RetryBudgetExhaustedError,
    RetryPolicy,
    SQLiteCursorStore,
    StreamOptions,
    TaskEvent,
    signals,
)
from agentstream.server import ReferenceServer
from agentstream.testing import EventRecorder, listening

from .scripted_server import ScriptedServer, never_answers


def publish_chunks(server: ReferenceServer, count: int, task_id: str) -> list[dict[str, Any]]:
    return [server.store.publish("message.chunk", f"part {n}", task_id) for n in range(count)]


def chunk_recorder() -> tuple[Registry, EventRecorder]:
    """A registry whose one handler records every ``message.chunk``."""
    recorder = EventRecorder()
    registry = Registry()
    registry.on("message.chunk")(recorder)
    return registry, recorder


def new_task(server: ReferenceServer) -> str:
    return str(server.store.create_task("test task", events_streaming=True)["id"])


def test_handlers_get_a_simulated_run_in_stream_order(
    agentstream_client: Client, agentstream_registry: Registry
) -> None:
    recorder = EventRecorder()
    shipped = EventRecorder()
    agentstream_registry.on_event(recorder)
    agentstream_registry.on("task.shipped")(shipped)
    with listening(agentstream_client, agentstream_registry) as listener:
        task = agentstream_client.create_task("do it", events_streaming=True)
        recorder.wait_for_type("task.finished")
        assert listener.wait_handled(recorder.events[-1])
        stats = listener.stats
    events = [e for e in recorder.events if e.task_id == task.id]
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)
    assert events[0].type == EventType.TASK_CREATED
    assert events[-1].type == EventType.TASK_FINISHED
    assert {str(t) for t in EventType} <= {str(e.type) for e in events}
    assert len(shipped.events) == 1
    assert stats.events_handled == len(recorder.events)
    assert stats.last_event_at is not None
    assert stats.reconnects == 0
    assert listener.cursor == events[-1].id


def test_wait_handled_returns_when_the_listener_ends(agentstream_client: Client) -> None:
    # A task-scoped stream ends after task.finished; a waiter for an event that
    # will never come is told at once, not at its timeout.
    task = agentstream_client.create_task("do it", events_streaming=True)
    listener = agentstream_client.listen(StreamOptions(task_id=task.id), registry=Registry())
    with listener:
        started = time.monotonic()
        assert not listener.wait_handled(10**9, timeout=30)
        assert time.monotonic() - started < 10
        assert listener.join(5)
    assert listener.error is None


def test_a_failing_handler_is_reported_and_the_stream_goes_on(
    agentstream_server: ReferenceServer, agentstream_client: Client, agentstream_registry: Registry
) -> None:
    failures: list[dict[str, Any]] = []
    recorder = EventRecorder()

    @agentstream_registry.on("message.chunk")
    def flaky(event: TaskEvent) -> None:
        if event.data == "part 1":
            raise ValueError("cannot handle part 1")

    agentstream_registry.on_event(recorder)
    task_id = new_task(agentstream_server)
    with listening(agentstream_client, agentstream_registry) as listener:

        def on_failure(sender: Any, **kwargs: Any) -> None:
            failures.append(kwargs)

        with signals.handler_failed.connected_to(on_failure, sender=listener):
            published = publish_chunks(agentstream_server, 3, task_id)
            recorder.wait_for(count=3)
            assert listener.wait_handled(published[-1]["sequence"])
        assert [e.data for e in recorder.events] == ["part 0", "part 1", "part 2"]
        assert listener.stats.handler_failures == 1
        assert failures[0]["event"].data == "part 1"
        assert failures[0]["handler"] is flaky
        assert listener.cursor == published[-1]["id"]


@pytest.mark.usefixtures("no_thread_leak")
def test_stop_is_prompt_mid_read_and_leaves_no_connection(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    with listening(agentstream_client, Registry()) as listener:
        assert agentstream_server.app.open_streams == 1
        started = time.monotonic()
        assert listener.stop(timeout=2.0)
        assert time.monotonic() - started < 1.0
    assert agentstream_server.app.wait_open_streams(0, timeout=5)


@pytest.mark.usefixtures("no_thread_leak")
def test_stop_is_prompt_mid_backoff() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    retrying = threading.Event()
    client = Client(
        f"http://127.0.0.1:{port}", "k", retry=RetryPolicy(initial_delay=30, jitter=False)
    )
    listener = client.listen(registry=Registry())

    def on_retrying(sender: Any, **kwargs: Any) -> None:
        retrying.set()

    with client, signals.retrying.connected_to(on_retrying, sender=listener):
        listener.start()
        assert retrying.wait(5)
        started = time.monotonic()
        assert listener.stop(timeout=2.0)
        assert time.monotonic() - started < 1.0


def test_stop_lets_the_running_handler_finish(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    registry = Registry()
    entered, release = threading.Event(), threading.Event()
    finished: list[str] = []

    @registry.on("message.chunk")
    def slow(event: TaskEvent) -> None:
        entered.set()
        release.wait(10)
        finished.append(str(event.data))

    task_id = new_task(agentstream_server)
    with listening(agentstream_client, registry) as listener:
        publish_chunks(agentstream_server, 3, task_id)
        assert entered.wait(5)
        assert not listener.stop(timeout=0.2)  # the handler is still running
        release.set()
        assert listener.join(5)
    assert finished == ["part 0"]  # it finished; the queued events were not started
    assert listener.stats.events_handled == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_a_handler_can_stop_its_own_listener(
    agentstream_server: ReferenceServer, agentstream_client: Client, workers: int
) -> None:
    # With one worker the handler runs on the reader thread, which stop() must
    # neither join nor leave reading.
    registry = Registry()
    handled: list[str] = []

    @registry.on("message.chunk")
    def stop_after_first(event: TaskEvent) -> None:
        handled.append(str(event.data))
        listener.stop()  # the listener below: assigned before any event comes

    task_id = new_task(agentstream_server)
    listener = agentstream_client.listen(registry=registry, workers=workers)
    try:
        with listening(agentstream_client, Registry()) as witness:
            listener.start()
            assert agentstream_server.app.wait_open_streams(2, timeout=5)
            published = publish_chunks(agentstream_server, 5, task_id)
            assert witness.wait_handled(published[-1]["sequence"])
        assert listener.join(5)
    finally:
        listener.stop()  # only if an assertion above failed: it stopped itself
    assert not listener.running
    assert listener.error is None
    assert agentstream_server.app.wait_open_streams(0, timeout=5)  # its connection is closed
    assert handled == ["part 0"]
    assert listener.cursor == published[0]["id"]


@pytest.mark.parametrize("workers", [1, 2])
def test_backpressure_makes_the_reader_wait_and_loses_nothing(
    agentstream_server: ReferenceServer, agentstream_client: Client, workers: int
) -> None:
    registry = Registry()
    release = threading.Event()
    seen: list[str] = []

    @registry.on("message.chunk")
    def slow(event: TaskEvent) -> None:
        release.wait(10)
        seen.append(str(event.data))

    task_id = new_task(agentstream_server)
    with listening(agentstream_client, registry, workers=workers, queue_size=2) as listener:
        published = publish_chunks(agentstream_server, 50, task_id)
        if workers > 1:
            # With the handler blocked, at most queue_size events wait: the reader is
            # held. The task's events all go to the first worker, the least loaded.
            waiting = listener._queues[0]
            with waiting._cond:
                assert waiting._cond.wait_for(lambda: waiting._events == 2, timeout=5)
            assert sum(q.qsize() for q in listener._queues) == 2
        # (With one worker the reader runs the handler itself: it reads nothing meanwhile.)
        release.set()
        assert listener.wait_handled(published[-1]["sequence"])
    assert seen == [f"part {n}" for n in range(50)]


def test_workers_keep_each_tasks_order_and_run_in_parallel(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    registry = Registry()
    both_running = threading.Barrier(2, timeout=5)
    per_task: dict[str, list[int]] = {}
    lock = threading.Lock()
    tasks = [new_task(agentstream_server) for _ in range(2)]

    @registry.on("message.chunk")
    def record(event: TaskEvent) -> None:
        if event.data == "part 0":
            both_running.wait()  # needs two handlers at once: fails with one worker
        with lock:
            per_task.setdefault(str(event.task_id), []).append(event.sequence)

    with listening(agentstream_client, registry, workers=4) as listener:
        for _ in range(20):
            for task_id in tasks:
                last = agentstream_server.store.publish("message.chunk", "part 0", task_id)
        assert listener.wait_handled(last["sequence"])
    for task_id in tasks:
        assert per_task[task_id] == sorted(per_task[task_id])
        assert len(per_task[task_id]) == 20
    assert not both_running.broken


def test_the_cursor_passes_only_events_whose_handlers_returned(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    registry = Registry()
    release = threading.Event()
    other_done = EventRecorder()
    blocked_task, other_task = new_task(agentstream_server), new_task(agentstream_server)

    @registry.on("message.chunk", task_id=blocked_task)
    def blocked(event: TaskEvent) -> None:
        release.wait(10)

    registry.on("message.chunk", task_id=other_task)(other_done)
    with listening(agentstream_client, registry, workers=2) as listener:
        before = agentstream_server.store.publish("message.chunk", "x", other_task)
        assert listener.wait_handled(before["sequence"])
        agentstream_server.store.publish("message.chunk", "slow", blocked_task)
        later = publish_chunks(agentstream_server, 3, other_task)
        other_done.wait_for(count=4)
        assert listener.cursor == before["id"]  # not past the event still being handled
        release.set()
        assert listener.wait_handled(later[-1]["sequence"])
        assert listener.cursor == later[-1]["id"]


def test_a_durable_cursor_resumes_after_the_last_handled_event(
    tmp_path: Any, agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    store = SQLiteCursorStore(tmp_path / "cursors.sqlite3")
    task_id = new_task(agentstream_server)
    registry, _ = chunk_recorder()
    with listening(agentstream_client, registry, cursor_store=store, name="billing") as listener:
        published = publish_chunks(agentstream_server, 3, task_id)
        assert listener.wait_handled(published[-1]["sequence"])
    assert store.load("billing") == published[-1]["id"]
    missed = publish_chunks(agentstream_server, 2, task_id)  # while nobody listens
    registry, second = chunk_recorder()
    with listening(agentstream_client, registry, cursor_store=store, name="billing") as listener:
        assert listener.wait_handled(missed[-1]["sequence"])
    assert [e.id for e in second.events] == [e["id"] for e in missed]
    store.close()


def test_drops_are_resumed_with_nothing_lost_or_repeated(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    registry, recorder = chunk_recorder()
    task_id = new_task(agentstream_server)
    with listening(agentstream_client, registry) as listener:
        published = publish_chunks(agentstream_server, 5, task_id)
        recorder.wait_for(count=5)
        agentstream_server.drop_streams()
        published += publish_chunks(agentstream_server, 5, task_id)
        assert listener.wait_handled(published[-1]["sequence"])
        assert listener.stats.reconnects >= 1
    assert [e.id for e in recorder.events] == [e["id"] for e in published]


def test_many_tasks_over_one_connection(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    registry = Registry()
    recorders = {}
    tasks = [new_task(agentstream_server) for _ in range(200)]
    for task_id in tasks:
        recorders[task_id] = EventRecorder()
        registry.on_event(task_id=task_id)(recorders[task_id])
    with listening(agentstream_client, registry) as listener:
        for round_number in range(3):
            for task_id in tasks:
                last = agentstream_server.store.publish("message.chunk", str(round_number), task_id)
        assert listener.wait_handled(last["sequence"], timeout=30)
        assert listener.stats.reconnects == 0
        assert agentstream_server.app.open_streams == 1
    for task_id in tasks:
        events = recorders[task_id].events
        assert [e.data for e in events] == ["0", "1", "2"]
        assert {e.task_id for e in events} == {task_id}


def test_heartbeats_and_connection_signals(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    seen: list[str] = []
    got_heartbeat = threading.Event()

    def on_connected(sender: Any, **kwargs: Any) -> None:
        seen.append("connected")

    def on_heartbeat(sender: Any, **kwargs: Any) -> None:
        if kwargs["comment"] == "heartbeat":
            got_heartbeat.set()

    options = StreamOptions(heartbeat_seconds=1)
    listener = agentstream_client.listen(options, registry=Registry())
    connected = signals.connected.connected_to(on_connected, sender=listener)
    heartbeats = signals.heartbeat.connected_to(on_heartbeat, sender=listener)
    with connected, heartbeats, listener:
        assert got_heartbeat.wait(5)
    assert seen == ["connected"]


def test_a_raising_signal_receiver_is_logged_and_the_others_still_run(
    agentstream_server: ReferenceServer,
    agentstream_client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Both receivers raise, so whichever blinker calls first (its order is
    # undefined), the other one running shows the first did not stop it.
    called: list[str] = []
    both_called = threading.Event()

    def broken(name: str) -> Callable[..., None]:
        def receiver(sender: Any, **kwargs: Any) -> None:
            called.append(name)
            if len(called) == 2:
                both_called.set()
            raise RuntimeError(f"receiver bug in {name}")

        return receiver

    listener = agentstream_client.listen(registry=Registry())
    first = signals.connected.connected_to(broken("first"), sender=listener)
    second = signals.connected.connected_to(broken("second"), sender=listener)
    with first, second, listener:
        assert both_called.wait(5)
    assert sorted(called) == ["first", "second"]
    assert listener.error is None
    assert "receiver bug in first" in caplog.text
    assert "receiver bug in second" in caplog.text


def test_a_spent_retry_budget_fails_the_listener() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    failed: list[BaseException] = []
    client = Client(
        f"http://127.0.0.1:{port}", "k", retry=RetryPolicy(initial_delay=0.01, max_attempts=1)
    )
    listener = client.listen(registry=Registry())

    def on_failed(sender: Any, **kwargs: Any) -> None:
        failed.append(kwargs["error"])

    gives_up = pytest.raises(SystemExit, match="stopped: gave up after 2 failed attempt")
    with client, signals.failed.connected_to(on_failed, sender=listener), gives_up:
        listener.run_forever()
    assert isinstance(listener.error, RetryBudgetExhaustedError)
    assert failed == [listener.error]
    assert not listener.running


def test_listener_misuse_is_reported_clearly(agentstream_client: Client) -> None:
    with pytest.raises(ValueError, match="workers"):
        agentstream_client.listen(workers=0)
    listener = agentstream_client.listen(registry=Registry())
    with listener, pytest.raises(RuntimeError, match="already started"):
        listener.start()
    assert "stopped" in repr(listener)


def test_the_batch_queue_keeps_order_and_never_holds_more_than_its_capacity() -> None:
    from agentstream.listener import _BatchQueue

    events = _BatchQueue(3)
    stopping = threading.Event()
    batches = [list(range(n * 10, n * 10 + size)) for n, size in enumerate([1, 5, 2, 7, 3])]
    received: list[int] = []
    peak = [0]

    def consume() -> None:
        while True:
            peak[0] = max(peak[0], events.qsize())
            batch = events.get()
            if batch is None:
                return
            received.extend(batch)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for batch in batches:
        assert events.put(batch, stopping)
    events.put_stop()
    consumer.join(5)
    assert received == [n for batch in batches for n in batch]
    assert peak[0] <= 3
    full = _BatchQueue(1)
    assert full.put([1], stopping)
    stopping.set()
    assert not full.put([2], stopping)  # no room, and stopping: gives up instead of waiting


def test_the_stored_cursor_wins_over_the_options_cursor(
    tmp_path: Any, agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    store = SQLiteCursorStore(tmp_path / "c.sqlite3")
    task_id = new_task(agentstream_server)
    first = publish_chunks(agentstream_server, 3, task_id)
    options = StreamOptions(event_types=["message.chunk"], cursor=first[0]["id"])
    registry, seen = chunk_recorder()
    with listening(agentstream_client, registry, options, cursor_store=store) as listener:
        assert listener.wait_handled(first[-1]["sequence"])
    later = publish_chunks(agentstream_server, 2, task_id)
    with listening(agentstream_client, registry, options, cursor_store=store) as listener:
        assert listener.wait_handled(later[-1]["sequence"])
    assert [e.id for e in seen.events] == [e["id"] for e in first[1:] + later]
    store.close()


def test_listening_again_on_the_same_client_resumes(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    registry, seen = chunk_recorder()
    task_id = new_task(agentstream_server)
    with listening(agentstream_client, registry) as listener:
        before = publish_chunks(agentstream_server, 2, task_id)
        assert listener.wait_handled(before[-1]["sequence"])
    missed = publish_chunks(agentstream_server, 2, task_id)  # nobody listening
    with listening(agentstream_client, registry) as listener:
        assert listener.wait_handled(missed[-1]["sequence"])
    assert [e.id for e in seen.events] == [e["id"] for e in before + missed]


@pytest.mark.usefixtures("no_thread_leak")
def test_stop_is_prompt_while_the_server_has_not_answered_yet(server: ScriptedServer) -> None:
    server.script("/task-events/stream", never_answers)
    client = Client(server.url(""), "k")
    try:
        listener = client.listen(StreamOptions(heartbeat_seconds=30), registry=Registry()).start()
        server.wait_for_requests(1)
        started = time.monotonic()
        assert listener.stop(timeout=2.0)
        assert time.monotonic() - started < 1.0
    finally:
        client.close()
