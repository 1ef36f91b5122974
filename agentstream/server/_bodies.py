"""JSON in and out of the reference server's API: request bodies, answers, error answers.

A request body is read within a byte limit and parsed into plain JSON values
the store can keep as they are: numbers are finite (``1e400`` is refused, it
would be ``inf``), nesting is bounded (deep enough to pass ``json.loads`` yet
too deep to encode again is refused up front), and text fields that become
database keys hold no lone surrogate (``"\\ud800"``). Each failure is an
:class:`ApiError`, so bad input is a 4xx JSON answer and never a 500.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Optional, Protocol

from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "MAX_JSON_DEPTH",
    "Answer",
    "ApiError",
    "JsonAnswer",
    "field_error",
    "json_response",
    "json_text_response",
    "read_json_object",
    "text_field",
]

#: Deepest nesting of arrays and objects a request body may have.
MAX_JSON_DEPTH = 100


class ApiError(Exception):
    """An error answer: status, code, message, details and extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """``{"error": {"code", "message", "details"}}``."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def response(self) -> JsonAnswer:
        """The JSON error response."""
        return json_response(self.body(), self.status, self.headers)


class Answer(Protocol):
    """What an endpoint returns: a WSGI application that sends the answer (werkzeug's
    ``Response`` is one, :class:`JsonAnswer` another)."""

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]: ...


class JsonAnswer:
    """A JSON answer, never cached, sent as werkzeug's ``Response`` would send it
    (status line, ``Content-Type``, ``Content-Length``, ``Cache-Control: no-store``,
    the extra headers; no body to a ``HEAD``) without building one: werkzeug's
    header machinery was 10% of a publish's instructions
    (``bench/server_fanout.py --instructions``)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, text: str, status: int = 200, headers: Optional[Mapping[str, str]] = None
    ) -> None:
        self.status = status
        self.body = text.encode()
        self.headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(self.body))),
            ("Cache-Control", "no-store"),
        ]
        self.headers.extend((headers or {}).items())

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        reason = HTTP_STATUS_CODES.get(self.status, "unknown").upper()
        start_response(f"{self.status} {reason}", self.headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [self.body]


def json_response(
    body: Any, status: int = 200, headers: Optional[Mapping[str, str]] = None
) -> JsonAnswer:
    """A compact JSON answer, never cached."""
    return JsonAnswer(json.dumps(body, separators=(",", ":")), status, headers)


def json_text_response(
    text: str, status: int = 200, headers: Optional[Mapping[str, str]] = None
) -> JsonAnswer:
    """:func:`json_response` of JSON already encoded."""
    return JsonAnswer(text, status, headers)


def field_error(field: str, expected: str) -> ApiError:
    """400 ``invalid_request`` for a body field of the wrong kind."""
    return ApiError(
        400,
        "invalid_request",
        f"{field} must be {expected}",
        {"field": field, "expected": expected},
    )


def text_field(
    body: Mapping[str, Any], field: str, expected: str = "a string or null"
) -> Optional[str]:
    """The optional string ``body[field]`` (None when absent or null).

    Refuses another type and a string that is not valid Unicode (a lone
    surrogate, which JSON's ``\\uXXXX`` escapes can spell but no database
    or UTF-8 encoder accepts).
    """
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not _is_unicode(value):
        raise field_error(field, expected)
    return value


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _too_deep(value: Any, limit: int) -> bool:
    """True when arrays and objects nest deeper than ``limit`` (iterative: no recursion)."""
    if not isinstance(value, (dict, list)):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _timed_out() -> ApiError:
    return ApiError(408, "request_timeout", "the request body did not arrive in time")


def _read_up_to(request: Request, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body: reads until its end (one read may return less)."""
    parts: list[bytes] = []
    total = 0
    stream = request.stream
    while total < limit:
        part = stream.read(limit - total)
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, or an :class:`ApiError` saying what is wrong.

    413 over ``max_bytes``; 400 ``invalid_json`` for what does not parse,
    is not UTF-8, holds NaN, Infinity or a number out of range, or nests
    deeper than :data:`MAX_JSON_DEPTH`; 400 ``invalid_body`` for a broken
    chunked encoding; 408 ``request_timeout`` when the body stops arriving.
    """
    length = request.content_length
    too_large = ApiError(
        413,
        "payload_too_large",
        f"the request body exceeds {max_bytes} bytes",
        {"maxBytes": max_bytes},
    )
    if length is not None and length > max_bytes:
        raise too_large
    try:
        raw = _read_up_to(request, max_bytes + 1)
    except ClientDisconnected as exc:  # werkzeug's LimitedStream, for a Content-Length body
        if isinstance(exc.__context__, (TimeoutError, socket.timeout)):
            raise _timed_out() from None
        raise ApiError(
            400, "invalid_body", "the request body is shorter than its Content-Length"
        ) from None
    except (TimeoutError, socket.timeout):
        raise _timed_out() from None
    except ConnectionError:
        raise  # the client is gone: nobody to answer
    except OSError as exc:  # werkzeug's de-chunker: a bad chunk size line or terminator
        raise ApiError(
            400, "invalid_body", f"the chunked request body is malformed: {exc}"
        ) from None
    if len(raw) > max_bytes:
        raise too_large
    if not raw.strip():
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    try:
        value = json.loads(
            raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
        )
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the request body is not UTF-8") from None
    except RecursionError:
        value = None  # reported as too deep below
        too_deep = True
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"the request body is not JSON: {exc}") from None
    else:
        # A body cannot nest deeper than it has brackets: count them (in C) before walking.
        brackets = raw.count(b"[") + raw.count(b"{")
        too_deep = brackets > MAX_JSON_DEPTH and _too_deep(value, MAX_JSON_DEPTH)
    if too_deep:
        raise ApiError(
            400,
            "invalid_json",
            f"the request body nests deeper than {MAX_JSON_DEPTH} levels",
            {"maxDepth": MAX_JSON_DEPTH},
        )
    if not isinstance(value, dict):
        raise ApiError(
            400,
            "invalid_request",
            "the request body must be a JSON object",
            {"field": None, "expected": "object"},
        )
    return value
