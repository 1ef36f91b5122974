"""A small WSGI app that starts a Listener at import, as a web app would; for
tests/test_gunicorn.py (``gunicorn tests.gunicorn_app:app``).

Configured by the environment: ``AGENTSTREAM_BASE_URL``, ``AGENTSTREAM_API_KEY``,
``LEASE_DB`` (the SQLiteCursorStore every process shares), ``LEASE_RECORDS``
(a file each handled event is appended to: ``<event id> <pid> <token>``),
``LEASE_START`` (where a new subscription starts), ``LEASE_TTL``, and
``LEASE_RESTART_AFTER_FORK=1`` for ``--preload`` (the listener is started in
the master at import; each forked worker restarts its own copy).

``GET /`` answers ``<pid> <state> <lease token>`` of the process that served it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Callable

from agentstream import Client, Registry, SQLiteCursorStore, StreamOptions, TaskEvent
from agentstream.sse import RetryPolicy

registry = Registry()
records = os.open(os.environ["LEASE_RECORDS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


@registry.on("message.chunk")
def handle(event: TaskEvent) -> None:
    token = listener.health().lease_token
    os.write(records, f"{event.id} {os.getpid()} {token}\n".encode())


client = Client(retry=RetryPolicy.forever(initial_delay=0.01, max_delay=0.2))
listener = client.listen(
    StreamOptions(event_types=["message.chunk"], cursor=os.environ["LEASE_START"]),
    registry=registry,
    cursor_store=SQLiteCursorStore(os.environ["LEASE_DB"]),
    name="gunicorn-app",
    lease_ttl=float(os.environ.get("LEASE_TTL", "1.5")),
    save_interval=0.1,
    restart_after_fork=os.environ.get("LEASE_RESTART_AFTER_FORK") == "1",
)
listener.start()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    health = listener.health()
    body = f"{os.getpid()} {health.state.value} {health.lease_token}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
