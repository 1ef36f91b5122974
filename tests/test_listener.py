"""The Listener against the real reference server on 127.0.0.1.

Waits are on conditions (EventRecorder, Listener.wait_handled, threading
events), each with a bound; nothing sleeps to let something happen.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable, Optional

import pytest

from agentstream import (
    AuthenticationError,
    Client,
    CursorMissingError,
    EventType,
    LeaseLostError,
    Listener,
    MemoryCursorStore,
    Registry,
    RetryPolicy,
    SQLiteCursorStore,
    StoreResetError,
    StreamOptions,
    TaskEvent,
    signals,
)
from agentstream.health import ListenerState
from agentstream.server import ReferenceServer
from agentstream.testing import EventRecorder, listening

from .scripted_server import ScriptedServer, never_answers
from .waiting import wait_until


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
            # With the handler blocked, at most queue_size events are read ahead
            # of the cursor: the reader is held, however many the server sent.
            assert wait_until(lambda: listener.health().pending == 2)
            for _ in range(20):
                assert listener.health().pending == 2
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


def test_an_error_that_is_not_retried_fails_the_listener(server: ScriptedServer) -> None:
    unauthorized = b'{"error": {"code": "unauthorized", "message": "bad key"}}'
    server.script("/task-events/stream", lambda conn: conn.respond(401, unauthorized))
    failed: list[BaseException] = []
    client = Client(server.url(""), "k")
    listener = client.listen(registry=Registry())

    def on_failed(sender: Any, **kwargs: Any) -> None:
        failed.append(kwargs["error"])

    fails = pytest.raises(SystemExit, match="failed: AuthenticationError")
    with client, signals.failed.connected_to(on_failed, sender=listener), fails:
        listener.run_forever()
    assert isinstance(listener.error, AuthenticationError)
    assert failed == [listener.error]
    assert not listener.running
    health = listener.health()
    assert health.state == ListenerState.FAILED
    assert health.last_error is not None
    assert "AuthenticationError" in health.last_error
    assert not health.ok


def test_listener_misuse_is_reported_clearly(agentstream_client: Client) -> None:
    with pytest.raises(ValueError, match="workers"):
        agentstream_client.listen(workers=0)
    listener = agentstream_client.listen(registry=Registry())
    with listener, pytest.raises(RuntimeError, match="already started"):
        listener.start()
    assert "stopped" in repr(listener)


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


# -- durable cursors off the event path -------------------------------------------


class CountingStore(SQLiteCursorStore):
    """An SQLite store that records its writes."""

    def __init__(self, path: Any) -> None:
        super().__init__(path)
        self.saves: list[str] = []

    def save(self, name: str, cursor: str) -> None:
        super().save(name, cursor)
        self.saves.append(cursor)

    def save_fenced(self, name: str, cursor: str, token: int) -> None:
        super().save_fenced(name, cursor, token)
        self.saves.append(cursor)


def test_the_cursor_is_saved_at_most_every_save_interval_and_on_stop(
    tmp_path: Any, agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    store = CountingStore(tmp_path / "c.sqlite3")
    registry, recorder = chunk_recorder()
    task_id = new_task(agentstream_server)
    started = time.monotonic()
    with listening(
        agentstream_client, registry, cursor_store=store, name="n", save_interval=0.2
    ) as listener:
        published = publish_chunks(agentstream_server, 300, task_id)
        assert listener.wait_handled(published[-1]["sequence"])
        handled_in = time.monotonic() - started
        # Saved by the keeper within an interval, without any event coming.
        assert wait_until(lambda: store.load("n") == published[-1]["id"], timeout=2)
    elapsed = time.monotonic() - started
    assert len(recorder.events) == 300
    # One write per interval at most (plus the one on stop), not one per event.
    assert len(store.saves) <= elapsed / 0.2 + 2, (len(store.saves), handled_in)
    assert store.saves == sorted(store.saves, key=lambda c: [e["id"] for e in published].index(c))
    assert listener.cursor_saved == published[-1]["id"]
    store.close()


def test_a_clean_stop_saves_the_last_handled_event_at_once(
    tmp_path: Any, agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    store = CountingStore(tmp_path / "c.sqlite3")
    registry, _ = chunk_recorder()
    task_id = new_task(agentstream_server)
    # An interval longer than the test: only the stop can have saved it.
    with listening(
        agentstream_client, registry, cursor_store=store, name="n", save_interval=3600
    ) as listener:
        published = publish_chunks(agentstream_server, 5, task_id)
        assert listener.wait_handled(published[-1]["sequence"])
        assert store.saves == []
    assert store.saves == [published[-1]["id"]]
    assert listener.health().cursor_saved == published[-1]["id"]
    store.close()


# -- never giving up, and saying so -----------------------------------------------------


def test_a_listener_has_no_retry_budget_by_default() -> None:
    with Client("http://127.0.0.1:9", "k") as client:
        policy = client.listen(registry=Registry()).retry_policy
        assert policy.max_elapsed is None
        assert policy.max_attempts is None
        assert policy.max_delay == client.retry.max_delay  # the client's backoff
        # ... while one-shot streams keep the client's budget.
        assert client.retry.max_elapsed == RetryPolicy.default().max_elapsed == 300.0
    assert Listener(client).retry_policy == RetryPolicy.forever()


@pytest.mark.usefixtures("no_thread_leak")
def test_a_listener_outlives_the_retry_budget_and_delivers_once_the_server_is_up(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # nobody listens here until the server starts
    budget = 0.3
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.05, max_elapsed=budget)
    server = ReferenceServer(tmp_path / "log.sqlite3", port=port)
    # The server's key, known before it starts: its api_key is made at construction.
    client = Client(f"http://127.0.0.1:{port}", server.api_key, retry=policy)
    registry, recorder = chunk_recorder()
    listener = client.listen(StreamOptions(event_types=["message.chunk"]), registry=registry)
    caplog.set_level("INFO", logger="agentstream.listener")
    started = time.monotonic()
    try:
        listener.start()
        # Past the client's budget, and still retrying.
        assert wait_until(
            lambda: (
                time.monotonic() - started > 3 * budget
                and listener.health().connection_failures >= 10
            )
        )
        health = listener.health()
        assert health.state == ListenerState.RETRYING
        assert health.ok
        assert listener.running
        assert listener.error is None
        assert health.last_error is not None
        assert "ConnectionLostError" in health.last_error
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1  # the first failure, then at most one a minute
        assert "lost its connection" in warnings[0].getMessage()
        with server:
            # An unscoped stream starts at the live end: publish once it is connected.
            assert wait_until(lambda: listener.state == ListenerState.CONNECTED, timeout=10)
            task_id = new_task(server)
            published = publish_chunks(server, 5, task_id)
            assert recorder.wait_for(count=5, timeout=10)
            assert listener.wait_handled(published[-1]["sequence"])
            assert listener.state == ListenerState.CONNECTED
            listener.stop(5)
    finally:
        listener.stop(5)
        client.close()
    assert [e.id for e in recorder.events] == [e["id"] for e in published]
    back = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert any("connected again" in line for line in back), back
    assert server.api_key not in caplog.text


def test_health_and_states_through_a_listeners_life(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    registry, _recorder = chunk_recorder()
    listener = agentstream_client.listen(registry=registry)
    assert listener.state == ListenerState.NEW
    states = []
    with listening(agentstream_client, registry) as listener:
        states.append(listener.state)
        task_id = new_task(agentstream_server)
        published = publish_chunks(agentstream_server, 3, task_id)
        assert listener.wait_handled(published[-1]["sequence"])
        health = listener.health()
    states.append(listener.state)
    assert states == [ListenerState.CONNECTED, ListenerState.STOPPED]
    assert health.state == ListenerState.CONNECTED
    assert health.ok
    assert health.events_handled == 4
    assert health.pending == 0
    assert health.cursor == published[-1]["id"]
    assert health.lag is not None
    assert 0 <= health.lag < 30
    assert health.connection_failures == 0
    assert health.reconnects == 0
    assert not listener.health().ok  # stopped
    assert "stopped" in repr(listener)


# -- handlers that kill their thread -----------------------------------------------------


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.usefixtures("no_thread_leak")
def test_a_handler_raising_systemexit_fails_the_listener_never_silently(
    agentstream_server: ReferenceServer, agentstream_client: Client, workers: int
) -> None:
    registry = Registry()
    handled: list[str] = []

    @registry.on("message.chunk")
    def exits(event: TaskEvent) -> None:
        if event.data == "part 2":
            raise SystemExit(3)
        handled.append(str(event.data))

    task_id = new_task(agentstream_server)
    with listening(agentstream_client, registry, workers=workers) as listener:
        published = publish_chunks(agentstream_server, 5, task_id)
        assert listener.join(10)  # it ends by itself
    assert listener.state == ListenerState.FAILED
    assert not listener.running
    assert isinstance(listener.error, SystemExit)
    assert handled == ["part 0", "part 1"]  # nothing after the event that killed it
    assert listener.cursor == published[1]["id"]  # part 2 is not marked handled
    with pytest.raises(SystemExit, match="failed: SystemExit"):
        listener.run_forever()


def test_a_signal_receiver_raising_keyboardinterrupt_fails_the_listener(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    def interrupts(sender: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    task_id = new_task(agentstream_server)
    receiver = signals.event_received.connected_to(interrupts)
    with listening(agentstream_client, Registry(), workers=2) as listener, receiver:
        publish_chunks(agentstream_server, 1, task_id)
        assert listener.join(10)
    assert listener.state == ListenerState.FAILED
    assert isinstance(listener.error, KeyboardInterrupt)


# -- several workers ---------------------------------------------------------------------


def test_stop_then_start_with_several_workers_handles_nothing_twice_and_loses_nothing(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    registry = Registry()
    release = threading.Event()
    slow_started = threading.Event()
    lock = threading.Lock()
    handled: list[str] = []
    slow_task, fast_task = new_task(agentstream_server), new_task(agentstream_server)

    @registry.on("message.chunk")
    def record(event: TaskEvent) -> None:
        if event.task_id == slow_task and event.data == "part 0":
            slow_started.set()
            release.wait(10)
        with lock:
            handled.append(event.id)

    first = agentstream_client.listen(registry=registry, workers=3, name="w")
    with listening(agentstream_client, Registry()) as witness:
        first.start()
        assert agentstream_server.app.wait_open_streams(2, timeout=5)
        slow = publish_chunks(agentstream_server, 3, slow_task)
        assert slow_started.wait(5)
        fast = publish_chunks(agentstream_server, 6, fast_task)  # handled beyond the gap
        assert witness.wait_handled(fast[-1]["sequence"])
        assert wait_until(lambda: len(handled) == 6)  # all of the fast task's events
        stopper = threading.Thread(target=first.stop, args=(10,))
        stopper.start()
        assert wait_until(lambda: first.state == ListenerState.STOPPING)
        release.set()  # the slow handler returns; the stop finishes what is needed
        stopper.join(10)
    assert not first.running
    # The cursor covers every event handled: none of them is handled again.
    assert first.cursor_saved == handled[-1] or first.cursor_saved in handled
    later = publish_chunks(agentstream_server, 2, fast_task)
    with listening(agentstream_client, registry, workers=3, name="w") as second:
        assert second.wait_handled(later[-1]["sequence"])
    everything = [e["id"] for e in slow + fast + later]
    assert sorted(handled) == sorted(everything)  # each exactly once
    assert len(handled) == len(set(handled))


def test_a_stuck_handler_holds_only_its_task_and_memory_stays_bounded(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    registry = Registry()
    release = threading.Event()
    stuck_entered = threading.Event()
    other_done: list[int] = []
    lock = threading.Lock()
    stuck_task = new_task(agentstream_server)
    others = [new_task(agentstream_server) for _ in range(5)]

    @registry.on("message.chunk")
    def handle(event: TaskEvent) -> None:
        if event.task_id == stuck_task:
            stuck_entered.set()
            release.wait(20)
            return
        with lock:
            other_done.append(event.sequence)

    queue_size = 10
    with listening(agentstream_client, registry, workers=4, queue_size=queue_size) as listener:
        stuck = agentstream_server.store.publish("message.chunk", "stuck", stuck_task)
        assert stuck_entered.wait(5)
        last = None
        for n in range(60):
            last = agentstream_server.store.publish("message.chunk", str(n), others[n % 5])
        # The other tasks go on, on the free workers, up to queue_size events
        # read ahead of the cursor (which cannot pass the stuck event).
        assert wait_until(lambda: len(other_done) == queue_size - 1)
        for _ in range(20):
            health = listener.health()
            assert health.pending <= queue_size
            assert len(other_done) == queue_size - 1
        assert listener.cursor != stuck["id"]
        release.set()
        assert last is not None
        assert listener.wait_handled(last["sequence"])
    assert sorted(other_done) == other_done or len(other_done) == 60
    assert len(other_done) == 60


# -- handler context, start/stop races ---------------------------------------------------------


def test_handler_context_is_entered_around_each_events_handlers(
    agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    import contextlib

    trail: list[str] = []
    registry = Registry()

    @registry.on("message.chunk")
    def handle(event: TaskEvent) -> None:
        trail.append(f"handle {event.data}")

    @contextlib.contextmanager
    def context(event: TaskEvent) -> Any:
        trail.append(f"enter {event.data}")
        yield
        trail.append(f"exit {event.data}")

    task_id = new_task(agentstream_server)
    with listening(agentstream_client, registry, handler_context=context) as listener:
        published = publish_chunks(agentstream_server, 2, task_id)
        assert listener.wait_handled(published[-1]["sequence"])
    assert trail == [
        "enter part 0",
        "handle part 0",
        "exit part 0",
        "enter part 1",
        "handle part 1",
        "exit part 1",
    ]


@pytest.mark.usefixtures("no_thread_leak")
def test_stop_racing_start_on_another_thread_is_prompt(server: ScriptedServer) -> None:
    server.script("/task-events/stream", never_answers)
    client = Client(server.url(""), "k")
    try:
        for _ in range(20):
            listener = client.listen(registry=Registry())
            starter = threading.Thread(target=listener.start)
            starter.start()
            started = time.monotonic()
            assert listener.stop(timeout=2.0)
            starter.join(2)
            assert time.monotonic() - started < 1.0
            assert not listener.running
        never_started = client.listen(registry=Registry())
        assert never_started.stop(1)
        never_started.start()  # stopped first: starts nothing
        assert never_started.state == ListenerState.STOPPED
        assert not never_started.running
    finally:
        client.close()


# -- leases: one consumer per name --------------------------------------------------------


class PartitionedStore(SQLiteCursorStore):
    """A real SQLite store whose renewals can be made to fail, as when the
    network to the store is cut while the process runs on."""

    def __init__(self, path: Any) -> None:
        super().__init__(path)
        self.cut = threading.Event()

    def _reach(self) -> None:
        if self.cut.is_set():
            raise ConnectionError("store unreachable")

    def acquire(self, name: str, holder: str, ttl: float) -> Optional[int]:
        self._reach()
        return super().acquire(name, holder, ttl)

    def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        self._reach()
        return super().renew(name, holder, token, ttl)

    def save_fenced(self, name: str, cursor: str, token: int) -> None:
        self._reach()
        super().save_fenced(name, cursor, token)


def test_two_listeners_with_one_name_and_store_one_consumes_the_other_stands_by(
    tmp_path: Any, agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    store = SQLiteCursorStore(tmp_path / "c.sqlite3")
    handled: dict[str, list[str]] = {"first": [], "second": []}

    def registry_for(key: str) -> Registry:
        registry = Registry()
        registry.on("message.chunk")(lambda event: handled[key].append(event.id))
        return registry

    task_id = new_task(agentstream_server)
    start = publish_chunks(agentstream_server, 1, task_id)[0]["id"]
    options = StreamOptions(event_types=["message.chunk"], cursor=start)
    kwargs: dict[str, Any] = {"cursor_store": store, "name": "billing", "lease_ttl": 2.0}
    first = agentstream_client.listen(options, registry=registry_for("first"), **kwargs)
    second = agentstream_client.listen(options, registry=registry_for("second"), **kwargs)
    with first:
        assert wait_until(lambda: first.state == ListenerState.CONNECTED)
        with second:
            assert wait_until(lambda: second.state == ListenerState.STANDBY)
            assert agentstream_server.app.open_streams == 1  # the standby does not connect
            before = publish_chunks(agentstream_server, 5, task_id)
            assert first.wait_handled(before[-1]["sequence"])
            assert first.health().lease_token is not None
            started = time.monotonic()
            first.stop(5)  # a clean stop releases the lease at once
            assert wait_until(lambda: second.state == ListenerState.CONNECTED, timeout=5)
            assert time.monotonic() - started < 1.0
            after = publish_chunks(agentstream_server, 5, task_id)
            assert second.wait_handled(after[-1]["sequence"])
    assert handled["first"] == [e["id"] for e in before]
    assert handled["second"] == [e["id"] for e in after]  # resumed from the saved cursor
    store.close()


def test_a_holder_that_cannot_renew_stops_dispatching_before_its_lease_can_expire(
    tmp_path: Any, agentstream_server: ReferenceServer, agentstream_client: Client
) -> None:
    store = PartitionedStore(tmp_path / "c.sqlite3")
    registry, recorder = chunk_recorder()
    task_id = new_task(agentstream_server)
    start = publish_chunks(agentstream_server, 1, task_id)[0]["id"]
    ttl = 1.2
    listener = agentstream_client.listen(
        StreamOptions(event_types=["message.chunk"], cursor=start),
        registry=registry,
        cursor_store=store,
        name="n",
        lease_ttl=ttl,
    )
    with listener:
        assert wait_until(lambda: listener.state == ListenerState.CONNECTED)
        first = publish_chunks(agentstream_server, 3, task_id)
        assert listener.wait_handled(first[-1]["sequence"])
        token = listener.health().lease_token
        store.cut.set()
        cut_at = time.monotonic()
        assert wait_until(lambda: listener.state == ListenerState.STANDBY, timeout=5)
        stopped_after = time.monotonic() - cut_at
        # Stopped before the store could give the lease to anyone else.
        holder = store.lease_holder("n")
        assert holder is not None
        assert holder[1] == token
        assert stopped_after < ttl
        handled_before = len(recorder.events)
        publish_chunks(agentstream_server, 2, task_id)  # nobody dispatches these now
        assert listener.health().lease_token is None
        store.cut.clear()  # the store is back: it takes the lease again and resumes
        assert wait_until(lambda: listener.state == ListenerState.CONNECTED, timeout=5)
        assert recorder.wait_for(count=handled_before + 2)
    assert listener.health().lease_token is None  # released on stop
    store.close()


def test_a_stale_holder_cannot_move_the_cursor(tmp_path: Any) -> None:
    store = SQLiteCursorStore(tmp_path / "c.sqlite3")
    old = store.acquire("n", "old", 0.2)
    assert old is not None
    assert wait_until(lambda: store.acquire("n", "new", 5.0) is not None)
    new = store.lease_holder("n")
    assert new is not None
    store.save_fenced("n", "evt_new", new[1])
    with pytest.raises(LeaseLostError):
        store.save_fenced("n", "evt_old", old)
    assert store.load("n") == "evt_new"
    store.close()


def test_a_store_that_lost_its_data_fails_the_listener_instead_of_skipping(
    agentstream_client: Client,
) -> None:
    class ResetStore(MemoryCursorStore):
        def acquire(self, name: str, holder: str, ttl: float) -> Optional[int]:
            raise StoreResetError(name, 1, 7)

    listener = agentstream_client.listen(registry=Registry(), cursor_store=ResetStore())
    with listener:
        assert listener.join(5)
    assert listener.state == ListenerState.FAILED
    assert isinstance(listener.error, StoreResetError)


def test_on_missing_cursor_error_refuses_to_start_at_the_live_end(
    tmp_path: Any, agentstream_client: Client
) -> None:
    store = SQLiteCursorStore(tmp_path / "empty.sqlite3")
    listener = agentstream_client.listen(
        registry=Registry(), cursor_store=store, on_missing_cursor="error"
    )
    with listener:
        assert listener.join(5)
    assert isinstance(listener.error, CursorMissingError)
    assert listener.state == ListenerState.FAILED
    with pytest.raises(ValueError, match="on_missing_cursor"):
        agentstream_client.listen(on_missing_cursor="skip")
    store.close()


def test_a_missing_cursor_is_never_silent(
    tmp_path: Any, agentstream_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteCursorStore(tmp_path / "empty.sqlite3")
    with listening(agentstream_client, Registry(), cursor_store=store):
        pass
    assert "has no cursor for it" in caplog.text
    assert "starting at the live end" in caplog.text
    store.close()


def test_a_sequence_reset_reaches_the_listeners_signal_and_the_event_is_handled(
    server: ScriptedServer,
) -> None:
    from .test_stream import envelope, frame, restarted, stream_and_hold

    server.script(
        "/task-events/stream",
        stream_and_hold(frame(envelope(7)), frame(restarted(1))),
    )
    resets: list[tuple[str, int]] = []
    registry = Registry()
    handled: list[str] = []
    registry.on_event(lambda event: handled.append(event.id))
    with Client(server.url(""), "k") as client:
        listener = client.listen(registry=registry)

        def on_reset(sender: Any, **kwargs: Any) -> None:
            resets.append((kwargs["event"].id, kwargs["previous_sequence"]))

        with signals.sequence_reset.connected_to(on_reset, sender=listener), listener:
            assert wait_until(lambda: len(handled) == 2)
    assert handled == ["evt_7", "evt_after_reset_1"]
    assert resets == [("evt_after_reset_1", 7)]
