"""What a type checker sees of the public API: uses it must accept, mistakes it must catch.

Not imported by any test: ``tests/test_typing.py`` runs mypy (strict) on this
file and requires an error on exactly the lines marked ``# error: <code>``,
with that code, and none elsewhere. There is no type-ignore comment here.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from blinker import NamedSignal
from typing_extensions import assert_type

from agentstream import (
    APIError,
    Client,
    EventType,
    InsufficientScopeError,
    Registry,
    RetryBudgetExhaustedError,
    Task,
    TaskEvent,
    TaskShippedData,
    TaskSnapshot,
    on,
    on_auth_event,
    on_event,
    signals,
)
from agentstream.models import (
    AuthEvent,
    AuthRequiredEvent,
    MessageChunkEvent,
    TaskFinishedEvent,
    TaskShippedEvent,
)

# -- tasks: typed properties, typed return values ----------------------------


def task_fields(client: Client) -> None:
    task = client.create_task("research", events_streaming=True)
    assert_type(task, Task)
    assert_type(task.id, str)
    assert_type(task.identifier, str)
    assert_type(task.prompt, str)
    assert_type(task.result, Optional[str])
    assert_type(task.error, Optional[str])
    assert_type(task.metadata, dict[str, Any])
    assert_type(task.version, int)
    assert_type(task.snapshot, TaskSnapshot)
    assert_type(client.get_task(task.id).reload().stop(), Task)
    task.id.upper()
    task.version.upper()  # error: attr-defined


# -- events: isinstance on the per-type classes narrows ``data`` -------------


def narrowing(client: Client) -> None:
    for event in client.create_task("research", events_streaming=True).events():
        assert_type(event, TaskEvent)
        assert_type(event.data, Any)  # the envelope alone says nothing about data
        if event.type == EventType.TASK_SHIPPED:
            assert_type(event.data, Any)  # comparing the type narrows nothing
        if isinstance(event, TaskShippedEvent):
            assert_type(event.data, TaskShippedData)
            event.data.target_environment.upper()
            print(event.data.no_such_field)  # error: attr-defined
        elif isinstance(event, MessageChunkEvent):
            assert_type(event.data, str)
        elif isinstance(event, AuthRequiredEvent):
            assert_type(event.data, AuthEvent)
        elif isinstance(event, TaskFinishedEvent):
            assert_type(event.data.status.is_terminal, bool)


# -- handlers: one event in, the function back unchanged ---------------------


@on("task.shipped")
def shipped(event: TaskShippedEvent) -> str:
    return event.data.operation_id


def decorated_functions_keep_their_signature(event: TaskShippedEvent) -> None:
    assert_type(shipped(event), str)
    shipped("task.shipped")  # error: arg-type


@on_auth_event
def needs_login(event: AuthRequiredEvent) -> None:
    print(event.data.auth_url)


@on_event(task_id="task_1")
def every(event: TaskEvent) -> None:
    print(event.id)


def registry_add(registry: Registry, typed: Callable[[TaskShippedEvent], str]) -> None:
    registry.add(typed, ("task.shipped",))  # what the decorators accept, add() accepts
    registry.add(lambda event: print(event.id))
    registry.add(lambda: None)  # error: arg-type
    registry.add(print)
    registry.remove(typed)


@on("task.shipped")  # error: type-var
def takes_nothing() -> None:
    pass


@on("task.shipped")  # error: type-var
def takes_two(event: TaskEvent, other: int) -> None:
    pass


@on_event  # error: type-var
def takes_a_str(event: str) -> None:
    pass


# -- errors and signals -------------------------------------------------------


def errors(
    error: APIError, scope: InsufficientScopeError, spent: RetryBudgetExhaustedError
) -> None:
    assert_type(error.status, int)
    assert_type(error.code, str)
    assert_type(error.details, dict[str, Any])
    assert_type(error.headers, dict[str, str])
    assert_type(scope.required_scope, Optional[str])
    assert_type(spent.last_error, BaseException)
    assert_type(spent.attempts, int)


assert_type(signals.event_received, NamedSignal)
assert_type(signals.handler_failed, NamedSignal)
