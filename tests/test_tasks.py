"""The task API and task.events() against the reference server."""

from __future__ import annotations

import time

import pytest

from agentstream import (
    Client,
    ConflictError,
    EventType,
    NotFoundError,
    RetryBudgetExhaustedError,
    RetryPolicy,
    TaskStatus,
    TaskUpdateEventType,
)
from agentstream.server import ReferenceServer


def test_create_get_reload(agentstream_client: Client) -> None:
    task = agentstream_client.create_task("research", events_streaming=True, metadata={"team": "a"})
    assert task.id.startswith("task_")
    assert (task.prompt, task.events_streaming, task.metadata) == ("research", True, {"team": "a"})
    assert task.status in set(TaskStatus)
    fetched = agentstream_client.get_task(task.id)
    assert fetched.id == task.id
    assert task.reload() is task
    assert task.created_at <= task.updated_at


def test_get_unknown_task_is_not_found(agentstream_client: Client) -> None:
    with pytest.raises(NotFoundError):
        agentstream_client.get_task("task_nope")


def test_idempotency_key_returns_the_same_task(agentstream_client: Client) -> None:
    first = agentstream_client.create_task("once", idempotency_key="k-1")
    again = agentstream_client.create_task("once", idempotency_key="k-1")
    assert first.id == again.id
    with pytest.raises(ConflictError):
        agentstream_client.create_task("different body", idempotency_key="k-1")


def test_events_of_a_non_streaming_task_is_a_value_error_at_once(
    agentstream_client: Client,
) -> None:
    task = agentstream_client.create_task("quiet")
    with pytest.raises(ValueError, match="events_streaming=True"):
        task.events()


def test_events_are_live_and_end_after_task_finished(agentstream_client: Client) -> None:
    task = agentstream_client.create_task("Long-running research task", events_streaming=True)
    text = ""
    types = []
    for event in task.events():
        types.append(event.type)
        if event.type == TaskUpdateEventType.Chunk:
            text += event.data
    assert types[0] == EventType.TASK_CREATED
    assert types[-1] == EventType.TASK_FINISHED
    assert text.strip()
    assert task.reload().status == TaskStatus.DONE
    assert task.is_finished
    assert task.finished_at is not None


def test_events_arrive_as_they_happen() -> None:
    with ReferenceServer(agent_pace=0.05) as server:
        client = Client(server.url, server.api_key)
        task = client.create_task("paced", events_streaming=True)
        arrivals = [time.monotonic() for _ in task.events()]
    # ~22 events 50 ms apart: a live iterator spreads them over the run, a
    # buffering one would deliver them in a lump at the end.
    assert arrivals[-1] - arrivals[0] > 0.5
    assert arrivals[len(arrivals) // 2] - arrivals[0] > 0.2


def test_breaking_out_closes_the_connection() -> None:
    with ReferenceServer(agent_pace=0.05) as server:
        client = Client(server.url, server.api_key)
        task = client.create_task("break early", events_streaming=True)
        for _event in task.events():
            assert server.app.open_streams == 1
            break
        assert server.app.wait_open_streams(0, timeout=5)


def test_stop_cancels_with_updated_then_finished() -> None:
    with ReferenceServer(agent_pace=0.05) as server:
        client = Client(server.url, server.api_key)
        task = client.create_task("stop me", events_streaming=True)
        events = task.events()
        first = next(events)
        assert first.type == EventType.TASK_CREATED
        task.stop()
        tail = list(events)
        with pytest.raises(ConflictError):
            task.stop()
    assert task.status == TaskStatus.CANCELLED
    assert [e.type for e in tail[-2:]] == [EventType.TASK_UPDATED, EventType.TASK_FINISHED]
    assert tail[-1].data.status == TaskStatus.CANCELLED


def test_a_network_error_surfaces_only_when_the_budget_is_spent() -> None:
    server = ReferenceServer(agent_pace=0.2).start()
    client = Client(
        server.url, server.api_key, retry=RetryPolicy(initial_delay=0.05, max_elapsed=1.0)
    )
    task = client.create_task("server goes away", events_streaming=True)
    events = task.events()
    assert next(events).type == EventType.TASK_CREATED
    server.stop()
    started = time.monotonic()
    with pytest.raises(RetryBudgetExhaustedError) as info:
        list(events)
    # It kept retrying within the budget: with delays capped at 0.05, 0.1, 0.2,
    # 0.4 s, the first four waits end before 1 s whatever the jitter draws.
    assert info.value.attempts >= 5
    assert time.monotonic() - started < 1.5
    assert "connect" in str(info.value.last_error)
