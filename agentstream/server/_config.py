"""``ServerConfig``: how the reference server treats connections (timeouts, caps, backlogs)."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["ServerConfig"]


@dataclass(frozen=True)
class ServerConfig:
    """Limits of the reference server's HTTP layer and of its streams.

    :param header_timeout: seconds a client has to send the request line and
        headers, all of them (a client that trickles them, "slowloris", gets
        408 ``request_timeout`` and is disconnected).
    :param body_timeout: seconds a client has to send a request body, all of
        it (half a body, chunked or not: 408, disconnected).
    :param keepalive_timeout: seconds an idle kept-alive connection waits for
        its next request before the server closes it.
    :param write_timeout: seconds a write to a client may block (a client
        that stops reading is disconnected).
    :param max_connections: open connections at most; one more is answered
        at once with 503 ``server_busy`` and ``Retry-After``, then closed.
        Every open stream is a connection (and a thread).
    :param retry_after: the ``Retry-After`` seconds of that 503.
    :param stream_backlog: events a stream may have waiting to be written;
        a stream whose client reads slower than events arrive is
        disconnected when it has more (its client resumes from its cursor,
        losing nothing), so that it never holds up the others.
    :param fanout_interval: seconds between two writes of new events to a
        stream, at least, while events keep coming: the events committed in
        between go out together, in one ``send``. An event that comes after a
        quiet spell longer than this is sent at once.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 15.0
    write_timeout: float = 30.0
    max_connections: int = 1024
    retry_after: int = 1
    stream_backlog: int = 10_000
    fanout_interval: float = 0.005

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not value > 0:
                raise ValueError(f"ServerConfig.{item.name} must be positive, not {value!r}")
