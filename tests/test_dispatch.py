"""Registry, decorators and signals: matching, order, failures, strong references."""

from __future__ import annotations

import gc
import subprocess
import sys
from typing import Any, Callable

import pytest

import agentstream
from agentstream import EventType, Registry, TaskEvent, parse_event, signals
from agentstream.dispatch import default_registry


def event(type: str = "task.shipped", task_id: str = "task_1", sequence: int = 1) -> TaskEvent:
    data: Any = "text" if type == "message.chunk" else {}
    return TaskEvent.model_construct(
        id=f"evt_{sequence}", type=type, sequence=sequence, task_id=task_id, data=data
    )


def test_decorators_return_the_function_unchanged() -> None:
    registry = Registry()

    def shipped(e: TaskEvent) -> str:
        return "called directly"

    assert registry.on("task.shipped")(shipped) is shipped
    assert registry.on_event(shipped) is shipped
    assert registry.on_auth_event(shipped) is shipped
    assert registry.on_unknown(shipped) is shipped
    assert registry.on_event(task_id="t")(shipped) is shipped
    assert shipped(event()) == "called directly"


def test_matching_by_type_alias_wildcard_task_and_unknown() -> None:
    registry = Registry()
    calls: list[str] = []

    registry.on("task.shipped")(lambda e: calls.append("exact"))
    registry.on(EventType.TASK_SHIPPED)(lambda e: calls.append("enum"))
    registry.on(EventType.Chunk, "auth.required")(lambda e: calls.append("several"))
    registry.on("task.*")(lambda e: calls.append("task.*"))
    registry.on("*")(lambda e: calls.append("*"))
    registry.on_event(lambda e: calls.append("on_event"))
    registry.on_auth_event(lambda e: calls.append("auth"))
    registry.on("task.shipped", task_id="task_2")(lambda e: calls.append("task_2 only"))
    registry.on_unknown(lambda e: calls.append("unknown"))

    def run(e: TaskEvent) -> list[str]:
        calls.clear()
        registry.dispatch(e)
        return list(calls)

    assert run(event("task.shipped")) == ["exact", "enum", "task.*", "*", "on_event"]
    assert run(event("task.shipped", task_id="task_2")) == [
        "exact",
        "enum",
        "task.*",
        "*",
        "on_event",
        "task_2 only",
    ]
    assert run(event("auth.required")) == ["several", "*", "on_event", "auth"]
    assert run(event("message.chunk")) == ["several", "*", "on_event"]
    assert run(event("task.teleported")) == ["task.*", "*", "on_event", "unknown"]


def test_unknown_exact_type_is_rejected_at_registration() -> None:
    with pytest.raises(ValueError, match="on_unknown"):
        Registry().on("task.shiped")
    with pytest.raises(ValueError, match="at least one"):
        Registry().on()
    with pytest.raises(TypeError):
        Registry().add(42)  # type: ignore[arg-type]


def test_a_failing_handler_is_reported_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = Registry()
    calls: list[str] = []
    reported: list[dict[str, Any]] = []

    def boom(e: TaskEvent) -> None:
        raise RuntimeError("handler bug")

    registry.on_event(lambda e: calls.append("before"))
    registry.on_event(boom)
    registry.on_event(lambda e: calls.append("after"))

    def on_failure(sender: Any, **kwargs: Any) -> None:
        reported.append(kwargs)

    with signals.handler_failed.connected_to(on_failure, sender=registry):
        result = registry.dispatch(event(sequence=7))
    assert calls == ["before", "after"]
    assert result.handled == 3
    assert [h for h, _ in result.errors] == [boom]
    assert reported[0]["handler"] is boom
    assert str(reported[0]["error"]) == "handler bug"
    assert "evt_7" in caplog.text
    assert "boom" in caplog.text


def test_handlers_defined_in_a_function_keep_firing() -> None:
    registry = Registry()
    seen: list[str] = []

    def register() -> None:
        def local(e: TaskEvent) -> None:  # a closure: blinker's weak default would drop it
            seen.append(e.id)

        registry.on("task.shipped")(local)
        registry.on_event(lambda e: seen.append("lambda"))

    register()
    gc.collect()
    registry.dispatch(event())
    assert seen == ["evt_1", "lambda"]


def test_event_signal_uses_the_type_string_as_sender() -> None:
    registry = Registry()
    received: list[tuple[Any, str]] = []

    # Both receivers record, then raise: whichever blinker calls first (its
    # order is undefined), the other one running shows the first did not stop it.
    def failing(name: str) -> Callable[..., None]:
        def receiver(sender: Any, **kwargs: Any) -> None:
            received.append((sender, kwargs["event"].id))
            raise RuntimeError(f"receiver bug in {name}")

        return receiver

    first = signals.event_received.connected_to(failing("first"), sender="task.shipped")
    second = signals.event_received.connected_to(failing("second"), sender="task.shipped")
    with first, second:
        registry.dispatch(event("message.chunk"), signal=signals.event_received)
        result = registry.dispatch(event("task.shipped"), signal=signals.event_received)
    assert received == [("task.shipped", "evt_1")] * 2  # one failure did not stop the other
    assert len(result.errors) == 2


def test_remove_and_clear() -> None:
    registry = Registry()
    calls: list[int] = []

    def handler(e: TaskEvent) -> None:
        calls.append(1)

    registry.on_event(handler)
    registry.dispatch(event())
    assert registry.remove(handler)
    assert not registry.remove(handler)
    registry.dispatch(event())
    registry.on_event(handler)
    registry.clear()
    registry.dispatch(event())
    assert calls == [1]
    assert len(registry) == 0


def test_module_level_decorators_fill_the_default_registry() -> None:
    before = len(default_registry)

    @agentstream.on("task.shipped")
    def shipped(e: TaskEvent) -> None: ...

    @agentstream.on_auth_event
    def needs_login(e: TaskEvent) -> None: ...

    @agentstream.on_event(task_id="task_1")
    def everything(e: TaskEvent) -> None: ...

    @agentstream.on_unknown
    def unknown(e: TaskEvent) -> None: ...

    try:
        assert len(default_registry) == before + 4
        auth = parse_event(
            '{"id":"e","type":"auth.required","sequence":1,"occurredAt":"2026-11-20T10:00:00Z",'
            '"taskId":"task_1","data":{"provider":"github","authUrl":"https://x"}}'
        )
        assert default_registry.handlers_for(auth)[-2:] == (needs_login, everything)
    finally:
        for handler in (shipped, needs_login, everything, unknown):
            default_registry.remove(handler)


def test_import_needs_only_the_core_libraries_and_no_asyncio() -> None:
    code = (
        "import sys, agentstream, agentstream.sse;"
        "bad = [m for m in ('asyncio', 'werkzeug', 'flask', 'django') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
