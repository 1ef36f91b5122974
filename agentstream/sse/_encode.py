"""Writing the wire format: one event or comment as the bytes an SSE reader parses.

What the reference server sends and what the live-page helpers
(:mod:`agentstream.contrib`) send to a browser come from here, so both
write the same frames. The parser (:mod:`._parser`) reads what these write.
"""

from __future__ import annotations

import re
from typing import Optional

__all__ = ["encode_comment", "encode_event", "encode_retry"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode_event(
    data: str,
    *,
    event: Optional[str] = None,
    id: Optional[str] = None,
    retry: Optional[int] = None,
) -> bytes:
    """One event: ``id``, ``event``, ``retry`` and ``data`` lines, then a blank line.

    ``data`` with line breaks (CR, LF or CRLF) becomes one ``data:`` line per
    line, which a reader joins back with ``\\n``. An ``id`` or ``event`` that
    a reader could not read back as given (a line break, or NUL in an id,
    which readers ignore) and a negative ``retry`` raise ``ValueError``.
    """
    head = ""
    if id is not None:
        if "\n" in id or "\r" in id or "\0" in id:
            raise ValueError("an SSE event id cannot contain CR, LF or NUL")
        head = f"id: {id}\n"
    if event is not None:
        if "\n" in event or "\r" in event:
            raise ValueError("an SSE event type cannot contain CR or LF")
        head += f"event: {event}\n"
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"retry must be a non-negative number of milliseconds, got {retry!r}")
        head += f"retry: {retry}\n"
    if "\n" in data or "\r" in data:
        body = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    else:
        body = f"data: {data}\n"
    return f"{head}{body}\n".encode()


def encode_comment(text: str = "") -> bytes:
    """A comment block (``: text``, then a blank line): readers skip it; it keeps
    a connection alive. Text with line breaks becomes one comment line per line."""
    lines = _LINE_BREAK.split(text) if text else [""]
    return "".join(f": {line}\n" if line else ":\n" for line in lines).encode() + b"\n"


def encode_retry(milliseconds: int) -> bytes:
    """A block with only a ``retry:`` field: how long a reader waits before it
    reconnects (a browser's ``EventSource`` obeys it); no event is dispatched."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int) or milliseconds < 0:
        raise ValueError(
            f"retry must be a non-negative number of milliseconds, got {milliseconds!r}"
        )
    return f"retry: {milliseconds}\n\n".encode()
