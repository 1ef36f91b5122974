"""Connection failures as short sentences, for the command line and the demo.

requests and urllib3 wrap the cause of a failed connection several layers
deep (``ConnectionError(MaxRetryError(... NewConnectionError(...)))``), and
their text quotes urllib3's own "Max retries exceeded", which is not
agentstream's retry count. A person wants the cause: "connection refused".
"""

from __future__ import annotations

import http.client
import socket
from typing import Optional

__all__ = ["describe_failure"]


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and what it wraps, outermost first (``__cause__``, urllib3's
    ``reason``, an exception passed as the first argument), without cycles."""
    seen: list[BaseException] = []
    pending: list[Optional[BaseException]] = [error]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        reason = getattr(current, "reason", None)
        first_arg = current.args[0] if current.args else None
        pending.extend(
            [
                current.__cause__,
                reason if isinstance(reason, BaseException) else None,
                first_arg if isinstance(first_arg, BaseException) else None,
                current.__context__,
            ]
        )
    return seen


def describe_failure(error: BaseException) -> str:
    """One readable phrase for why a connection failed or dropped.

    The innermost socket-level cause when there is one ("connection refused",
    "name or service not known", "timed out", "the connection broke
    mid-stream"), else the error's own message.
    """
    for cause in reversed(_causes(error)):
        if isinstance(cause, (http.client.IncompleteRead, http.client.RemoteDisconnected)):
            return "the server closed the connection mid-stream"
        if isinstance(cause, (socket.timeout, TimeoutError)):
            return "timed out"
        if type(cause).__module__ == "builtins" and isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[0].lower() + cause.strerror[1:]
        if isinstance(cause, socket.gaierror) and cause.strerror:
            return cause.strerror[0].lower() + cause.strerror[1:]
    text = str(error)
    if "connection broken mid-stream" in text or "server closed the stream" in text:
        return "the server closed the connection mid-stream"
    return text
