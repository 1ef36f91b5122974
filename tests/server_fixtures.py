"""Helpers for the reference server's tests: running servers, an HTTP API, an SSE reader.

The SSE reader parses the stream itself (the project's client layer is
tested elsewhere): it splits on blank lines, reads ``id``, ``event``,
``data`` and comment lines, and never waits for more bytes than the next
frame needs, so a test sees each event as soon as the server sent it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import requests

from agentstream.server import ReferenceServer

FAST_PACE = 0.0
READ_TIMEOUT = 5.0


@dataclass
class Frame:
    """One SSE block: its comment lines and fields (None when absent)."""

    comments: list[str] = field(default_factory=list)
    id: Optional[str] = None
    event: Optional[str] = None
    data: Optional[str] = None

    @property
    def is_event(self) -> bool:
        return self.data is not None

    @property
    def envelope(self) -> dict[str, Any]:
        assert self.data is not None, "not an event"
        value: dict[str, Any] = json.loads(self.data)
        return value

    @property
    def sequence(self) -> int:
        return int(self.envelope["sequence"])


class SSEReader:
    """Reads frames from a streaming ``requests`` response, one at a time."""

    def __init__(self, response: requests.Response, chunk_size: Optional[int] = None) -> None:
        self.response = response
        self._chunks = response.iter_content(chunk_size=chunk_size)
        self._buffer = b""
        self.comments: list[str] = []
        self.raw_blocks: list[bytes] = []

    def next_frame(self) -> Optional[Frame]:
        """The next frame, or None at the end of the stream."""
        while b"\n\n" not in self._buffer:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return None
            self._buffer += chunk
        block, self._buffer = self._buffer.split(b"\n\n", 1)
        self.raw_blocks.append(block)
        frame = Frame()
        for line in block.decode("utf-8").split("\n"):
            if line.startswith(":"):
                frame.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                frame.id = value
            elif name == "event":
                frame.event = value
            elif name == "data":
                frame.data = value if frame.data is None else f"{frame.data}\n{value}"
        self.comments.extend(frame.comments)
        return frame

    def next_event(self) -> Frame:
        """The next frame that is an event (comments are recorded in ``comments``)."""
        while True:
            frame = self.next_frame()
            if frame is None:
                raise EOFError("the stream ended")
            if frame.is_event:
                return frame

    def events(self, count: int) -> list[Frame]:
        return [self.next_event() for _ in range(count)]

    def rest(self) -> list[Frame]:
        """Every remaining event frame, up to the end of the stream."""
        frames: list[Frame] = []
        while True:
            frame = self.next_frame()
            if frame is None:
                return frames
            if frame.is_event:
                frames.append(frame)

    def close(self) -> None:
        self.response.close()


class Api:
    """A ``requests`` session aimed at one server, with a key."""

    def __init__(self, base_url: str, key: Optional[str]) -> None:
        self.base_url = base_url
        self.key = key
        self.session = requests.Session()

    def headers(self, key: Optional[str] = None, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        used = self.key if key is None else key
        if used:
            headers["Authorization"] = f"Bearer {used}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        key: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        **kwargs: Any,
    ) -> requests.Response:
        all_headers = self.headers(key)
        all_headers.update(headers or {})
        kwargs.setdefault("timeout", READ_TIMEOUT)
        response = self.session.request(method, self.base_url + path, headers=all_headers, **kwargs)
        response.close()  # bodies here are small and already read
        return response

    def create_task(self, prompt: str = "Write a haiku", **body: Any) -> dict[str, Any]:
        response = self.request("POST", "/tasks", json={"prompt": prompt, **body})
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    def publish(self, type_: str, data: Any = None, **body: Any) -> dict[str, Any]:
        payload = {"type": type_, **body}
        if data is not None:
            payload["data"] = data
        response = self.request("POST", "/task-events", json=payload)
        assert response.status_code == 201, response.text
        envelope: dict[str, Any] = response.json()
        return envelope

    @contextlib.contextmanager
    def stream(
        self,
        *,
        key: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: float = READ_TIMEOUT,
        chunk_size: Optional[int] = None,
        **params: Any,
    ) -> Iterator[SSEReader]:
        """Open the stream (status 200 expected) and yield its reader; closes it after."""
        response = self._open_stream(key, headers, params, (READ_TIMEOUT, timeout))
        try:
            assert response.status_code == 200, response.text
            reader = SSEReader(response, chunk_size)
            first = reader.next_frame()
            assert first is not None
            assert first.comments == ["connected"], first
            yield reader
        finally:
            response.close()

    def stream_response(
        self,
        *,
        key: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        **params: Any,
    ) -> requests.Response:
        """The stream request's response when it is not expected to stream (an error, 204)."""
        response = self._open_stream(key, headers, params, READ_TIMEOUT)
        try:
            response.content  # noqa: B018 - an error body is small and complete
        finally:
            response.close()
        return response

    def _open_stream(
        self,
        key: Optional[str],
        headers: Optional[Mapping[str, str]],
        params: dict[str, Any],
        timeout: Union[float, tuple[float, float]],
    ) -> requests.Response:
        all_headers = self.headers(key)
        all_headers.update(headers or {})
        return requests.get(
            self.base_url + "/task-events/stream",
            params=params,
            headers=all_headers,
            stream=True,
            timeout=timeout,
        )

    def close(self) -> None:
        self.session.close()


