"""The simulated agent: walks each task through the whole event vocabulary.

Each run is a daemon thread that emits one step every ``pace`` seconds
(``threading.Event.wait``, so a cancel or a shutdown wakes it at once). Every
step is one store transaction that also records the run's progress
(``agent_step``): a server restarted on the same database resumes unfinished
runs where they stopped, and a task cancelled between two steps never gets
another event from its run (the store refuses events for a terminal task,
atomically).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ..event_types import EventType, TaskStatus
from ._errors import StoreClosedError, TaskFinishedError, UnknownTaskError
from ._store import EventStore
from ._tasks import available_actions, task_links

__all__ = ["AGENT_ACTOR", "ANSWER_CHUNKS", "SimulatedAgent", "script_event_types"]

logger = logging.getLogger(__name__)

AGENT_ACTOR: Mapping[str, str] = {"id": "agent_simulated", "role": "agent"}
REVIEWER: Mapping[str, str] = {"id": "reviewer_simulated", "role": "reviewer"}

#: The text the run streams as ``message.chunk`` events; joined, it is the task's result.
ANSWER_CHUNKS: tuple[str, ...] = (
    "The simulated agent ",
    "looked into your request, ",
    "called two tools, ",
    "and wrote ",
    "this answer.",
)

Step = Callable[[EventStore, str, int], Any]
Snapshot = Mapping[str, Any]


def _short(task_id: str) -> str:
    return task_id.rsplit("_", 1)[-1][:12]


def _status(status: TaskStatus, summary: str, *, result: bool = False) -> Step:
    def step(store: EventStore, task_id: str, next_step: int) -> Any:
        return store.transition_task(
            task_id,
            status,
            summary=summary,
            actor=AGENT_ACTOR,
            result="".join(ANSWER_CHUNKS) if result else None,
            agent_step=next_step,
        )

    return step


def _event(event_type: EventType, build: Callable[[Snapshot], Any]) -> Step:
    def step(store: EventStore, task_id: str, next_step: int) -> Any:
        return store.append_task_event(task_id, event_type, build, agent_step=next_step)

    return step


def _think(s: Snapshot) -> Any:
    return {
        "title": "Understanding the request",
        "content": f"The user asks: {s['prompt']!r}. Search first, then read a source.",
    }


def _plan(s: Snapshot) -> Any:
    return {
        "steps": [
            {"id": "step_1", "title": "Search for sources", "status": "in_progress"},
            {"id": "step_2", "title": "Read the best source", "status": "pending"},
            {"id": "step_3", "title": "Write the answer", "status": "pending"},
        ]
    }


def _search_request(s: Snapshot) -> Any:
    return {
        "operationId": f"op_{_short(s['id'])}_1",
        "toolCallId": "call_1",
        "toolName": "web_search",
        "payload": {"query": s["prompt"]},
        "reasoning": "Find sources before answering.",
    }


def _search_result(s: Snapshot) -> Any:
    return {
        "operationId": f"op_{_short(s['id'])}_1",
        "toolCallId": "call_1",
        "toolName": "web_search",
        "payload": {"query": s["prompt"]},
        "result": {"hits": [{"title": "A relevant page", "url": "https://example.com/page"}]},
        "isError": False,
    }


def _fetch_request(s: Snapshot) -> Any:
    return {
        "operationId": f"op_{_short(s['id'])}_2",
        "toolCallId": "call_2",
        "toolName": "fetch_url",
        "payload": {"url": "https://example.com/page"},
        "reasoning": None,
    }


def _fetch_result(s: Snapshot) -> Any:
    return {
        "operationId": f"op_{_short(s['id'])}_2",
        "toolCallId": "call_2",
        "toolName": "fetch_url",
        "payload": {"url": "https://example.com/page"},
        "result": {"error": "HTTP 503 from example.com"},
        "isError": True,
    }


def _chunk(text: str) -> Callable[[Snapshot], Any]:
    return lambda s: text


def _auth(s: Snapshot) -> Any:
    return {
        "provider": "github",
        "authUrl": f"https://github.com/login/oauth/authorize?client_id=agentstream-demo&state={s['id']}",
        "message": "Sign in to GitHub so the agent can open a pull request.",
        "scopes": ["repo"],
    }


def _subagent(s: Snapshot) -> Any:
    return {
        "subTaskId": f"task_sub_{_short(s['id'])}",
        "agentId": "agent_reviewer",
        "prompt": "Proofread the answer.",
    }


def _analyze(s: Snapshot) -> Any:
    return {
        "title": "Checking the answer",
        "content": "One tool call failed; the answer relies on the search results only.",
    }


def _compacted(s: Snapshot) -> Any:
    return {
        "summary": "Earlier tool output was summarised to save context.",
        "tokensBefore": 12800,
        "tokensAfter": 3100,
    }


def _reviewed(s: Snapshot) -> Any:
    return {
        "taskId": s["id"],
        "taskIdentifier": s["identifier"],
        "status": s["status"],
        "reviewOutcome": "approved",
        "reviewer": dict(REVIEWER),
        "summary": "The answer is approved.",
        "availableActions": available_actions(TaskStatus(s["status"])),
        "links": task_links(s["id"]),
    }


def _shipped(s: Snapshot) -> Any:
    return {
        "taskId": s["id"],
        "taskIdentifier": s["identifier"],
        "status": s["status"],
        "shipStatus": "succeeded",
        "operationId": f"ship_{_short(s['id'])}",
        "targetEnvironment": "staging",
        "summary": "Shipped to staging.",
        "availableActions": available_actions(TaskStatus(s["status"])),
        "links": task_links(s["id"]),
    }


#: The run, one step per entry. Each step is one transaction (the last one
#: emits both ``task.updated`` (done) and ``task.finished``).
SCRIPT: Sequence[Step] = (
    _status(TaskStatus.IN_PROGRESS, "The agent started working on the task."),
    _event(EventType.REASONING_THINK, _think),
    _event(EventType.PLAN_UPDATED, _plan),
    _event(EventType.TOOL_CALL_REQUESTED, _search_request),
    _event(EventType.TOOL_CALL_COMPLETED, _search_result),
    _event(EventType.TOOL_CALL_REQUESTED, _fetch_request),
    _event(EventType.TOOL_CALL_COMPLETED, _fetch_result),
    *(_event(EventType.MESSAGE_CHUNK, _chunk(text)) for text in ANSWER_CHUNKS),
    _event(EventType.AUTH_REQUIRED, _auth),
    _event(EventType.SUBAGENT_TRIGGERED, _subagent),
    _event(EventType.REASONING_ANALYZE, _analyze),
    _event(EventType.TASK_COMPACTED, _compacted),
    _status(TaskStatus.IN_REVIEW, "The answer is ready for review."),
    _event(EventType.TASK_REVIEWED, _reviewed),
    _event(EventType.TASK_SHIPPED, _shipped),
    _status(TaskStatus.DONE, "The task is done.", result=True),
)


def script_event_types() -> list[str]:
    """The wire types a full run emits, in order, ``task.created`` included."""
    types = [
        EventType.TASK_CREATED,
        EventType.TASK_UPDATED,
        EventType.REASONING_THINK,
        EventType.PLAN_UPDATED,
        EventType.TOOL_CALL_REQUESTED,
        EventType.TOOL_CALL_COMPLETED,
        EventType.TOOL_CALL_REQUESTED,
        EventType.TOOL_CALL_COMPLETED,
        *([EventType.MESSAGE_CHUNK] * len(ANSWER_CHUNKS)),
        EventType.AUTH_REQUIRED,
        EventType.SUBAGENT_TRIGGERED,
        EventType.REASONING_ANALYZE,
        EventType.TASK_COMPACTED,
        EventType.TASK_UPDATED,
        EventType.TASK_REVIEWED,
        EventType.TASK_SHIPPED,
        EventType.TASK_UPDATED,
        EventType.TASK_FINISHED,
    ]
    return [t.value for t in types]


class SimulatedAgent:
    """Runs simulated tasks in background threads, one ``pace`` seconds per step.

    :meth:`start` a run for a task (from step 0 or from where a previous
    server stopped), :meth:`wake` a run after its task was cancelled so the
    thread ends at once, :meth:`shutdown` every run (their tasks stay as they
    are; a later server on the same database resumes them).
    """

    def __init__(self, store: EventStore, *, pace: float = 0.2) -> None:
        if pace < 0:
            raise ValueError("pace must be >= 0 seconds")
        self._store = store
        self._pace = pace
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._closed = False

    @property
    def pace(self) -> float:
        """Seconds between two steps of a run."""
        return self._pace

    @property
    def active_runs(self) -> int:
        """How many runs are in progress."""
        with self._lock:
            return len(self._runs)

    def start(self, task_id: str, step: int = 0) -> None:
        """Run ``task_id`` from ``step`` in a new daemon thread (no-op if already running)."""
        with self._lock:
            if self._closed or task_id in self._runs:
                return
            wake = threading.Event()
            thread = threading.Thread(
                target=self._run,
                args=(task_id, step, wake),
                name=f"agentstream-agent-{task_id}",
                daemon=True,
            )
            self._runs[task_id] = (thread, wake)
            thread.start()

    def resume_unfinished(self) -> int:
        """Start a run for every simulated task a previous server left unfinished."""
        pending = self._store.unfinished_simulated_tasks()
        for task_id, step in pending:
            logger.info("resuming simulated run of %s at step %d", task_id, step)
            self.start(task_id, step)
        return len(pending)

    def wake(self, task_id: str) -> None:
        """End the run of ``task_id`` now (after its task was cancelled)."""
        with self._lock:
            run = self._runs.get(task_id)
        if run is not None:
            run[1].set()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every run and join the threads (at most ``timeout`` seconds in all)."""
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())
        for _, wake in runs:
            wake.set()
        for thread, _ in runs:
            thread.join(timeout)
            if thread.is_alive():  # pragma: no cover - a step blocked on the database
                logger.warning("simulated run %s did not stop in time", thread.name)

    def _run(self, task_id: str, first_step: int, wake: threading.Event) -> None:
        try:
            for index in range(first_step, len(SCRIPT)):
                if wake.wait(self._pace):
                    return
                SCRIPT[index](self._store, task_id, index + 1)
        except (TaskFinishedError, UnknownTaskError, StoreClosedError):
            pass  # cancelled, or the server is going away
        except Exception:
            logger.exception("simulated run of %s failed", task_id)
        finally:
            with self._lock:
                self._runs.pop(task_id, None)
