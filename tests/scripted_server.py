"""A small threaded HTTP server on 127.0.0.1 whose answers the tests script.

Each connection reads one request, records it, and hands a :class:`Conn` to
the next *script* queued for the request's path (the last script of a path
repeats). Scripts write bytes exactly as a test wants them framed:
chunked, one chunk per event, close-delimited, or cut off mid-event.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: float = field(default_factory=time.monotonic)


class Conn:
    """One accepted connection, as seen by a script."""

    def __init__(self, sock: socket.socket, request: Request, stopping: threading.Event) -> None:
        self.sock = sock
        self.request = request
        self.stopping = stopping
        self.framing = "chunked"

    def start(
        self,
        status: int = 200,
        headers: Optional[Mapping[str, str]] = None,
        *,
        framing: str = "chunked",
        content_type: str = "text/event-stream",
    ) -> None:
        """Send the status line and headers. ``framing``: chunked, close or length."""
        self.framing = framing
        lines = [f"HTTP/1.1 {status} X"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        if framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
        elif framing == "close":
            lines.append("Connection: close")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def respond(
        self,
        status: int,
        body: bytes = b"",
        headers: Optional[Mapping[str, str]] = None,
        *,
        content_type: str = "application/json",
    ) -> None:
        """Send a complete response with Content-Length and close."""
        all_headers = {"Content-Length": str(len(body)), "Connection": "close"}
        all_headers.update(headers or {})
        self.start(status, all_headers, framing="length", content_type=content_type)
        self.sock.sendall(body)
        self.close()

    def send(self, data: bytes) -> None:
        """Send ``data``: as one HTTP chunk when chunked, raw otherwise."""
        if self.framing == "chunked":
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def end(self) -> None:
        """Finish the body properly and close."""
        if self.framing == "chunked":
            self.sock.sendall(b"0\r\n\r\n")
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def hold(self, until: Optional[threading.Event] = None, timeout: float = 10.0) -> bool:
        """Stay silent until ``until`` is set (True), the timeout passes or the server stops."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until is not None and until.is_set():
                return True
            if self.stopping.wait(0.01):
                return False
        return False

    def wait_closed_by_client(self, timeout: float = 5.0) -> bool:
        """True when the client closes its end (recv returns b'') within the timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except (socket.timeout, OSError):
            return False


Script = Callable[[Conn], None]


class ScriptedServer:
    """The server. ``url(path)`` gives an address on 127.0.0.1."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[Request] = []
        self._scripts: dict[str, list[Script]] = {}
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.05)
        self.host = host
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="scripted-server")
        self._acceptor.start()

    def url(self, path: str = "/events", host: Optional[str] = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def script(self, path: str, *scripts: Script) -> None:
        """Queue scripts for ``path``: one per connection, the last one repeats."""
        with self._cond:
            self._scripts.setdefault(path, []).extend(scripts)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Request]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
            return list(self.requests)

    @property
    def open_connections(self) -> int:
        with self._cond:
            return len(self._open)

    def stop(self) -> None:
        self._stopping.set()
        self._acceptor.join(5)
        self._listener.close()
        with self._cond:
            socks = list(self._open)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        with self._cond:
            self._open.add(sock)
        try:
            request = _read_request(sock)
            if request is None:
                return
            with self._cond:
                self.requests.append(request)
                queue = self._scripts.get(request.path) or [_not_found]
                script = queue.pop(0) if len(queue) > 1 else queue[0]
                self._cond.notify_all()
            sock.settimeout(None)
            # OSError: the client went away, which is what many tests do.
            with contextlib.suppress(OSError):
                script(Conn(sock, request, self._stopping))
        finally:
            with self._cond:
                self._open.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()


def never_answers(conn: Conn) -> None:
    """A script that takes the request and never sends a status line (until the
    client closes, or 10 s)."""
    conn.wait_closed_by_client(10)


def _not_found(conn: Conn) -> None:
    conn.respond(404, b'{"error": {"code": "not_found", "message": "no script"}}')


def _read_request(sock: socket.socket) -> Optional[Request]:
    sock.settimeout(5)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    except (socket.timeout, OSError, ValueError):
        return None
    parts = urlsplit(target)
    return Request(method, parts.path, dict(parse_qsl(parts.query)), headers, rest[:length])


def sse(data: str, *, event: Optional[str] = None, id: Optional[str] = None) -> bytes:
    """Format one SSE event."""
    out = ""
    if id is not None:
        out += f"id: {id}\n"
    if event is not None:
        out += f"event: {event}\n"
    for line in data.split("\n"):
        out += f"data: {line}\n"
    return (out + "\n").encode()


class FullBacklog:
    """An address on 127.0.0.1 whose connects hang: a listener that never
    accepts, with its accept queue full, so the kernel drops further SYNs and
    a client stays in SYN_SENT until its connect timeout."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port = self._listener.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(16):
            if self._connect_hangs():
                return
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self._fillers.append(filler)
        raise AssertionError("could not fill the accept queue")

    def _connect_hangs(self) -> bool:
        probe = socket.socket()
        probe.settimeout(0.2)
        self._fillers.append(probe)  # if it gets in, it is one more in the queue
        try:
            probe.connect(("127.0.0.1", self.port))
        except socket.timeout:
            return True
        except OSError:
            pass
        return False

    def url(self, path: str = "/events") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        for sock in self._fillers:
            sock.close()
        self._listener.close()


def slow_error_body(status: int, sent: threading.Event) -> Script:
    """A script that answers ``status`` with a body announced as 100,000 bytes,
    sends ten of them, sets ``sent`` and stays silent until the client closes."""

    def script(conn: Conn) -> None:
        conn.start(
            status, {"Content-Length": "100000"}, framing="length", content_type="text/plain"
        )
        conn.send_raw(b"0123456789")
        sent.set()
        conn.wait_closed_by_client(10)

    return script


_GZIP_BOMBS: dict[int, bytes] = {}


def gzip_bomb_body(decompressed: int) -> bytes:
    """``decompressed`` zero bytes, gzipped (about 1 KB per MB); cached."""
    if decompressed not in _GZIP_BOMBS:
        import zlib

        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
        block = bytes(1024 * 1024)
        parts = [compressor.compress(block) for _ in range(decompressed // len(block))]
        parts.append(compressor.compress(bytes(decompressed % len(block))))
        _GZIP_BOMBS[decompressed] = b"".join(parts) + compressor.flush()
    return _GZIP_BOMBS[decompressed]


def gzip_bomb(status: int, decompressed: int, encoding: str = "gzip") -> Script:
    """A script that answers ``status`` with a small gzip body that inflates to
    ``decompressed`` bytes (Content-Length is the compressed size)."""
    body = gzip_bomb_body(decompressed)

    def script(conn: Conn) -> None:
        headers = {"Content-Encoding": encoding, "Content-Length": str(len(body))}
        conn.start(status, headers, framing="length", content_type="application/json")
        conn.send_raw(body)
        conn.wait_closed_by_client(10)

    return script


def endless_body(status: int = 200, *, content_length: Optional[int] = None) -> Script:
    """A script that sends zeros for as long as the client reads (up to 10 s):
    with ``content_length`` announced, else chunked."""

    def script(conn: Conn) -> None:
        if content_length is None:
            conn.start(status, framing="chunked", content_type="application/json")
        else:
            headers = {"Content-Length": str(content_length)}
            conn.start(status, headers, framing="length", content_type="application/json")
        block = bytes(64 * 1024)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not conn.stopping.is_set():
            conn.send(block)

    return script
