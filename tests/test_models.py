"""Typed events: every type of docs/events.md from wire JSON, aliases, fallbacks, bad envelopes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from agentstream.errors import InvalidEventError, StreamError
from agentstream.event_types import EventType, TaskEventType, TaskStatus, TaskUpdateEventType
from agentstream.models import (
    Analyze,
    AuthEvent,
    AuthRequiredEvent,
    MessageChunkEvent,
    PlanStep,
    PlanUpdated,
    PlanUpdatedEvent,
    ReasoningAnalyzeEvent,
    ReasoningThinkEvent,
    SubAgentTrigger,
    SubAgentTriggeredEvent,
    TaskCompacted,
    TaskCompactedEvent,
    TaskCreatedEvent,
    TaskEvent,
    TaskEventActor,
    TaskEventLinks,
    TaskFinishedEvent,
    TaskReviewedData,
    TaskReviewedEvent,
    TaskShippedData,
    TaskShippedEvent,
    TaskSnapshot,
    TaskUpdatedData,
    TaskUpdatedEvent,
    Think,
    ToolCallCompletedEvent,
    ToolCallRequest,
    ToolCallRequestedEvent,
    ToolCallResult,
    parse_event,
    payload_model_for,
)

BASE = "http://127.0.0.1:8787"

SNAPSHOT: dict[str, Any] = {
    "id": "task_01JD8Z3K9Q",
    "identifier": "AS-42",
    "status": "todo",
    "prompt": "Long-running research task",
    "result": None,
    "error": None,
    "eventsStreaming": True,
    "metadata": {"team": "research", "priority": 2},
    "version": 1,
    "createdAt": "2026-11-20T09:59:58.001Z",
    "updatedAt": "2026-11-20T09:59:58.001Z",
    "finishedAt": None,
}

FINISHED_SNAPSHOT: dict[str, Any] = {
    **SNAPSHOT,
    "status": "done",
    "result": "Three sources agree on 1998.",
    "version": 12,
    "updatedAt": "2026-11-20T10:04:00.250Z",
    "finishedAt": "2026-11-20T10:04:00.250Z",
}

LINKS: dict[str, Any] = {"task": f"{BASE}/tasks/task_01JD8Z3K9Q"}

PAYLOADS: dict[str, Any] = {
    "task.created": SNAPSHOT,
    "task.updated": {
        "taskId": "task_01JD8Z3K9Q",
        "taskIdentifier": "AS-42",
        "status": "in_progress",
        "previousStatus": "todo",
        "changedFields": ["status"],
        "actor": {"id": "agent_research", "role": "agent"},
        "summary": "Agent started working on the task.",
        "availableActions": ["stop"],
        "links": LINKS,
        "task": {**SNAPSHOT, "status": "in_progress", "version": 2},
    },
    "task.reviewed": {
        "taskId": "task_01JD8Z3K9Q",
        "taskIdentifier": "AS-42",
        "status": "in_review",
        "reviewOutcome": "changes_requested",
        "reviewer": {"id": "user_ana", "role": "reviewer"},
        "summary": "Cite the primary source.",
        "availableActions": ["ship", "stop"],
        "links": {**LINKS, "reviewFeedback": f"{BASE}/tasks/task_01JD8Z3K9Q/review"},
    },
    "task.shipped": {
        "taskId": "task_01JD8Z3K9Q",
        "taskIdentifier": "AS-42",
        "status": "done",
        "shipStatus": "succeeded",
        "operationId": "op_7f3a",
        "targetEnvironment": "production",
        "summary": "Shipped to production.",
        "availableActions": [],
        "links": {
            **LINKS,
            "ciStatus": f"{BASE}/ci/op_7f3a",
            "shipOperation": f"{BASE}/operations/op_7f3a",
        },
    },
    "task.finished": FINISHED_SNAPSHOT,
    "message.chunk": "The second source disagrees with the first ",
    "auth.required": {
        "provider": "github",
        "authUrl": "https://github.com/login/oauth/authorize?client_id=abc",
        "message": "Log in to GitHub so the agent can read the repository.",
        "scopes": ["repo"],
        "expiresInSeconds": 600,
    },
    "tool_call.requested": {
        "operationId": "op_1",
        "toolCallId": "call_1",
        "toolName": "web_search",
        "payload": {"query": "first flight date", "limit": 3},
        "reasoning": "Need a primary source.",
    },
    "tool_call.completed": {
        "operationId": "op_1",
        "toolCallId": "call_2",
        "toolName": "fetch_url",
        "payload": {"url": "https://example.invalid/"},
        "result": {"error": "DNS lookup failed", "code": 502},
        "isError": True,
    },
    "subagent.triggered": {
        "subTaskId": "task_01JD8Z4000",
        "agentId": "agent_fact_checker",
        "prompt": "Check the dates in the draft.",
    },
    "reasoning.think": {"title": "Sources", "content": "Two sources disagree."},
    "reasoning.analyze": {"title": "Dates", "content": "1998 appears three times."},
    "plan.updated": {
        "steps": [
            {"id": "s1", "title": "Search", "status": "done"},
            {"id": "s2", "title": "Compare", "status": "in_progress"},
            {"id": "s3", "title": "Write", "status": "pending"},
            {"id": "s4", "title": "Fetch archive", "status": "failed"},
        ]
    },
    "task.compacted": {
        "summary": "Research so far: three sources.",
        "tokensBefore": 120000,
        "tokensAfter": 8000,
    },
}

EXPECTED: dict[str, tuple[type[TaskEvent], Any]] = {
    "task.created": (TaskCreatedEvent, TaskSnapshot),
    "task.updated": (TaskUpdatedEvent, TaskUpdatedData),
    "task.reviewed": (TaskReviewedEvent, TaskReviewedData),
    "task.shipped": (TaskShippedEvent, TaskShippedData),
    "task.finished": (TaskFinishedEvent, TaskSnapshot),
    "message.chunk": (MessageChunkEvent, str),
    "auth.required": (AuthRequiredEvent, AuthEvent),
    "tool_call.requested": (ToolCallRequestedEvent, ToolCallRequest),
    "tool_call.completed": (ToolCallCompletedEvent, ToolCallResult),
    "subagent.triggered": (SubAgentTriggeredEvent, SubAgentTrigger),
    "reasoning.think": (ReasoningThinkEvent, Think),
    "reasoning.analyze": (ReasoningAnalyzeEvent, Analyze),
    "plan.updated": (PlanUpdatedEvent, PlanUpdated),
    "task.compacted": (TaskCompactedEvent, TaskCompacted),
}

OCCURRED = datetime(2026, 11, 20, 10, 0, 0, 123000, tzinfo=timezone.utc)


def envelope(event_type: str, data: Any, **overrides: Any) -> dict[str, Any]:
    """A wire envelope, as the reference server sends it."""
    env: dict[str, Any] = {
        "id": "evt_000000000000002a_3f9c1e",
        "type": event_type,
        "sequence": 42,
        "occurredAt": "2026-11-20T10:00:00.123Z",
        "taskId": "task_01JD8Z3K9Q",
        "organizationId": "org_01JD8Z3K9Q",
        "taskVersion": 7,
        "traceId": None,
        "data": data,
    }
    env.update(overrides)
    return env


_SAMPLE = object()


def wire(event_type: str, data: Any = _SAMPLE, **overrides: Any) -> str:
    """The SSE ``data`` field of an event (compact JSON); ``data`` defaults to the sample."""
    if data is _SAMPLE:
        data = PAYLOADS[event_type]
    return json.dumps(envelope(event_type, data, **overrides), separators=(",", ":"))


def assert_envelope(event: TaskEvent) -> None:
    """The envelope fields of ``envelope()``, typed."""
    assert event.id == "evt_000000000000002a_3f9c1e"
    assert event.sequence == 42
    assert event.occurred_at == OCCURRED
    assert event.task_id == "task_01JD8Z3K9Q"
    assert event.organization_id == "org_01JD8Z3K9Q"
    assert event.task_version == 7
    assert event.trace_id is None


# --- every type of the vocabulary ---------------------------------------------------------


def test_the_tables_cover_the_whole_vocabulary() -> None:
    assert set(PAYLOADS) == set(EXPECTED) == {member.value for member in EventType}


@pytest.mark.parametrize("wire_type", sorted(EXPECTED))
def test_every_type_parses_to_its_typed_event(wire_type: str) -> None:
    event = parse_event(wire(wire_type))
    event_class, payload_class = EXPECTED[wire_type]
    assert type(event) is event_class
    assert isinstance(event, TaskEvent)
    assert isinstance(event.data, payload_class)
    assert event.type is EventType(wire_type)
    assert event.type == wire_type
    assert event.validation_error is None
    assert event.raw == PAYLOADS[wire_type]
    assert_envelope(event)


def test_task_created_snapshot() -> None:
    event = parse_event(wire("task.created"))
    task = event.data
    assert isinstance(task, TaskSnapshot)
    assert task.id == "task_01JD8Z3K9Q"
    assert task.identifier == "AS-42"
    assert task.status is TaskStatus.TODO
    assert not task.status.is_terminal
    assert task.prompt == "Long-running research task"
    assert task.result is None
    assert task.error is None
    assert task.events_streaming is True
    assert task.metadata == {"team": "research", "priority": 2}
    assert task.version == 1
    assert task.created_at == datetime(2026, 11, 20, 9, 59, 58, 1000, tzinfo=timezone.utc)
    assert task.updated_at == task.created_at
    assert task.finished_at is None


def test_task_updated_agentrail_fields_and_snapshot() -> None:
    data = parse_event(wire("task.updated")).data
    assert isinstance(data, TaskUpdatedData)
    assert data.task_id == "task_01JD8Z3K9Q"
    assert data.task_identifier == "AS-42"
    assert data.status is TaskStatus.IN_PROGRESS
    assert data.previous_status is TaskStatus.TODO
    assert data.changed_fields == ["status"]
    assert data.actor == TaskEventActor(id="agent_research", role="agent")
    assert data.summary == "Agent started working on the task."
    assert data.available_actions == ["stop"]
    assert data.links == TaskEventLinks(task=f"{BASE}/tasks/task_01JD8Z3K9Q")
    assert data.links.review_feedback is None
    assert data.links.ci_status is None
    assert data.links.ship_operation is None
    assert isinstance(data.task, TaskSnapshot)
    assert data.task.status is TaskStatus.IN_PROGRESS
    assert data.task.version == 2


def test_task_updated_without_snapshot_and_null_previous_status() -> None:
    payload = {**PAYLOADS["task.updated"], "previousStatus": None}
    del payload["task"]
    data = parse_event(wire("task.updated", payload)).data
    assert isinstance(data, TaskUpdatedData)
    assert data.task is None
    assert data.previous_status is None


def test_task_reviewed() -> None:
    data = parse_event(wire("task.reviewed")).data
    assert isinstance(data, TaskReviewedData)
    assert data.review_outcome == "changes_requested"
    assert data.reviewer.id == "user_ana"
    assert data.reviewer.role == "reviewer"
    assert data.status is TaskStatus.IN_REVIEW
    assert data.links.review_feedback == f"{BASE}/tasks/task_01JD8Z3K9Q/review"
    assert data.available_actions == ["ship", "stop"]


def test_task_shipped() -> None:
    data = parse_event(wire("task.shipped")).data
    assert isinstance(data, TaskShippedData)
    assert data.ship_status == "succeeded"
    assert data.operation_id == "op_7f3a"
    assert data.target_environment == "production"
    assert data.status is TaskStatus.DONE
    assert data.available_actions == []
    assert data.links.ci_status == f"{BASE}/ci/op_7f3a"
    assert data.links.ship_operation == f"{BASE}/operations/op_7f3a"


def test_task_finished_terminal_snapshot() -> None:
    data = parse_event(wire("task.finished")).data
    assert isinstance(data, TaskSnapshot)
    assert data.status is TaskStatus.DONE
    assert data.status.is_terminal
    assert data.result == "Three sources agree on 1998."
    assert data.finished_at == datetime(2026, 11, 20, 10, 4, 0, 250000, tzinfo=timezone.utc)


def test_message_chunk_data_is_the_text() -> None:
    event = parse_event(wire("message.chunk"))
    assert event.type == TaskUpdateEventType.Chunk
    assert event.data == "The second source disagrees with the first "
    assert type(event.data) is str


def test_auth_required_keeps_extra_keys() -> None:
    data = parse_event(wire("auth.required")).data
    assert isinstance(data, AuthEvent)
    assert data.provider == "github"
    assert data.auth_url == "https://github.com/login/oauth/authorize?client_id=abc"
    assert data.message == "Log in to GitHub so the agent can read the repository."
    assert data.model_extra == {"scopes": ["repo"], "expiresInSeconds": 600}
    assert getattr(data, "scopes") == ["repo"]  # noqa: B009 - an extra key, not a field


def test_auth_required_message_is_optional() -> None:
    data = parse_event(wire("auth.required", {"provider": "google", "authUrl": "https://x"})).data
    assert isinstance(data, AuthEvent)
    assert data.message is None
    assert data.model_extra == {}


def test_tool_call_requested_xpander_names() -> None:
    req = parse_event(wire("tool_call.requested")).data
    assert isinstance(req, ToolCallRequest)
    assert req.tool_name == "web_search"
    assert req.payload == {"query": "first flight date", "limit": 3}
    assert req.reasoning == "Need a primary source."
    assert req.operation_id == "op_1"
    assert req.tool_call_id == "call_1"


def test_tool_call_payload_is_any_json_and_reasoning_optional() -> None:
    payload = {"operationId": "op_1", "toolCallId": "c", "toolName": "t", "payload": [1, "a"]}
    req = parse_event(wire("tool_call.requested", payload)).data
    assert isinstance(req, ToolCallRequest)
    assert req.payload == [1, "a"]
    assert req.reasoning is None


def test_tool_call_completed_xpander_names() -> None:
    res = parse_event(wire("tool_call.completed")).data
    assert isinstance(res, ToolCallResult)
    assert res.tool_name == "fetch_url"
    assert res.payload == {"url": "https://example.invalid/"}
    assert res.result == {"error": "DNS lookup failed", "code": 502}
    assert res.is_error is True
    assert res.tool_call_id == "call_2"
    assert res.operation_id == "op_1"


def test_tool_call_completed_success_with_scalar_result() -> None:
    payload = {
        "operationId": "op_1",
        "toolCallId": "call_1",
        "toolName": "web_search",
        "payload": {"query": "q"},
        "result": "3 results",
        "isError": False,
    }
    res = parse_event(wire("tool_call.completed", payload)).data
    assert isinstance(res, ToolCallResult)
    assert res.result == "3 results"
    assert res.is_error is False


def test_subagent_triggered() -> None:
    data = parse_event(wire("subagent.triggered")).data
    assert isinstance(data, SubAgentTrigger)
    assert data.sub_task_id == "task_01JD8Z4000"
    assert data.agent_id == "agent_fact_checker"
    assert data.prompt == "Check the dates in the draft."


def test_reasoning_think_and_analyze_are_distinct() -> None:
    think = parse_event(wire("reasoning.think")).data
    analyze = parse_event(wire("reasoning.analyze")).data
    assert isinstance(think, Think)
    assert not isinstance(think, Analyze)
    assert isinstance(analyze, Analyze)
    assert not isinstance(analyze, Think)
    assert (think.title, think.content) == ("Sources", "Two sources disagree.")
    assert (analyze.title, analyze.content) == ("Dates", "1998 appears three times.")


def test_plan_updated_steps() -> None:
    data = parse_event(wire("plan.updated")).data
    assert isinstance(data, PlanUpdated)
    assert [type(step) for step in data.steps] == [PlanStep] * 4
    assert [(s.id, s.title, s.status) for s in data.steps] == [
        ("s1", "Search", "done"),
        ("s2", "Compare", "in_progress"),
        ("s3", "Write", "pending"),
        ("s4", "Fetch archive", "failed"),
    ]


def test_task_compacted() -> None:
    data = parse_event(wire("task.compacted")).data
    assert isinstance(data, TaskCompacted)
    assert data.summary == "Research so far: three sources."
    assert data.tokens_before == 120000
    assert data.tokens_after == 8000


# --- aliases ------------------------------------------------------------------------------


ALIASES = sorted(
    (name, member) for name, member in EventType.__members__.items() if name != member.name
)


def test_alias_table_has_the_design_spellings() -> None:
    names = {name for name, _ in ALIASES}
    assert names >= {
        "TaskCreated",
        "TaskUpdated",
        "TaskFinished",
        "CHUNK",
        "Chunk",
        "AUTH_EVENT",
        "AuthEvent",
        "TOOL_CALL_REQUEST",
        "ToolCallRequest",
        "TOOL_CALL_RESULT",
        "ToolCallResult",
        "SUB_AGENT_TRIGGER",
        "SubAgentTrigger",
        "THINK",
        "Think",
        "ANALYZE",
        "Analyze",
        "PlanUpdated",
        "TASK_COMPACTIZATION",
        "TaskCompactization",
    }


@pytest.mark.parametrize(("name", "member"), ALIASES, ids=[name for name, _ in ALIASES])
def test_every_alias_matches_the_parsed_type(name: str, member: EventType) -> None:
    event = parse_event(wire(member.value))
    alias = getattr(TaskUpdateEventType, name)
    assert event.type is alias
    assert event.type == alias
    assert event.type == getattr(TaskEventType, name).value
    assert isinstance(event, EXPECTED[member.value][0])
    assert payload_model_for(alias) is payload_model_for(member.value)


def test_source_sdk_spellings() -> None:
    assert TaskEventType.TASK_SHIPPED.value == "task.shipped"
    # mypy sees enum aliases as distinct members; at runtime they are one member.
    assert TaskUpdateEventType.Chunk is EventType.MESSAGE_CHUNK  # type: ignore[comparison-overlap]
    assert parse_event(wire("task.shipped")).type == TaskEventType.TASK_SHIPPED
    assert parse_event(wire("task.shipped")).type == "task.shipped"
    assert parse_event(wire("message.chunk")).type == TaskUpdateEventType.Chunk
    assert parse_event(wire("tool_call.requested")).type == EventType.TOOL_CALL_REQUEST
    assert parse_event(wire("tool_call.completed")).type == EventType.ToolCallResult
    assert parse_event(wire("subagent.triggered")).type == EventType.SUB_AGENT_TRIGGER
    assert parse_event(wire("task.compacted")).type == EventType.TASK_COMPACTIZATION
    assert parse_event(wire("auth.required")).type == EventType.AuthEvent


# --- envelope -----------------------------------------------------------------------------


def test_time_is_an_alias_of_occurred_at() -> None:
    event = parse_event(wire("task.created"))
    assert event.time == event.occurred_at == OCCURRED
    assert event.time.utcoffset() == timedelta(0)


def test_camel_case_on_the_wire_snake_case_in_python() -> None:
    event = parse_event(wire("task.updated", traceId="trace_9"))
    assert event.trace_id == "trace_9"
    dumped = event.model_dump(by_alias=True)
    assert {"occurredAt", "taskId", "organizationId", "taskVersion", "traceId"} <= set(dumped)
    assert {"taskIdentifier", "previousStatus", "availableActions"} <= set(dumped["data"])
    python = event.model_dump()
    assert {"occurred_at", "task_id", "organization_id", "task_version", "trace_id"} <= set(python)
    assert python["data"]["task_identifier"] == "AS-42"


def test_snake_case_keys_are_accepted_too() -> None:
    env = {
        "id": "evt_1",
        "type": "tool_call.requested",
        "sequence": 1,
        "occurred_at": "2026-11-20T10:00:00.123Z",
        "task_id": "task_1",
        "data": {"operation_id": "op", "tool_call_id": "c", "tool_name": "search"},
    }
    event = TaskEvent.from_dict(env)
    assert isinstance(event, ToolCallRequestedEvent)
    assert event.task_id == "task_1"
    assert event.data.tool_name == "search"


def test_optional_envelope_fields_may_be_absent_or_null() -> None:
    raw = json.dumps(
        {
            "id": "evt_1",
            "type": "message.chunk",
            "sequence": 1,
            "occurredAt": "2026-11-20T10:00:00.123Z",
            "taskId": None,
            "data": "x",
        }
    )
    event = parse_event(raw)
    assert (event.task_id, event.organization_id, event.task_version, event.trace_id) == (
        None,
        None,
        None,
        None,
    )


def test_extra_envelope_keys_are_ignored() -> None:
    event = parse_event(wire("message.chunk", apiVersion="2", region={"name": "eu"}))
    assert isinstance(event, MessageChunkEvent)
    assert_envelope(event)
    assert "apiVersion" not in event.model_dump(by_alias=True)


def test_bytes_and_str_input_give_equal_events() -> None:
    text = wire("task.shipped")
    from_bytes = parse_event(text.encode())
    assert isinstance(from_bytes, TaskShippedEvent)
    assert from_bytes == parse_event(text)
    assert from_bytes.raw == PAYLOADS["task.shipped"]


def test_non_ascii_text_survives() -> None:
    text = "Résumé — 日本語 ✓"
    event = parse_event(wire("message.chunk", text).encode("utf-8"))
    assert event.data == text
    assert parse_event(json.dumps(envelope("message.chunk", text))).data == text


def test_wire_round_trip() -> None:
    for wire_type in EXPECTED:
        event = parse_event(wire(wire_type))
        dumped = event.model_dump_json(by_alias=True)
        assert parse_event(dumped) == event
        assert json.loads(dumped)["occurredAt"] == "2026-11-20T10:00:00.123Z"


def test_from_dict_matches_parse_event() -> None:
    for wire_type in EXPECTED:
        env = envelope(wire_type, PAYLOADS[wire_type])
        event = TaskEvent.from_dict(env)
        assert event == parse_event(json.dumps(env))
        assert event.raw is env["data"]


def test_from_json_is_parse_event() -> None:
    assert TaskEvent.from_json(wire("task.created")) == parse_event(wire("task.created"))


def test_model_validate_on_the_base_class_keeps_data_as_given() -> None:
    event = TaskEvent.model_validate(envelope("task.created", SNAPSHOT))
    assert type(event) is TaskEvent
    assert event.data == SNAPSHOT
    assert event.type is EventType.TASK_CREATED


def test_events_are_immutable() -> None:
    event = parse_event(wire("task.updated"))
    with pytest.raises(ValidationError):
        event.sequence = 43
    with pytest.raises(ValidationError):
        event.data.summary = "changed"


def test_equality_and_hash() -> None:
    compact = wire("task.updated")
    spaced = json.dumps(envelope("task.updated", PAYLOADS["task.updated"]), indent=2)
    assert parse_event(compact) == parse_event(spaced)
    assert hash(parse_event(compact)) == hash(parse_event(spaced))
    assert parse_event(compact) != parse_event(wire("task.updated", sequence=43))
    assert parse_event(compact) != parse_event(wire("task.created"))
    assert parse_event(compact) != "not an event"
    assert len({parse_event(compact), parse_event(spaced)}) == 1


def test_repr_shows_the_typed_payload() -> None:
    text = repr(parse_event(wire("tool_call.requested")))
    assert text.startswith("ToolCallRequestedEvent(id='evt_000000000000002a_3f9c1e'")
    assert "ToolCallRequest(operation_id='op_1'" in text
    assert "validation_error" not in text


def test_raw_of_an_event_built_in_python() -> None:
    data = Think(title="t", content="c")
    event = ReasoningThinkEvent(
        id="evt_1", type=EventType.REASONING_THINK, sequence=1, occurred_at=OCCURRED, data=data
    )
    assert event.raw == {"title": "t", "content": "c"}
    assert event.validation_error is None
    assert event.time == OCCURRED


# --- forward compatibility ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [{"archivedBy": "user_1", "nested": {"a": [1, 2]}}, [1, 2], "text", None, 3.5]
)
def test_unknown_type_passes_through(data: Any) -> None:
    event = parse_event(wire("task.archived", data=data))
    assert type(event) is TaskEvent
    assert event.type == "task.archived"
    assert type(event.type) is str
    assert not isinstance(event.type, EventType)
    assert event.data == data
    assert event.raw == data
    assert event.validation_error is None
    assert_envelope(event)


def test_unknown_type_from_dict_keeps_the_same_payload_object() -> None:
    payload = {"k": "v"}
    event = TaskEvent.from_dict(envelope("future.thing", payload))
    assert event.type == "future.thing"
    assert event.data is payload


def test_drift_wrong_field_type_falls_back_to_raw() -> None:
    payload = {**PAYLOADS["task.compacted"], "tokensBefore": "many"}
    event = parse_event(wire("task.compacted", payload))
    assert type(event) is TaskEvent
    assert event.type is EventType.TASK_COMPACTED
    assert event.data == payload
    assert event.raw == payload
    assert_envelope(event)
    error = event.validation_error
    assert isinstance(error, ValidationError)
    assert [e["loc"] for e in error.errors()] == [("tokensBefore",)]
    assert "validation_error='tokensBefore: Input should be a valid integer" in repr(event)


@pytest.mark.parametrize(
    ("wire_type", "payload", "loc"),
    [
        (
            "task.updated",
            {**PAYLOADS["task.updated"], "actor": {"id": "agent_research"}},
            ("actor", "role"),
        ),
        ("task.updated", {**PAYLOADS["task.updated"], "status": "paused"}, ("status",)),
        ("task.shipped", {**PAYLOADS["task.shipped"], "targetEnvironment": "moon"}, None),
        ("tool_call.completed", {**PAYLOADS["tool_call.completed"], "isError": "maybe"}, None),
        ("message.chunk", {"text": "not a string"}, ()),
        ("plan.updated", {"steps": [{"id": "s1", "title": "x", "status": "skipped"}]}, None),
        ("auth.required", {"message": "no provider"}, None),
        ("reasoning.think", "just text", ()),
    ],
)
def test_drift_fallback_keeps_the_envelope(wire_type: str, payload: Any, loc: Any) -> None:
    event = parse_event(wire(wire_type, payload))
    assert type(event) is TaskEvent
    assert event.type is EventType(wire_type)
    assert event.data == payload
    assert_envelope(event)
    assert isinstance(event.validation_error, ValidationError)
    if loc is not None:
        assert event.validation_error.errors()[0]["loc"] == loc


def test_known_type_without_data_is_a_payload_failure() -> None:
    env = envelope("task.created", None)
    del env["data"]
    event = parse_event(json.dumps(env))
    assert type(event) is TaskEvent
    assert event.data is None
    assert isinstance(event.validation_error, ValidationError)
    assert_envelope(event)


def test_drift_from_dict_too() -> None:
    payload = {"title": 1, "content": "c"}
    event = TaskEvent.from_dict(envelope("reasoning.analyze", payload))
    assert type(event) is TaskEvent
    assert event.data is payload
    assert isinstance(event.validation_error, ValidationError)


def test_fallback_events_compare_equal_and_hash() -> None:
    drifted = wire("task.compacted", {"summary": 1})
    assert parse_event(drifted) == parse_event(drifted.encode())
    assert isinstance(hash(parse_event(drifted)), int)


def test_extra_payload_keys_are_accepted() -> None:
    payload = {
        **PAYLOADS["task.updated"],
        "blocker": {"reason": "waiting"},
        "actor": {"id": "agent_research", "role": "agent", "displayName": "Researcher"},
    }
    event = parse_event(wire("task.updated", payload))
    assert isinstance(event, TaskUpdatedEvent)
    assert event.validation_error is None
    assert event.data.actor == TaskEventActor(id="agent_research", role="agent")
    assert not hasattr(event.data, "blocker")
    assert event.raw["blocker"] == {"reason": "waiting"}
    assert event.raw["actor"]["displayName"] == "Researcher"


@pytest.mark.parametrize("wire_type", sorted(t for t in EXPECTED if t != "message.chunk"))
def test_every_payload_model_ignores_unknown_keys(wire_type: str) -> None:
    payload = {**PAYLOADS[wire_type], "addedInV2": {"x": 1}}
    event = parse_event(wire(wire_type, payload))
    assert isinstance(event, EXPECTED[wire_type][0])
    assert event.validation_error is None


# --- invalid envelopes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message", "event_id"),
    [
        ("not json at all", "not valid JSON", None),
        ('{"id": "evt_1", "type": "task.created"', "not valid JSON", None),
        ("", "not valid JSON", None),
        ('[{"id": "evt_1", "type": "task.created"}]', "not a JSON object", None),
        ('"task.created"', "not a JSON object", None),
        ("null", "not a JSON object", None),
        ('{"type": "task.created", "sequence": 1}', "no 'id'", None),
        ('{"id": "evt_1", "sequence": 1, "data": {}}', "no 'type'", "evt_1"),
        (
            '{"id": 7, "type": "task.created", "sequence": 1, '
            '"occurredAt": "2026-11-20T10:00:00Z"}',
            "envelope: id: ",
            None,
        ),
        (
            '{"id": "evt_1", "type": 3, "sequence": 1, "occurredAt": "2026-11-20T10:00:00Z"}',
            "envelope: type",
            "evt_1",
        ),
        (
            '{"id": "evt_1", "type": "x", "sequence": "first", "occurredAt": "2026-11-20T10:00Z"}',
            "envelope: sequence: ",
            "evt_1",
        ),
        (
            '{"id": "evt_1", "type": "x", "sequence": 1, "occurredAt": "yesterday"}',
            "envelope: occurredAt: ",
            "evt_1",
        ),
    ],
)
def test_invalid_envelope_raises_with_raw(data: str, message: str, event_id: Any) -> None:
    for given_data in (data, data.encode()):
        with pytest.raises(InvalidEventError, match=message) as info:
            parse_event(given_data)
        assert info.value.raw == data
        assert info.value.event_id == event_id
        assert isinstance(info.value, StreamError)
        assert isinstance(info.value, ValueError)


def test_invalid_utf8_bytes() -> None:
    with pytest.raises(InvalidEventError, match="not valid JSON") as info:
        parse_event(b'{"id": "evt_1", "type": "\xff"}')
    assert info.value.raw == '{"id": "evt_1", "type": "\ufffd"}'


def test_json_nested_too_deeply_is_an_invalid_event_not_a_recursion_error() -> None:
    # Found by review: json.loads raised RecursionError on the slow path.
    with pytest.raises(InvalidEventError, match="nested too deeply") as info:
        parse_event("[" * 100_000)
    assert len(info.value.raw) == 100_000


def test_from_dict_rejects_what_parse_event_rejects() -> None:
    with pytest.raises(InvalidEventError, match="not a JSON object"):
        TaskEvent.from_dict(["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError, match="not a JSON object"):
        TaskEvent.from_dict(parse_event(wire("task.created")))  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError, match="no 'type'") as info:
        TaskEvent.from_dict({"id": "evt_1", "sequence": 1})
    assert info.value.event_id == "evt_1"
    assert json.loads(info.value.raw) == {"id": "evt_1", "sequence": 1}


# --- payload_model_for ----------------------------------------------------------------------


def test_payload_model_for() -> None:
    for wire_type, (_, payload_class) in EXPECTED.items():
        expected = payload_class if payload_class is not str else None
        assert payload_model_for(wire_type) is expected
        assert payload_model_for(EventType(wire_type)) is expected
    assert payload_model_for(EventType.ToolCallResult) is ToolCallResult
    assert payload_model_for("task.archived") is None
    assert payload_model_for("Chunk") is None  # an alias name is not a wire type


# --- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_any_json_gives_an_event_or_invalid_event_error(value: Any) -> None:
    text = json.dumps(value)
    outcome: object
    try:
        outcome = parse_event(text)
    except InvalidEventError as exc:  # the only exception allowed
        outcome = exc
    if isinstance(outcome, InvalidEventError):
        assert outcome.raw == text
    else:
        assert isinstance(outcome, TaskEvent)


@settings(max_examples=300, deadline=None)
@given(
    wire_type=st.sampled_from(sorted(EXPECTED)) | st.text(max_size=12),
    data=json_values,
    mutate=st.booleans(),
)
def test_a_valid_envelope_never_raises(wire_type: str, data: Any, mutate: bool) -> None:
    payload = data
    if mutate and isinstance(PAYLOADS.get(wire_type), dict) and isinstance(data, dict):
        payload = {**PAYLOADS[wire_type], **data}
    event = parse_event(wire(wire_type, data=payload))
    assert_envelope(event)
    assert event.type == wire_type
    if wire_type in EXPECTED:
        typed = event.validation_error is None
        assert typed == isinstance(event, EXPECTED[wire_type][0])
        if not typed:
            assert event.data == payload
        else:
            assert isinstance(event.data, (BaseModel, str))
    else:
        assert event.validation_error is None
        assert event.data == payload


# The names `from agentstream.models import X` gave when models was one module.
MODULE_NAMES = [
    "Analyze",
    "AuthEvent",
    "AuthRequiredEvent",
    "MessageChunkEvent",
    "PayloadModel",
    "PlanStep",
    "PlanStepStatus",
    "PlanUpdated",
    "PlanUpdatedEvent",
    "ReasoningAnalyzeEvent",
    "ReasoningThinkEvent",
    "ReviewOutcome",
    "ShipEnvironment",
    "ShipStatus",
    "SubAgentTrigger",
    "SubAgentTriggeredEvent",
    "TaskCompacted",
    "TaskCompactedEvent",
    "TaskCreatedEvent",
    "TaskEvent",
    "TaskEventActor",
    "TaskEventLinks",
    "TaskFinishedEvent",
    "TaskReviewedData",
    "TaskReviewedEvent",
    "TaskShippedData",
    "TaskShippedEvent",
    "TaskSnapshot",
    "TaskUpdatedData",
    "TaskUpdatedEvent",
    "Think",
    "ToolCallCompletedEvent",
    "ToolCallRequest",
    "ToolCallRequestedEvent",
    "ToolCallResult",
    "WireDatetime",
    "parse_event",
    "payload_model_for",
]


def test_the_models_package_exports_what_the_module_did() -> None:
    import agentstream.models as models

    assert sorted(models.__all__) == MODULE_NAMES
    for name in MODULE_NAMES:
        assert getattr(models, name) is not None


def test_from_dict_and_from_json_reach_the_parser_of_the_package() -> None:
    text = wire("task.shipped", data=PAYLOADS["task.shipped"])
    assert type(TaskEvent.from_json(text)) is TaskShippedEvent
    assert type(TaskEvent.from_dict(json.loads(text))) is TaskShippedEvent
    assert TaskEvent.from_json(text) == parse_event(text)
