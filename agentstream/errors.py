"""Errors raised by agentstream.

Every error derives from :class:`AgentStreamError`. Errors that come from an
HTTP answer derive from :class:`APIError` and carry the status, the server's
error ``code``, ``message`` and ``details``, and the response headers. Nothing
here ever holds or prints the API key: headers kept on an error are the
*response* headers, never the request's.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Optional

__all__ = [
    "APIError",
    "AgentStreamError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionLostError",
    "ContentTypeError",
    "CursorExpiredError",
    "CursorMissingError",
    "EventTooLargeError",
    "InsufficientScopeError",
    "InvalidEventError",
    "LeaseLostError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedirectError",
    "ResponseBodyError",
    "ResponseTooLargeError",
    "RetryBudgetExhaustedError",
    "ServerError",
    "StoreResetError",
    "StreamError",
    "WebhookVerificationError",
    "error_for_response",
    "parse_retry_after",
    "redact",
    "secrets_in",
]


class AgentStreamError(Exception):
    """Root of every error agentstream raises."""


class ConfigurationError(AgentStreamError, ValueError):
    """The client is misconfigured (for example, no API key). Says how to fix it."""


class StreamError(AgentStreamError):
    """A problem with the event stream itself rather than with one HTTP answer."""


class ConnectionLostError(StreamError, ConnectionError):
    """The connection dropped or could not be made (network error, timeout, EOF).

    Streams retry these by themselves; one reaches the caller only as the
    ``last_error`` of :class:`RetryBudgetExhaustedError`, or on a happening.
    """


class RetryBudgetExhaustedError(StreamError):
    """The stream gave up reconnecting: the retry budget is spent.

    ``last_error`` is the failure that used up the budget; ``attempts`` is how
    many consecutive attempts failed.
    """

    last_error: BaseException
    """The failure that used up the budget."""
    attempts: int
    """How many consecutive attempts failed."""

    def __init__(self, message: str, *, last_error: BaseException, attempts: int) -> None:
        super().__init__(message)
        self.last_error = last_error
        self.attempts = attempts


class EventTooLargeError(StreamError, ValueError):
    """An event grew past the configured ``max_event_size`` (in bytes).

    The stream stops: reconnecting would receive the same event again. Raise
    the limit if such events are legitimate.
    """

    size: int
    """How many bytes of the event had arrived when it was stopped."""
    limit: int
    """The configured ``max_event_size``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"event exceeds max_event_size: at least {size} bytes received, limit is "
            f"{limit} bytes; raise max_event_size if events this large are expected"
        )
        self.size = size
        self.limit = limit


