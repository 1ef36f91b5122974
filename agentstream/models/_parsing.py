"""Parsing: JSON text (or a decoded dict) to the typed :class:`TaskEvent` subclass.

The fast path validates the whole event, payload included, in one pass
straight from the JSON text by a discriminated union over the per-type event
classes; this was measured to be the fastest way to get a typed payload
(``bench/models.py``, ``docs/decisions.md``). Only when that fails does the
slow path find out why: an unknown type or a payload that fails validation
still gives an event (untyped, the envelope intact); only an envelope that
cannot be understood raises :class:`~agentstream.errors.InvalidEventError`.
"""

import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Optional, Union, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .._compat import set_model_private
from ..errors import InvalidEventError
from ..event_types import EventType
from ._envelope import _EVENT_CLASSES, TaskEvent, _describe_error

__all__ = ["parse_event", "payload_model_for"]


# The payload type of every known wire type (``str`` for ``message.chunk``).
_PAYLOAD_TYPES: dict[EventType, type[Any]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cast(
        "type[Any]", cls.model_fields["data"].annotation
    )
    for cls in _EVENT_CLASSES
}

_TypedEvent: Any = Annotated[Union[_EVENT_CLASSES], Field(discriminator="type")]

# One validator for every known type: the payload is validated in the same pass
# as the envelope, straight from the JSON text (see docs/decisions.md).
# cache_strings="keys": event ids, times and summaries are new in every event,
# and caching them as well cost 0.1 µs per event (pydantic < 2.7 ignores it).
_EVENT_ADAPTER: "TypeAdapter[TaskEvent]" = TypeAdapter(
    _TypedEvent,
    # the oldest supported pydantic's ConfigDict lacks the key: hence the ignore
    config=ConfigDict(cache_strings="keys"),  # type: ignore[typeddict-unknown-key,unused-ignore]
)

# Its pydantic-core validator, called directly: TypeAdapter.validate_json's
# wrapper cost 0.3 µs per event (docs/decisions.md).
_validate_event_json: Callable[[Union[str, bytes]], TaskEvent] = (
    _EVENT_ADAPTER.validator.validate_json
)

# The payload validators, used on the slow path to explain a payload failure.
_PAYLOAD_ADAPTERS: dict[EventType, "TypeAdapter[Any]"] = {
    event_type: TypeAdapter(payload_type) for event_type, payload_type in _PAYLOAD_TYPES.items()
}


def payload_model_for(event_type: Union[EventType, str]) -> Optional[type[BaseModel]]:
    """The payload model of a wire type, or None.

    None for ``message.chunk`` (its payload is a plain ``str``) and for a
    type that is not in the vocabulary. Accepts an :class:`EventType` member
    (any alias) or a wire string such as ``"task.shipped"``.
    """
    if not isinstance(event_type, EventType):
        try:
            event_type = EventType(event_type)
        except ValueError:
            return None
    payload_type = _PAYLOAD_TYPES[event_type]
    if issubclass(payload_type, BaseModel):
        return payload_type
    return None


# Pydantic's per-instance private storage, set directly (see agentstream._compat).
_store_private = set_model_private


def parse_event(data: Union[str, bytes]) -> TaskEvent:
    """Parse one event from its JSON text (the SSE ``data`` field).

    Returns the :class:`TaskEvent` subclass for the type, with the payload
    validated. An unknown type gives a plain :class:`TaskEvent` with ``type``
    the wire string and ``data`` the raw value; a payload that fails
    validation gives a plain :class:`TaskEvent` with ``data`` the raw value
    and :attr:`TaskEvent.validation_error` set.

    Raises :class:`~agentstream.errors.InvalidEventError` (with ``raw``, and
    ``event_id`` when the envelope has a usable ``id``) only when the text is
    not JSON, is not a JSON object, lacks ``id`` or ``type``, or has an
    envelope field of the wrong type.
    """
    try:
        event = _validate_event_json(data)
    except ValidationError as exc:
        return _parse_slow(data, exc)
    _store_private(event, {"source": data})
    return event


def _parse_slow(data: Union[str, bytes], typed_error: ValidationError) -> TaskEvent:
    """The path taken when the one-pass validation failed: find out why.

    Either the type is unknown or the payload failed (the envelope alone
    validates, and its ``data`` is the raw payload), or the envelope itself
    is unusable (:class:`~agentstream.errors.InvalidEventError`).
    """
    try:
        event = TaskEvent.model_validate_json(data)
    except ValidationError as exc:
        text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
        try:
            decoded = json.loads(data)
        except ValueError as json_error:  # JSONDecodeError and UnicodeDecodeError
            raise InvalidEventError(
                f"event data is not valid JSON: {json_error}", raw=text
            ) from None
        except RecursionError:  # json.loads on arrays or objects nested thousands deep
            raise InvalidEventError(
                "event data is not valid JSON: nested too deeply", raw=text
            ) from None
        raise _invalid_envelope(decoded, exc, text) from exc
    return _untyped(event, typed_error)


def _from_python(data: Any) -> TaskEvent:
    """:meth:`TaskEvent.from_dict`: the same rules as :func:`parse_event`."""
    if not isinstance(data, Mapping):
        # Also keeps pydantic from passing a model instance through unchanged.
        raise _invalid_envelope(data, None, _dump_for_error(data))
    try:
        event = _EVENT_ADAPTER.validate_python(data)
    except ValidationError as typed_error:
        try:
            untyped = TaskEvent.model_validate(data)
        except ValidationError as exc:
            raise _invalid_envelope(data, exc, _dump_for_error(data)) from exc
        return _untyped(untyped, typed_error)
    _store_private(event, {"raw": data.get("data")})
    return event


def _untyped(event: TaskEvent, typed_error: ValidationError) -> TaskEvent:
    """Finish an event whose envelope is valid but whose payload is not typed.

    For an unknown type there is nothing to say; for a known type the payload
    is what failed: it is validated alone, for an error whose locations are
    the payload's.
    """
    error: Optional[ValidationError] = None
    if isinstance(event.type, EventType):
        try:
            _PAYLOAD_ADAPTERS[event.type].validate_python(event.data)
        except ValidationError as exc:
            error = exc
        else:  # pragma: no cover - JSON and Python validation disagree
            error = typed_error
    _store_private(event, {"raw": event.data, "validation_error": error})
    return event


def _dump_for_error(data: Any) -> str:
    """``data`` as text for an :class:`~agentstream.errors.InvalidEventError`."""
    try:
        return json.dumps(data, default=str)
    except (TypeError, ValueError):
        return repr(data)


def _invalid_envelope(
    decoded: Any, error: Optional[ValidationError], raw: str
) -> InvalidEventError:
    """The error for a decoded envelope that does not validate, saying why."""
    if not isinstance(decoded, Mapping):
        return InvalidEventError(
            f"event data is not a JSON object (got {type(decoded).__name__})", raw=raw
        )
    event_id = decoded.get("id")
    if not isinstance(event_id, str):
        event_id = None
    for key in ("id", "type"):
        if key not in decoded:
            return InvalidEventError(f"event has no {key!r} field", raw=raw, event_id=event_id)
    reason = _describe_error(error) if error is not None else "not a valid envelope"
    return InvalidEventError(f"invalid event envelope: {reason}", raw=raw, event_id=event_id)
