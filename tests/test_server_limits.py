"""Timeouts and the connection cap: a client that sends half a request, or opens one
connection too many, gets a JSON error and does not hold a thread. Real sockets; each
server gets short timeouts of its own, and every wait is on the server's answer."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agentstream.server import ReferenceServer, ServerConfig

from .server_fixtures import Api, ServerFactory, parse_raw_answer, wait_until

SHORT = 0.3  # seconds: the timeouts under test
BOUND = 5.0  # seconds: no answer by then is a failure


def connect(srv: ReferenceServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=BOUND)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


@pytest.fixture
def held() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


def request_head(srv: ReferenceServer, method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {srv.api_key}"]
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


def test_half_sent_headers_get_408_after_the_header_timeout(servers: ServerFactory) -> None:
    srv = servers.start(config=ServerConfig(header_timeout=SHORT))
    with connect(srv) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /tasks/x HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        answer = parse_raw_answer(read_answer(sock))
        elapsed = time.monotonic() - started
    assert answer.status == 408
    assert answer.error()["code"] == "request_timeout"
    assert SHORT * 0.9 <= elapsed < BOUND
    assert wait_until(lambda: srv.open_connections == 0)


def test_a_trickle_of_header_bytes_does_not_reset_the_deadline(servers: ServerFactory) -> None:
    srv = servers.start(config=ServerConfig(header_timeout=SHORT))
    with connect(srv) as sock:
        sock.sendall(b"GET /tasks/x HTTP/1.1\r\n")
        started = time.monotonic()
        sock.settimeout(SHORT / 6)  # a byte each time the server has not answered yet
        answer = b""
        while time.monotonic() - started < BOUND:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                sock.sendall(b"X-Slow: a\r\n")  # a whole header line each time, never the end
                continue
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
    assert parse_raw_answer(answer).status == 408
    assert elapsed < SHORT * 4  # the deadline spans the headers, not each read


@pytest.mark.parametrize(
    ("framing", "partial"),
    [
        ("Content-Length: 100", b'{"type": "task.shipped"'),
        ("Transfer-Encoding: chunked", b'40\r\n{"type": "task.shipped"'),
        ("Transfer-Encoding: chunked", b"5\r\nhello\r\n"),  # a chunk, then silence
    ],
)
def test_half_a_body_gets_408_after_the_body_timeout(
    servers: ServerFactory, framing: str, partial: bytes
) -> None:
    srv = servers.start(config=ServerConfig(body_timeout=SHORT))
    api = servers.api(srv)
    with connect(srv) as sock:
        head = request_head(srv, "POST", "/task-events", "Content-Type: application/json", framing)
        started = time.monotonic()
        sock.sendall(head + partial)
        answer = parse_raw_answer(read_answer(sock))
        elapsed = time.monotonic() - started
    assert answer.status == 408, answer
    assert answer.error()["code"] == "request_timeout"
    assert answer.headers["connection"] == "close"
    assert SHORT * 0.9 <= elapsed < BOUND
    assert wait_until(lambda: srv.open_connections <= 1)  # only api's, if any
    assert api.publish("task.shipped", {"after": "timeout"})["data"] == {"after": "timeout"}


def test_over_the_cap_is_503_with_retry_after(
    servers: ServerFactory, held: list[socket.socket]
) -> None:
    srv = servers.start(config=ServerConfig(max_connections=3, retry_after=7, header_timeout=BOUND))
    for _ in range(3):
        sock = connect(srv)
        sock.sendall(b"GET /tasks/x HTTP/1.1\r\n")  # holds its connection, half sent
        held.append(sock)
    assert wait_until(lambda: srv.open_connections == 3)
    with connect(srv) as extra:
        extra.sendall(request_head(srv, "GET", "/tasks/x"))
        answer = parse_raw_answer(read_answer(extra))
    assert answer.status == 503
    assert answer.headers["retry-after"] == "7"
    assert answer.error()["code"] == "server_busy"
    held.pop().close()  # one leaves: room for one more
    assert wait_until(lambda: srv.open_connections == 2)
    api = Api(srv.url, srv.api_key)
    try:
        assert api.request("GET", "/tasks/x").status_code == 404
    finally:
        api.close()


def test_streams_count_against_the_cap(servers: ServerFactory) -> None:
    srv = servers.start(config=ServerConfig(max_connections=1))
    api = servers.api(srv)
    with api.stream():
        response = api.stream_response()
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
    assert wait_until(lambda: srv.open_connections == 0)
    assert api.request("GET", "/tasks/x").status_code == 404


def test_requests_share_a_kept_alive_connection(servers: ServerFactory) -> None:
    srv = servers.start()
    with connect(srv) as sock:
        answers = []
        for path in ("/tasks/a", "/tasks/b", "/nope"):
            sock.sendall(request_head(srv, "GET", path))
            data = b""
            while b"\r\n\r\n" not in data or len(data) < _length(data):
                chunk = sock.recv(65536)
                assert chunk, "the server closed a kept-alive connection"
                data += chunk
            answers.append(parse_raw_answer(data))
        assert [a.status for a in answers] == [404, 404, 404]
        assert all("connection" not in a.headers for a in answers)
        assert srv.open_connections == 1
        sock.sendall(request_head(srv, "GET", "/tasks/c", "Connection: close"))
        last = parse_raw_answer(read_answer(sock))
    assert (last.status, last.headers["connection"]) == (404, "close")


def _length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(data)


def test_an_idle_kept_alive_connection_is_closed(servers: ServerFactory) -> None:
    srv = servers.start(config=ServerConfig(keepalive_timeout=SHORT))
    with connect(srv) as sock:
        sock.sendall(request_head(srv, "GET", "/tasks/a"))
        started = time.monotonic()
        data = read_answer(sock)  # the answer, then the close once idle
        elapsed = time.monotonic() - started
    assert parse_raw_answer(data).status == 404
    assert SHORT * 0.9 <= elapsed < BOUND
    assert wait_until(lambda: srv.open_connections == 0)


def test_stop_closes_idle_kept_alive_connections_at_once(servers: ServerFactory) -> None:
    srv = servers.start(config=ServerConfig(keepalive_timeout=60))
    api = servers.api(srv)
    assert api.request("GET", "/tasks/a").status_code == 404  # leaves one idle connection
    assert srv.open_connections == 1
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 0.9  # not the 1 s grace streams get


@pytest.mark.parametrize(
    "field",
    [
        "header_timeout",
        "body_timeout",
        "keepalive_timeout",
        "write_timeout",
        "max_connections",
        "fanout_interval",
    ],
)
def test_server_config_refuses_non_positive_values(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ServerConfig(**{field: 0})


def test_each_chunk_is_one_send(servers: ServerFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    import socketserver

    srv = servers.start()
    api = servers.api(srv)
    task = srv.store.create_task("counted")
    for n in range(3):
        srv.store.append_task_event(task["id"], "message.chunk", f"part {n}")
    srv.store.transition_task(task["id"], "done", summary="done")
    writes: list[bytes] = []
    write = socketserver._SocketWriter.write  # type: ignore[attr-defined]

    def counted(self: Any, data: Any) -> Any:
        writes.append(bytes(data))
        return write(self, data)

    monkeypatch.setattr(socketserver._SocketWriter, "write", counted)  # type: ignore[attr-defined]
    with api.stream(taskId=task["id"]) as reader:
        frames = reader.rest()
    assert frames[-1].event == "task.finished"
    # the headers with the first chunk; the replay batch; the terminating chunk
    assert len(writes) == 3, writes
    assert writes[0].startswith(b"HTTP/1.1 200 ")
    assert writes[0].endswith(b": connected\n\n\r\n")
    assert writes[1].count(b"id: evt_") == len(frames)
    assert writes[2] == b"0\r\n\r\n"