class InvalidEventError(StreamError, ValueError):
    """An event could not be understood (not JSON, or missing ``id``/``type``).

    Reported, never allowed to end the stream. ``raw`` is the event's data.
    """

    raw: str
    """The event's data as received."""
    event_id: Optional[str]
    """The event's ``id``, when the envelope had a usable one."""

    def __init__(self, message: str, *, raw: str, event_id: Optional[str] = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.event_id = event_id


class APIError(AgentStreamError):
    """An HTTP answer that is not a success.

    Attributes: ``status`` (HTTP status code), ``code`` (the server's error
    code, or a generic one derived from the status when the body is not the
    agentstream JSON error shape), ``message``, ``details`` (dict) and
    ``headers`` (the response headers).
    """

    default_code: ClassVar[str] = "http_error"
    """The ``code`` of an answer whose body names none."""

    status: int
    """The HTTP status code."""
    code: str
    """The server's error code, or :attr:`default_code` when the body gives none."""
    message: str
    """The server's message (credentials it echoed are redacted)."""
    details: dict[str, Any]
    """The server's ``details`` object (empty when there is none)."""
    headers: dict[str, str]
    """The response headers (never the request's)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: Optional[str] = None,
        details: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or self.default_code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r})"


class ResponseBodyError(APIError):
    """The client refused to read a response body: one in a Content-Encoding it
    did not ask for (only gzip and deflate are accepted, one layer), or one
    too large (:class:`ResponseTooLargeError`). ``status`` is the response's.
    """

    default_code = "bad_response_body"


class ResponseTooLargeError(ResponseBodyError):
    """A response body is larger than the client's ``max_body_size``.

    ``limit`` is that size; ``size`` is at least how many bytes the body
    holds (decompressed): its Content-Length, or what was read before
    stopping. Reading stops there, so memory stays bounded.
    """

    default_code = "response_too_large"

    def __init__(self, message: str, *, status: int, size: int, limit: int, **kwargs: Any) -> None:
        super().__init__(message, status=status, **kwargs)
        self.size = size
        self.limit = limit


class StreamHTTPError(APIError, StreamError):
    """Base for stream-only HTTP problems (bad content type, broken redirect)."""


class ContentTypeError(StreamHTTPError):
    """The server answered 200 with a Content-Type other than ``text/event-stream``.

    Usually the URL points at something that is not an SSE endpoint (an HTML
    login page from a proxy, a JSON API). Not retried.
    """

    default_code = "bad_content_type"


class RedirectError(StreamHTTPError):
    """The server answered with a redirect that cannot be followed (no ``Location``)."""

    default_code = "bad_redirect"


class BadRequestError(APIError, ValueError):
    """400: the request was invalid (for example an unknown cursor)."""

    default_code = "bad_request"


class AuthenticationError(APIError):
    """401: the API key is missing or not valid."""

    default_code = "unauthenticated"


class PermissionDeniedError(APIError):
    """403: the key is valid but may not do this."""

    default_code = "forbidden"


class InsufficientScopeError(PermissionDeniedError):
    """403 ``insufficient_scope``: the key lacks ``required_scope``."""

    default_code = "insufficient_scope"

    @property
    def required_scope(self) -> Optional[str]:
        """The scope the server asked for, from ``details.requiredScope``."""
        value = self.details.get("requiredScope")
        return value if isinstance(value, str) else None


class NotFoundError(APIError):
    """404: no such resource."""

    default_code = "not_found"


class ConflictError(APIError):
    """409: the request conflicts with the resource's state."""

    default_code = "conflict"


class CursorExpiredError(APIError):
    """410 ``cursor_expired``: the cursor is older than the server keeps.

    Events were lost from the server's retention window; the stream never
    resumes silently past such a gap. Start again without a cursor (live end)
    or from a cursor the server still has.
    """

    default_code = "cursor_expired"


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` is the server's wait, in seconds."""

    default_code = "rate_limited"

    @property
    def retry_after(self) -> Optional[float]:
        """Seconds to wait, from the ``Retry-After`` header, or None."""
        return parse_retry_after(self.headers.get("Retry-After"))


class ServerError(APIError):
    """5xx: the server failed. Streams retry these."""

    default_code = "server_error"

    @property
    def retry_after(self) -> Optional[float]:
        """Seconds to wait, from the ``Retry-After`` header (503), or None."""
        return parse_retry_after(self.headers.get("Retry-After"))


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: CursorExpiredError,
    429: RateLimitError,
}


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP date. None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def secrets_in(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The credentials in request headers, to keep out of error texts.

    The values of ``Authorization``, ``Proxy-Authorization``, ``Cookie`` and any
    header whose name mentions a key or a token, and the credential part of a
    ``Bearer``/``Basic`` value.
    """
    found: list[str] = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in ("authorization", "proxy-authorization", "cookie") or any(
            word in lowered for word in ("key", "token", "secret")
        ):
            found.append(value)
            _, _, credential = value.partition(" ")
            if credential.strip():
                found.append(credential.strip())
    return tuple(secret for secret in found if len(secret) >= 4)


def redact(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` (text, or dicts and lists of it) with every secret replaced."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            value = value.replace(secret, "<redacted>")
        return value
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item, secrets) for item in value]
    return value


