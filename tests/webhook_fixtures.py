"""Helpers of the webhook tests: deliveries signed by the specification's own
library (not by agentstream's signer), a real receiver served by werkzeug on
127.0.0.1, and a handler that records what it got and lets a test wait on it."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from standardwebhooks import Webhook
from werkzeug.serving import BaseWSGIServer, make_server

from agentstream.models import TaskEvent

from .server_fixtures import Api

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


def envelope(
    event_id: str = "evt_000000000001", type_: str = "message.chunk", **extra: Any
) -> dict[str, Any]:
    data = extra.pop("data", "hello")
    return {
        "id": event_id,
        "type": type_,
        "sequence": 1,
        "occurredAt": "2026-11-20T10:00:00.123Z",
        "taskId": "task_1",
        "organizationId": "org_1",
        "taskVersion": 1,
        "traceId": None,
        "data": data,
        **extra,
    }


def body_of(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def sign(
    body: bytes,
    *secrets: str,
    msg_id: str = "evt_000000000001",
    timestamp: Optional[int] = None,
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, signed by ``standardwebhooks`` itself."""
    stamp = int(time.time()) if timestamp is None else timestamp
    when = datetime.fromtimestamp(stamp, tz=timezone.utc)
    signatures = [Webhook(s).sign(msg_id, when, body.decode()) for s in secrets or (SECRET,)]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": " ".join(signatures),
    }


def agentrail_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-AgentRail-Signature": f"sha256={digest}"}


class Recorder:
    """A handler that records each event id it ran for; ``fail`` makes it raise."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.calls: Counter[str] = Counter()
        self.events: list[TaskEvent] = []
        self.fail: Callable[[TaskEvent], bool] = lambda event: False
        self.threads: set[str] = set()

    def __call__(self, event: TaskEvent) -> None:
        with self._cond:
            self.calls[event.id] += 1
            self.events.append(event)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()
        if self.fail(event):
            raise RuntimeError(f"handler failed on {event.id}")

    def wait_for(self, predicate: Callable[[Counter[str]], bool], timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.calls), timeout)


class ServedApp:
    """A WSGI app on werkzeug's threaded server on 127.0.0.1 (a real socket)."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.app = app
        self.port = port
        self._server: Optional[BaseWSGIServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks"

    def start(self) -> ServedApp:
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> ServedApp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Capture:
    """A WSGI app that records each delivery (raw body, headers) and answers
    ``status`` (a callable of the delivery count, so a test can fail the first ones)."""

    def __init__(self, status: Callable[[int], int] = lambda count: 200) -> None:
        self.status = status
        self._cond = threading.Condition()
        self.deliveries: list[tuple[bytes, dict[str, str]]] = []

    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        with self._cond:
            self.deliveries.append((body, headers))
            count = len(self.deliveries)
            self._cond.notify_all()
        status = self.status(count)
        start_response(f"{status} X", [("Content-Type", "text/plain")])
        return [b"ok"]

    def wait_count(self, count: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.deliveries) >= count, timeout)


def subscribe(api: Api, url: str, **body: Any) -> dict[str, Any]:
    response = api.request(
        "POST", "/task-webhook-subscriptions", json={"url": url, "secret": SECRET, **body}
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def task_event_ids(api: Api, task_id: str) -> list[str]:
    """Every event id of a finished (or finishing) task, read from the stream."""
    with api.stream(taskId=task_id, timeout=20) as reader:
        return [frame.envelope["id"] for frame in reader.rest() if frame.is_event]
