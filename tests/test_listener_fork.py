"""A listener started before ``os.fork()``: never a zombie in the child; with
``restart_after_fork=True`` it moves to the children (what ``gunicorn --preload``
needs: the master must not keep the lease and handle every event itself)."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentstream import (
    Client,
    Listener,
    ListenerState,
    Registry,
    SQLiteCursorStore,
    StreamOptions,
    TaskEvent,
)
from agentstream.server import ReferenceServer
from agentstream.testing import FAST_RETRY

from .server_fixtures import wait_until
from .test_file_cursor_store import run_in_fork

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def started_listener(
    server: ReferenceServer, tmp_path: Path, *, restart_after_fork: bool
) -> tuple[Client, SQLiteCursorStore, str, str]:
    """A listener holding the lease on 'forked', connected; its records file."""
    task_id = str(server.store.create_task("t", events_streaming=True)["id"])
    start = str(server.store.publish("message.chunk", "start", task_id)["id"])
    records = tmp_path / "records"
    registry = Registry()

    @registry.on("message.chunk")
    def record(event: TaskEvent) -> None:
        with open(records, "a") as handle:
            handle.write(f"{os.getpid()} {event.id}\n")

    client = Client(server.url, server.api_key, retry=FAST_RETRY)
    store = SQLiteCursorStore(tmp_path / "c.sqlite3")
    listener = client.listen(
        StreamOptions(event_types=["message.chunk"], cursor=start),
        registry=registry,
        cursor_store=store,
        name="forked",
        lease_ttl=2.0,
        restart_after_fork=restart_after_fork,
    )
    listener.start()
    assert wait_until(lambda: listener.state == ListenerState.CONNECTED, timeout=10)
    STARTED.append(listener)
    return client, store, task_id, str(records)


STARTED: list[Listener] = []


@pytest.fixture(autouse=True)
def stop_listeners() -> Iterator[None]:
    yield
    while STARTED:
        STARTED.pop().stop(5)


def handled_by(records: str) -> list[tuple[int, str]]:
    if not os.path.exists(records):
        return []
    with open(records) as handle:
        return [(int(pid), event_id) for pid, event_id in map(str.split, handle)]


def test_restart_after_fork_moves_the_listener_to_the_child(
    tmp_path: Path, agentstream_server: ReferenceServer
) -> None:
    client, store, task_id, records = started_listener(
        agentstream_server, tmp_path, restart_after_fork=True
    )
    (listener,) = STARTED
    parent = os.getpid()

    ready_read, ready_write = os.pipe()

    def child() -> int:
        # The child's own copy started again: it takes the lease the parent
        # released before the fork, and handles what the parent publishes now.
        if not wait_until(lambda: listener.state == ListenerState.CONNECTED, timeout=10):
            return 3
        held = store.lease_holder("forked")
        if held is None or f":{os.getpid()}:" not in held[0]:
            return 4
        os.write(ready_write, b"x")
        if not wait_until(lambda: listener.stats.events_handled == 1, timeout=10):
            return 5
        listener.stop(5)
        return 0

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            code = child()
        finally:
            os._exit(code)
    os.close(ready_write)
    ready, _, _ = select.select([ready_read], [], [], 20)
    if ready and os.read(ready_read, 1) == b"x":
        agentstream_server.store.publish("message.chunk", "for the child", task_id)
    os.close(ready_read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's copy stopped before the fork and handled nothing after it.
    assert listener.state == ListenerState.STOPPED
    (handled,) = handled_by(records)
    assert handled[0] != parent
    client.close()
    store.close()


def test_without_restart_after_fork_the_parent_runs_on_and_the_child_copy_is_new(
    tmp_path: Path, agentstream_server: ReferenceServer
) -> None:
    client, store, task_id, records = started_listener(
        agentstream_server, tmp_path, restart_after_fork=False
    )
    (listener,) = STARTED

    def child() -> int:
        if listener.state != ListenerState.NEW or listener.running:
            return 3  # a zombie: says it runs, with threads that did not survive
        return 0

    assert run_in_fork(child) == 0
    assert listener.state == ListenerState.CONNECTED
    event = agentstream_server.store.publish("message.chunk", "in the parent", task_id)
    assert listener.wait_handled(event["sequence"])
    assert handled_by(records) == [(os.getpid(), event["id"])]
    client.close()
    store.close()


def test_a_fork_without_pythons_fork_hooks_leaves_no_zombie_in_the_child(
    tmp_path: Path, agentstream_server: ReferenceServer
) -> None:
    """uWSGI forks its workers from C, so Python's fork hooks do not run there
    (unless ``py-call-osafterfork``): the child's copy is noticed by its pid
    when it is asked about, and says ``new``, never that it runs."""
    import ctypes

    client, store, task_id, records = started_listener(
        agentstream_server, tmp_path, restart_after_fork=False
    )
    (listener,) = STARTED
    result_read, result_write = os.pipe()
    # libc's fork() with the GIL held, as uWSGI's master calls it: none of
    # os.register_at_fork's hooks run.
    pid = ctypes.PyDLL(None).fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            seen = f"{listener.running} {listener.state.value} {listener.health().state.value}"
            os.write(result_write, seen.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(result_write)
    ready, _, _ = select.select([result_read], [], [], 20)
    seen = os.read(result_read, 100).decode() if ready else "no answer from the child"
    os.close(result_read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seen == "False new new"
    # The parent's copy runs on.
    assert listener.state == ListenerState.CONNECTED
    event = agentstream_server.store.publish("message.chunk", "in the parent", task_id)
    assert listener.wait_handled(event["sequence"])
    assert handled_by(records) == [(os.getpid(), event["id"])]
    client.close()
    store.close()