def error_for_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    reason: str = "",
    secrets: tuple[str, ...] = (),
) -> APIError:
    """Build the typed error for an HTTP answer.

    The body may be the agentstream JSON shape
    ``{"error": {"code", "message", "details"}}`` or anything else (a proxy's
    HTML 502 page): the class follows the status either way. ``secrets``
    (the request's credentials, see :func:`secrets_in`) are replaced by
    ``<redacted>`` wherever the server echoed them in the message or details.
    """
    code: Optional[str] = None
    message = ""
    details: dict[str, Any] = {}
    try:
        parsed = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        err = parsed["error"]
        code = err.get("code") if isinstance(err.get("code"), str) else None
        message = err.get("message") if isinstance(err.get("message"), str) else ""
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
    if not message:
        message = reason or "request failed"
    message, details = redact(message, secrets), redact(details, secrets)
    cls: type[APIError]
    if status >= 500:
        cls = ServerError
    elif status == 403 and code == "insufficient_scope":
        cls = InsufficientScopeError
    else:
        cls = _BY_STATUS.get(status, APIError)
    return cls(message, status=status, code=code, details=details, headers=headers)


class LeaseLostError(AgentStreamError):
    """A fenced cursor save was refused: a newer lease was granted on ``name``.

    The listener that got it no longer holds the lease (it expired while the
    process was paused, or it was released); another one may be handling the
    stream now. It must stop at once and never move the cursor. ``token`` is
    the token the save carried, ``current_token`` the newest one the store
    granted (None when the store has no lease record at all).
    """

    def __init__(self, name: str, token: int, current_token: Optional[int]) -> None:
        newest = "none" if current_token is None else str(current_token)
        super().__init__(
            f"lease on {name!r} lost: save with fencing token {token} refused, "
            f"the newest token granted is {newest}"
        )
        self.name = name
        self.token = token
        self.current_token = current_token


class StoreResetError(AgentStreamError):
    """A cursor store lost its data: its token counter went backwards.

    Raised by ``acquire`` when the store grants a token lower than (or equal to,
    for a new grant) one the same store object returned before, as happens when
    a Redis server is flushed or restarts without persistence. The saved cursor
    is gone too; resuming from nothing would skip events silently, so the
    listener fails instead. Restore the store's data, or decide explicitly
    where to resume.
    """

    def __init__(self, name: str, token: int, highest_seen: int) -> None:
        super().__init__(
            f"the cursor store lost its data for {name!r}: it granted fencing token {token} "
            f"after having granted {highest_seen}; its cursors and tokens were reset "
            "(a flushed store, or a Redis restarted without persistence)"
        )
        self.name = name
        self.token = token
        self.highest_seen = highest_seen


class CursorMissingError(AgentStreamError):
    """A listener with ``on_missing_cursor="error"`` found no cursor to resume from.

    The store has nothing saved for ``name`` and no ``StreamOptions(cursor=...)``
    was given, so an unscoped stream would start at the live end and skip
    whatever happened before. Restore the store's data, or pass a cursor.
    """

    def __init__(self, name: str, store: str) -> None:
        super().__init__(
            f"listener {name!r}: {store} has no cursor for it and no StreamOptions(cursor=...) "
            "was given; refusing to start at the live end (on_missing_cursor='error')"
        )
        self.name = name


class WebhookVerificationError(AgentStreamError, ValueError):
    """A webhook delivery was refused: it is not proven to come from the sender.

    ``reason`` says why, one of the constants below (stable strings, safe to
    log and to answer with): a required header is missing, a header is
    malformed, the timestamp is outside the tolerance, no signature matches
    any of the secrets, or the verified body is not an event envelope. The
    message never contains a secret nor a signature.
    """

    MISSING_HEADER = "missing_header"
    INVALID_HEADER = "invalid_header"
    TIMESTAMP_OUTSIDE_TOLERANCE = "timestamp_outside_tolerance"
    NO_MATCHING_SIGNATURE = "no_matching_signature"
    NOT_AN_ENVELOPE = "not_an_envelope"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __repr__(self) -> str:
        return f"WebhookVerificationError(reason={self.reason!r})"
