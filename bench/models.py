"""Validation cost per event: the ways of turning an SSE ``data`` field into a typed event.

Run from the repository root::

    .venv/bin/python bench/models.py            # 50,000 events per timing, best of 5
    .venv/bin/python bench/models.py -n 10000   # quicker

Every candidate starts from the same bytes (a realistic ``task.updated``
envelope of about 500 bytes, and a ``message.chunk`` one) and ends with the
payload typed, except the rows marked "parse only". Times are the best of
``--repeat`` runs of ``--number`` events, in microseconds per event.

Candidates:

* ``json.loads`` alone: the floor for anything that decodes in Python.
* ``pydantic_core.from_json`` alone: the same decoding in Rust (jiter), untyped.
* ``json.loads`` + ``model_validate`` (envelope, then payload model).
* ``json.loads`` + ``TypeAdapter(discriminated union).validate_python``.
* ``model_validate_json`` (envelope from the bytes, ``data`` kept as Python
  objects) + payload ``model_validate``.
* ``TypeAdapter(discriminated union).validate_json``: envelope and payload in
  one pass, straight from the bytes (what ``parse_event`` does; the
  ``parse_event`` row adds keeping the source for ``event.raw``).
* lazy: validate the envelope from the bytes with ``data`` raw, validate
  ``data`` on first access (a ``functools.cached_property``); timed parse only
  and parse + access.
* frozen vs not frozen: the same ``task.updated`` models built both ways.
* the same ``task.updated`` schema as TypedDicts: every field validated but
  dicts built instead of model instances; the difference is what the four
  models of a ``task.updated`` (envelope, payload, actor, links) cost.
* the fallback paths of ``parse_event``: an unknown type, a drifted payload.
"""

import argparse
import functools
import json
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, Optional, Union

import pydantic
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel
from typing_extensions import NotRequired, TypedDict
from wire import UPDATED

from agentstream.event_types import EventType, TaskStatus
from agentstream.models._parsing import (
    _EVENT_ADAPTER,
    TaskEvent,
    TaskUpdatedData,
    parse_event,
    payload_model_for,
)

CHUNK = {
    "id": "evt_000000000000002b_77aa01",
    "type": "message.chunk",
    "sequence": 43,
    "occurredAt": "2026-11-20T10:00:00.456Z",
    "taskId": "task_01JD8Z3K9Q",
    "organizationId": "org_01JD8Z3K9Q",
    "taskVersion": 7,
    "traceId": None,
    "data": "The second source disagrees with the first on the date of the ",
}

UNKNOWN = {**UPDATED, "type": "task.archived"}
DRIFTED = {**UPDATED, "data": {**UPDATED["data"], "status": "paused"}}  # type: ignore[dict-item]


def wire(envelope: dict[str, Any]) -> bytes:
    """The envelope as the server sends it: compact JSON, UTF-8."""
    return json.dumps(envelope, separators=(",", ":")).encode()


_CONFIG = ConfigDict(
    alias_generator=to_camel,
    populate_by_name=True,
    frozen=True,
    extra="ignore",
)


_CHUNK_ADAPTER: TypeAdapter[str] = TypeAdapter(str)


def validate_payload(event_type: Any, payload: Any) -> Any:
    """Validate a payload with its model (``str`` for a chunk)."""
    model = payload_model_for(event_type)
    if model is None:
        return _CHUNK_ADAPTER.validate_python(payload)
    return model.model_validate(payload)


class LazyTaskEvent(BaseModel):
    """The lazy design: envelope validated, payload validated on first access."""

    model_config = _CONFIG

    id: str
    type: Union[EventType, str] = Field(union_mode="left_to_right")
    sequence: int
    occurred_at: datetime
    task_id: Optional[str] = None
    organization_id: Optional[str] = None
    task_version: Optional[int] = None
    trace_id: Optional[str] = None
    raw: Any = Field(default=None, alias="data")

    @functools.cached_property
    def data(self) -> Any:
        """The typed payload, validated on first access."""
        return validate_payload(self.type, self.raw)


def mirror_updated(frozen: bool) -> "TypeAdapter[Any]":
    """The ``task.updated`` event models, frozen or not, behind a discriminated union."""
    config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=frozen,
        extra="ignore",
    )

    class Actor(BaseModel):
        model_config = config
        id: str
        role: str

    class Links(BaseModel):
        model_config = config
        task: str
        review_feedback: Optional[str] = None
        ci_status: Optional[str] = None
        ship_operation: Optional[str] = None

    class Updated(BaseModel):
        model_config = config
        task_id: str
        task_identifier: str
        status: TaskStatus
        previous_status: Optional[TaskStatus] = None
        changed_fields: list[str] = Field(default_factory=list)
        actor: Actor
        summary: str
        available_actions: list[str] = Field(default_factory=list)
        links: Links

    class Event(BaseModel):
        model_config = config
        id: str
        type: Literal[EventType.TASK_UPDATED]
        sequence: int
        occurred_at: datetime
        task_id: Optional[str] = None
        organization_id: Optional[str] = None
        task_version: Optional[int] = None
        trace_id: Optional[str] = None
        data: Updated

    class Chunk(BaseModel):
        model_config = config
        id: str
        type: Literal[EventType.MESSAGE_CHUNK]
        sequence: int
        occurred_at: datetime
        data: str

    return TypeAdapter(Annotated[Union[Event, Chunk], Field(discriminator="type")])


