"""The error hierarchy: typed by status, context kept, never the API key."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import responses

from agentstream import errors
from agentstream.errors import error_for_response, parse_retry_after
from agentstream.sse import EventSource, RetryPolicy

URL = "http://agentstream.test/task-events/stream"
KEY = "sk_live_0123456789abcdef"


def body(code: str, message: str = "nope", **details: object) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_cursor", errors.BadRequestError),
        (401, "unauthenticated", errors.AuthenticationError),
        (403, "forbidden", errors.PermissionDeniedError),
        (403, "insufficient_scope", errors.InsufficientScopeError),
        (404, "not_found", errors.NotFoundError),
        (409, "conflict", errors.ConflictError),
        (410, "cursor_expired", errors.CursorExpiredError),
        (429, "rate_limited", errors.RateLimitError),
        (500, "internal", errors.ServerError),
        (503, "unavailable", errors.ServerError),
        (418, "teapot", errors.APIError),
    ],
)
def test_json_error_bodies_become_typed_errors(status: int, code: str, cls: type) -> None:
    err = error_for_response(
        status, body(code, "went wrong", requiredScope="events:read"), {"X-Request-Id": "r1"}
    )
    assert type(err) is cls
    assert isinstance(err, errors.AgentStreamError)
    assert (err.status, err.code, err.message) == (status, code, "went wrong")
    assert err.details == {"requiredScope": "events:read"}
    assert err.headers == {"X-Request-Id": "r1"}
    assert str(err) == f"HTTP {status} {code}: went wrong"


def test_insufficient_scope_names_the_scope() -> None:
    err = error_for_response(403, body("insufficient_scope", requiredScope="events:read"), {})
    assert isinstance(err, errors.InsufficientScopeError)
    assert err.required_scope == "events:read"


@pytest.mark.parametrize(
    ("status", "cls"),
    [(502, errors.ServerError), (401, errors.AuthenticationError), (429, errors.RateLimitError)],
)
def test_non_json_bodies_still_get_the_right_type(status: int, cls: type) -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    err = error_for_response(status, html, {}, reason="Bad Gateway")
    assert type(err) is cls
    assert err.message == "Bad Gateway"
    assert err.code == cls.default_code
    assert error_for_response(status, b"\xff\xfe", {}).message == "request failed"


def test_bad_input_errors_are_value_errors_too() -> None:
    assert isinstance(error_for_response(400, b"", {}), ValueError)
    assert isinstance(errors.EventTooLargeError(10, 5), ValueError)


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 30
    err = error_for_response(429, b"", {"Retry-After": "3"})
    assert isinstance(err, errors.RateLimitError)
    assert err.retry_after == 3.0


@responses.activate
@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_stream_statuses_are_raised_with_the_key_nowhere(status: int) -> None:
    responses.get(URL, status=status, body=body("some_code", "server said no"))
    source = EventSource(URL, headers={"Authorization": f"Bearer {KEY}"})
    with pytest.raises(errors.APIError) as info:
        next(source)
    err = info.value
    assert err.status == status
    assert len(responses.calls) == 1
    text = " ".join([str(err), repr(err), repr(err.headers), repr(err.details), repr(source)])
    assert KEY not in text


@responses.activate
def test_a_proxy_html_502_is_retried_then_reported_as_server_error() -> None:
    responses.get(URL, status=502, body="<html>Bad Gateway</html>", content_type="text/html")
    source = EventSource(URL, retry=RetryPolicy(initial_delay=0, max_attempts=1))
    with pytest.raises(errors.RetryBudgetExhaustedError) as info:
        next(source)
    assert isinstance(info.value.last_error, errors.ServerError)
    assert info.value.last_error.status == 502
    assert len(responses.calls) == 2