class ServerFactory:
    """Starts reference servers for one test and stops them all at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self._servers: list[ReferenceServer] = []
        self._apis: list[Api] = []

    def start(self, db_name: Optional[str] = "events.sqlite3", **kwargs: Any) -> ReferenceServer:
        kwargs.setdefault("agent_pace", FAST_PACE)
        db = None if db_name is None else self.tmp_path / db_name
        server = ReferenceServer(db, **kwargs)
        self._servers.append(server)
        return server.start()

    def api(self, server: ReferenceServer, key: Optional[str] = None) -> Api:
        api = Api(server.url, server.api_key if key is None else key)
        self._apis.append(api)
        return api

    def close(self) -> None:
        for api in self._apis:
            api.close()
        for server in self._servers:
            server.stop()


def error_of(response: requests.Response) -> dict[str, Any]:
    """The ``error`` object of a JSON error response (checks the shape)."""
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], dict)
    return error


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.005) -> bool:
    """Poll ``predicate`` until true or ``timeout``; for states that have no event to wait on."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(interval)
    return bool(predicate())


@dataclass
class RawAnswer:
    """An HTTP answer read off a raw socket: status line, headers, body."""

    status_line: str
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        """The ``error`` object of a JSON error body (checks the shape)."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        body = json.loads(self.body)
        assert set(body) == {"error"}, body
        error: dict[str, Any] = body["error"]
        assert set(error) == {"code", "message", "details"}, error
        return error


def parse_raw_answer(data: bytes) -> RawAnswer:
    """Split one HTTP/1.x answer (its body delimited by Content-Length or the end)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete header block in {data[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), f"no status line: {data[:200]!r}"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    body = rest if length is None else rest[: int(length)]
    return RawAnswer(lines[0], int(lines[0].split()[1]), headers, body)


def raw_exchange(port: int, data: bytes, *, half_close: bool = True, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    return answer


def raw_request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    key: Optional[str] = None,
    headers: Optional[Mapping[str, str]] = None,
    chunked: bool = False,
) -> RawAnswer:
    """One request with exactly the given body bytes (``chunked``: sent as they are, with
    ``Transfer-Encoding: chunked``), on its own connection, closed after the answer."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    if body or method == "POST":
        lines.append("Content-Type: application/json")
        lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}")
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return parse_raw_answer(raw_exchange(port, data, half_close=False))