def mirror_typeddict() -> "TypeAdapter[Any]":
    """The same ``task.updated`` schema as TypedDicts: every field validated, no
    model instances built (dicts instead). The gap to the models is their cost."""

    class Actor(TypedDict):
        id: str
        role: str

    class Links(TypedDict):
        task: str
        reviewFeedback: NotRequired[Optional[str]]
        ciStatus: NotRequired[Optional[str]]
        shipOperation: NotRequired[Optional[str]]

    class Updated(TypedDict):
        taskId: str
        taskIdentifier: str
        status: TaskStatus
        previousStatus: NotRequired[Optional[TaskStatus]]
        changedFields: NotRequired[list[str]]
        actor: Actor
        summary: str
        availableActions: NotRequired[list[str]]
        links: Links

    class Event(TypedDict):
        id: str
        type: Literal[EventType.TASK_UPDATED]
        sequence: int
        occurredAt: datetime
        taskId: NotRequired[Optional[str]]
        organizationId: NotRequired[Optional[str]]
        taskVersion: NotRequired[Optional[int]]
        traceId: NotRequired[Optional[str]]
        data: Updated

    return TypeAdapter(Event)


def candidates(raw: bytes) -> dict[str, Callable[[], object]]:
    """The timed functions for one input."""
    frozen = mirror_updated(frozen=True)
    mutable = mirror_updated(frozen=False)
    dicts = mirror_typeddict()

    def loads_only() -> object:
        return json.loads(raw)

    def jiter_only() -> object:
        return pydantic_core.from_json(raw)

    def loads_model_validate() -> object:
        envelope = TaskEvent.model_validate(json.loads(raw))  # the envelope alone
        return validate_payload(envelope.type, envelope.data)

    def loads_union_validate_python() -> object:
        return _EVENT_ADAPTER.validate_python(json.loads(raw))

    def model_validate_json_two_step() -> object:
        envelope = TaskEvent.model_validate_json(raw)
        return validate_payload(envelope.type, envelope.data)

    def union_validate_json() -> object:
        return _EVENT_ADAPTER.validate_json(raw)

    def shipped_parse_event() -> object:
        return parse_event(raw)

    def lazy_parse_only() -> object:
        return LazyTaskEvent.model_validate_json(raw)

    def lazy_parse_and_access() -> object:
        return LazyTaskEvent.model_validate_json(raw).data

    def mirror_frozen() -> object:
        return frozen.validate_json(raw)

    def mirror_mutable() -> object:
        return mutable.validate_json(raw)

    def mirror_dicts() -> object:
        return dicts.validate_json(raw)

    return {
        "json.loads only (floor, untyped)": loads_only,
        "pydantic_core.from_json only (untyped)": jiter_only,
        "json.loads + model_validate (envelope, payload)": loads_model_validate,
        "json.loads + TypeAdapter(union).validate_python": loads_union_validate_python,
        "model_validate_json envelope + payload validate": model_validate_json_two_step,
        "TypeAdapter(union).validate_json": union_validate_json,
        "parse_event (union.validate_json + source kept)": shipped_parse_event,
        "lazy: parse only (payload untyped)": lazy_parse_only,
        "lazy: parse + first access to .data": lazy_parse_and_access,
        "union.validate_json, models frozen=True": mirror_frozen,
        "union.validate_json, models frozen=False": mirror_mutable,
        "same schema as TypedDicts (no model instances)": mirror_dicts,
    }


def measure(
    fns: dict[str, Callable[[], object]], number: int, repeat: int
) -> dict[str, tuple[float, float]]:
    """Best and median µs per call of each function.

    The runs are interleaved (one run of every function, ``repeat`` times), so
    that a burst of load on the machine hits every candidate alike.
    """
    for fn in fns.values():
        fn()  # warm up, and fail early if a candidate is broken
    runs: dict[str, list[float]] = {label: [] for label in fns}
    for _ in range(repeat):
        for label, fn in fns.items():
            elapsed = timeit.Timer(fn).timeit(number=number)
            runs[label].append(elapsed / number * 1e6)
    return {label: (min(times), statistics.median(times)) for label, times in runs.items()}


def main(argv: Optional[list[str]] = None) -> int:
    """Run every candidate on every input and print µs/event."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--number", type=int, default=50_000, help="events per run")
    parser.add_argument("-r", "--repeat", type=int, default=5, help="runs; the best is kept")
    args = parser.parse_args(argv)

    print(
        f"Python {platform.python_version()}, pydantic {pydantic.VERSION}, "
        f"pydantic-core {pydantic_core.__version__}, {platform.machine()}; "
        f"{args.number:,} events per run, best of {args.repeat}"
    )
    inputs = {"task.updated": wire(UPDATED), "message.chunk": wire(CHUNK)}
    for name, raw in inputs.items():
        fns = candidates(raw)
        if name == "message.chunk":  # the frozen comparison is about payload models
            fns = {
                k: v
                for k, v in fns.items()
                if not k.startswith(("union.validate_json, ", "same schema"))
            }
        print(f"\n{name} envelope, {len(raw)} bytes{'':<16}best µs/event  median")
        for label, (best, median) in measure(fns, args.number, args.repeat).items():
            print(f"  {label:<52} {best:7.2f}  {median:7.2f}")

    print("\nparse_event fallback paths (slow path, rare)")
    slow = {"unknown type": wire(UNKNOWN), "drifted payload": wire(DRIFTED)}
    for name, raw in slow.items():
        event = parse_event(raw)
        assert type(event) is TaskEvent, event
        assert (event.validation_error is None) == (name == "unknown type"), event
    fns = {name: functools.partial(parse_event, raw) for name, raw in slow.items()}
    for label, (best, median) in measure(fns, args.number, args.repeat).items():
        print(f"  {label:<52} {best:7.2f}  {median:7.2f}")

    # Sanity: the shipped parser types the payload.
    assert isinstance(parse_event(wire(UPDATED)).data, TaskUpdatedData)
    return 0


if __name__ == "__main__":
    sys.exit(main())
