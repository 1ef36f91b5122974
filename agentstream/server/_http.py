"""The reference server's HTTP layer: werkzeug's threaded server, with what it lacks.

werkzeug's development server (3.1) parses requests and builds the WSGI
environ well; we keep that (``make_environ``, its de-chunker, http.server's
request parsing). Its ``run_wsgi`` we replace, because, read in
``werkzeug/serving.py`` and measured:

- it closes every connection (``Connection: close`` is hard-coded), so every
  POST paid a new TCP connection and a new thread;
- it writes each chunk of a chunked response as four ``send`` calls (size,
  CRLF, data, CRLF) and the headers as another: ours is one ``send`` per
  chunk, the headers going out with the first one;
- after each response it drains the socket with 10 ms ``select`` calls, which
  would eat the next request of a kept-alive connection.

It also has no timeouts: a client that sent half a request held its thread
forever. Here every read has a deadline for the whole phase (request line and
headers, then the body), and the number of connections is capped
(:class:`~agentstream.server.ServerConfig`).
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import io
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional

import httptools
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from ._config import ServerConfig
from ._connections import Connections, Rejecter

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["DirectWriter", "HTTPServer", "chunk_frame", "error_bytes"]

logger = logging.getLogger(__name__)

_TIMEOUTS = (TimeoutError, socket.timeout)  # distinct classes on Python 3.9
_DRAIN_LIMIT = 64 * 1024  # an unread request body up to this size is skipped, to keep alive
_SKIP_LIMIT = 64 * 1024 * 1024  # bytes of an unwanted body read (and dropped) before a close
_SKIP_TIME = 2.0  # seconds spent at most on that

_HTTP_ERROR_CODES = {
    400: "bad_request",
    408: "request_timeout",
    414: "uri_too_long",
    431: "header_fields_too_large",
    503: "server_busy",
    505: "http_version_not_supported",
}


def error_bytes(
    status: int, reason: str, message: str, headers: Iterable[tuple[str, str]] = ()
) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 answer with the JSON error shape."""
    code = _HTTP_ERROR_CODES.get(status, f"http_{status}")
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json"]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The ``Date`` header, formatted once a second (``formatdate`` costs 10 µs a call)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class _DeadlineReader(io.RawIOBase):
    """The socket's input, read under a deadline that spans a whole phase.

    A per-``recv`` timeout would let a client that sends one byte every few
    seconds hold the connection forever; a deadline does not.
    """

    def __init__(self, sock: socket.socket, idle_timeout: float) -> None:
        self._sock = sock
        self._idle_timeout = idle_timeout
        self.deadline: Optional[float] = None
        self.timed_out = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is None:
            # Never blocking mode: the fan-out's direct writes need O_NONBLOCK (see DirectWriter).
            self._sock.settimeout(self._idle_timeout)
        else:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.timed_out = True
                raise socket.timeout("the read deadline passed")
            self._sock.settimeout(left)
        try:
            return self._sock.recv_into(buffer)
        except _TIMEOUTS:
            self.timed_out = True
            raise socket.timeout("the read deadline passed") from None


class _CountingInput(io.RawIOBase):
    """``wsgi.input`` of a request with a ``Content-Length``: knows what is left unread."""

    def __init__(self, rfile: io.BufferedReader[Any], length: int) -> None:
        self._rfile = rfile
        self.left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)[: self.left]
        if not view:
            return 0
        data = self._rfile.read1(len(view))
        view[: len(data)] = data
        self.left -= len(data)
        return len(data)

    def drain(self) -> bool:
        """Skip a small unread rest; True when the body is fully consumed."""
        if self.left > _DRAIN_LIMIT:
            return False
        while self.left > 0:
            data = self._rfile.read1(self.left)
            if not data:
                return False
            self.left -= len(data)
        return True


def chunk_frame(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (size line, data, CRLF)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class DirectWriter:
    """Lets the fan-out write a stream's next chunk from its own thread, without waiting.

    Exposed to the app as ``environ["agentstream.direct_writer"]``. The
    caller guarantees that the handler's thread is not writing meanwhile
    (the stream's subscription switches between the two under its lock).
    :meth:`try_send` never blocks: the socket is in timeout mode, so its file
    descriptor is non-blocking, and ``os.write`` returns what fitted. What did
    not fit is kept in :attr:`pending`, which the handler's thread writes
    before anything else.
    """

    __slots__ = ("_fd", "_sock", "chunked", "pending", "ready")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self.ready = False  # the headers are out
        self.chunked = False
        self.pending = b""

    def try_send(self, data: bytes, framed: Optional[bytes] = None) -> str:
        """``"sent"``, ``"partial"`` (the rest is in :attr:`pending`), ``"blocked"`` (nothing
        sent: the socket buffer is full, or direct writes are not possible) or ``"error"``.

        ``framed`` is ``chunk_frame(data)`` when the caller has it already (the
        fan-out frames a batch once for every stream it goes to).
        """
        if not self.ready or self.pending or not self._sock.gettimeout():
            return "blocked"
        frame = data
        if self.chunked:
            frame = chunk_frame(data) if framed is None else framed
        try:
            sent = os.write(self._fd, frame)
        except BlockingIOError:
            return "blocked"
        except OSError:
            return "error"
        if sent == len(frame):
            return "sent"
        self.pending = frame[sent:]
        return "partial"

    def take_pending(self) -> bytes:
        pending, self.pending = self.pending, b""
        return pending


_MAX_LINE = 65536  # http.client's limits on a header line and on the number of lines
_MAX_HEADERS = 100
_HEADERS_ONLY = b"GET / HTTP/1.1\r\n"


class _HeaderCollector:
    """httptools' callbacks: the header fields, in order, and whether they ended."""

    __slots__ = ("complete", "headers")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


class _Handler(WSGIRequestHandler):
    """werkzeug's handler with deadlines, keep-alive, one send per chunk and JSON errors."""

    server: HTTPServer

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.attach(self.connection)
        self._reader = _DeadlineReader(self.connection, self.server.config.write_timeout)
        self._input = io.BufferedReader(self._reader, 65536)
        self.rfile = self._input
        self._requests_served = 0
        self._answered = False

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.connections.remove(self.connection)

    # ------------------------------------------------------------------ requests

    def handle_one_request(self) -> None:
        config = self.server.config
        reader = self._reader
        first = self._requests_served == 0
        wait = config.header_timeout if first else config.keepalive_timeout
        reader.deadline = time.monotonic() + wait
        reader.timed_out = False
        connections = self.server.connections
        if not first and not connections.set_idle(self.connection, True):
            self.close_connection = True  # the server is stopping
            return
        try:
            waiting = self._input.peek(1)
        except (OSError, ValueError):
            waiting = b""  # idle keep-alive expired, or the client left
        if (not first and not connections.set_idle(self.connection, False)) or not waiting:
            self.close_connection = True
            return
        reader.deadline = time.monotonic() + config.header_timeout
        self._answered = False
        super().handle_one_request()  # parses the request, then calls run_wsgi()
        self._requests_served += 1
        if reader.timed_out and not self._answered:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_raw(
                    error_bytes(408, "Request Timeout", "the request did not arrive in time")
                )

    def parse_request(self) -> bool:
        """The request line by http.server's rules, the headers by httptools (llhttp).

        http.server hands the header block to the ``email`` package, which
        costs about 30 µs a request, 14 of them for an empty block: 18% of a
        publish's instructions (``bench/server_fanout.py --instructions``).
        llhttp parses the same headers in 2 µs, and refuses with 400 what
        ``email`` let through: a line with no colon (which ended the headers
        there, silently dropping the rest), an obsolete folded line, a space
        in or after a header name, two ``Content-Length`` headers, one beside
        ``Transfer-Encoding``, a ``Transfer-Encoding`` that does not end in
        ``chunked``.
        """
        if not self._parse_request_line():
            return False
        if self.request_version == "HTTP/0.9":  # "GET /path" alone: not spoken here
            self.send_error(400, "HTTP/0.9 requests are not supported")
            return False
        headers = self._parse_headers()
        if headers is None:
            return False
        self.headers = headers
        connection = headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        # Expect: 100-continue is answered by run_wsgi, once the request is known good.
        return True

    def _parse_request_line(self) -> bool:
        """``BaseHTTPRequestHandler.parse_request``'s request-line half, as it is."""
        self.command = None  # type: ignore[assignment]  # as http.server does
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:  # enough to determine the protocol version
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                base_version_number = version.split("/", 1)[1]
                parts = base_version_number.split(".")
                if len(parts) != 2 or any(not p.isdigit() or len(p) > 10 for p in parts):
                    raise ValueError
                version_number = int(parts[0]), int(parts[1])
            except (ValueError, IndexError):
                self.send_error(400, f"Bad request version ({version!r})")
                return False
            if version_number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(505, f"Invalid HTTP version ({base_version_number})")
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(400, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(400, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):  # gh-87389: "//host" would read as a host
            self.path = "/" + self.path.lstrip("/")
        return True

    def _parse_headers(self) -> Optional[http.client.HTTPMessage]:
        """The header lines (http.client's limits: 100 lines of 64 KiB), parsed by llhttp
        behind a fixed request line (the real one was checked above; llhttp would refuse
        a method it does not know, where the app answers 405)."""
        lines = [_HEADERS_ONLY]
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                self.send_error(431, "Line too long")
                return None
            lines.append(line)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(lines) > _MAX_HEADERS + 1:
                self.send_error(431, "Too many headers")
                return None
        collector = _HeaderCollector()
        parser = httptools.HttpRequestParser(collector)
        # A bare LF ends a line, as http.server and email let it (RFC 9112 2.2 allows it):
        # this server reads the whole request itself, so no two parsers can disagree.
        parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        try:
            parser.feed_data(b"".join(lines))
        except httptools.HttpParserUpgrade:
            pass  # "Connection: upgrade": the headers are complete; the app says no
        except httptools.HttpParserError:
            self.send_error(400, "Bad request headers")
            return None
        if not collector.complete:
            self.send_error(400, "Bad request headers")
            return None
        message = http.client.HTTPMessage()
        for name, value in collector.headers:
            message[name.decode("latin-1")] = value.decode("latin-1")
        return message

    def send_error(
        self, code: int, message: Optional[str] = None, explain: Optional[str] = None
    ) -> None:
        """Errors found before the app runs (bad request line, huge headers), as JSON."""
        short = self.responses.get(code, ("error", ""))[0]
        text = message or short
        self.log_error("code %d, message %s", code, text)
        self.close_connection = True
        self._send_raw(error_bytes(code, short, text))

    def _send_raw(self, data: bytes) -> None:
        self._answered = True
        self.connection.settimeout(self.server.config.write_timeout)
        self.wfile.write(data)

    # ------------------------------------------------------------------ WSGI

    def run_wsgi(self) -> None:
        config = self.server.config
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self._send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._answered = False
        environ = self.environ = self.make_environ()
        body: Optional[_CountingInput] = None
        if "wsgi.input_terminated" not in environ:  # not chunked: Content-Length or nothing
            try:
                length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
            except ValueError:
                length = 0
            body = _CountingInput(self._input, length)
            environ["wsgi.input"] = body
        direct = DirectWriter(self.connection)
        environ["agentstream.direct_writer"] = direct
        self._reader.deadline = time.monotonic() + config.body_timeout

        status_line: Optional[str] = None
        response_headers: list[tuple[str, str]] = []
        sent = False
        chunked = False

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            nonlocal status_line, response_headers
            if exc_info and sent:
                raise exc_info[1].with_traceback(exc_info[2])
            status_line, response_headers = status, headers
            return write

        def write(data: bytes) -> None:
            nonlocal sent, chunked
            if not sent:
                assert status_line is not None, "write() before start_response()"
                sent = True
                head, chunked = self._head(status_line, response_headers, body)
                self.connection.settimeout(config.write_timeout)
                self._answered = True
                self.wfile.write(head + (self._frame(data) if chunked else data))
                direct.chunked = chunked
                direct.ready = True
                return
            if direct.pending:  # what a direct write left over goes first
                self.wfile.write(direct.take_pending())
            if data:
                self.wfile.write(self._frame(data) if chunked else data)

        app_iter: Iterable[bytes] = ()
        try:
            app_iter = self.server.app(environ, start_response)
            for data in app_iter:
                write(data)
            if not sent:
                write(b"")
            direct.ready = False  # the fan-out's last chance was before the app's end
            if chunked:
                self.wfile.write(direct.take_pending() + b"0\r\n\r\n")
        except (ConnectionError, *_TIMEOUTS):
            self.close_connection = True  # the client went away, or stopped reading
        except OSError:
            self.close_connection = True
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()
        if not self.close_connection and not self._body_consumed(body, environ):
            self.close_connection = True
        unread = body.left > 0 if body is not None else not self._body_consumed(None, environ)
        if self.close_connection and unread:
            self._skip_unread_body()

    def _skip_unread_body(self) -> None:
        """Read (and drop) what the client still sends before we close.

        Closing a socket with unread input makes the kernel reset the
        connection, and a client still sending its body (say, one refused with
        413) would then see the reset instead of the answer already sent.
        Bounded in bytes and time, unlike werkzeug's (10 GB).
        """
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            deadline = min(self._reader.deadline or 0.0, time.monotonic() + _SKIP_TIME)
            self._reader.deadline = max(deadline, time.monotonic() + 0.05)
            skipped = 0
            while skipped < _SKIP_LIMIT:
                data = self._input.read1(65536)
                if not data:
                    break
                skipped += len(data)

    def _head(
        self, status: str, headers: list[tuple[str, str]], body: Optional[_CountingInput]
    ) -> tuple[bytes, bool]:
        """The status line and headers; whether the body is chunked. Decides keep-alive."""
        code = int(status.split(None, 1)[0])
        names = {name.lower() for name, _ in headers}
        framed = "content-length" in names or code in (204, 304) or 100 <= code < 200
        chunked = not framed and self.request_version == "HTTP/1.1"
        if not framed and not chunked:
            self.close_connection = True  # HTTP/1.0 without a length: the close ends the body
        if (
            self.server.stopping.is_set()
            or self._reader.timed_out
            or (body is not None and body.left > _DRAIN_LIMIT)
            or (body is None and not self._body_consumed(None, self.environ))
        ):
            self.close_connection = True
        lines = [f"{self.protocol_version} {status}"]
        lines.append(f"Server: {self.version_string()}")
        lines.append(f"Date: {_http_date()}")
        lines.extend(f"{name}: {value}" for name, value in headers)
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        self.log_request(code)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), chunked

    @staticmethod
    def _frame(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if data else b""

    def _body_consumed(self, body: Optional[_CountingInput], environ: dict[str, Any]) -> bool:
        """True when the request body was read to its end (or skipped), so the next
        request on this connection starts where it should."""
        try:
            if body is not None:
                return body.drain()
            # werkzeug's DechunkedInput (an unread chunked body is not skipped: closed)
            return bool(getattr(environ.get("wsgi.input"), "_done", False))
        except (OSError, ValueError):
            return False

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        # werkzeug formats the line (the path decoded as an IRI, colours) before log()
        # can drop it: 6% of a publish's instructions (bench/server_fanout.py
        # --instructions), for a DEBUG line that is off unless asked for.
        if logger.isEnabledFor(logging.DEBUG):
            super().log_request(code, size)

    def log(self, type: str, message: str, *args: Any) -> None:
        level = logging.WARNING if type == "error" else logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(level, "%s %s", self.address_string(), (message % args).rstrip())


class HTTPServer(ThreadedWSGIServer):
    """werkzeug's threaded WSGI server, with the connection cap and our handler."""

    def __init__(self, host: str, port: int, app: WSGIApplication, config: ServerConfig) -> None:
        self.config = config
        self.connections = Connections(config.max_connections)
        self.stopping = threading.Event()
        self._rejecter: Optional[Rejecter] = None
        self._rejecter_lock = threading.Lock()
        super().__init__(host, port, app, handler=_Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.connections.reserve(request):
            logger.warning(
                "refusing a connection: %d connections open (the cap)", self.connections.limit
            )
            answer = error_bytes(
                503,
                "Service Unavailable",
                f"the server has {self.connections.limit} connections open, its maximum",
                [("Retry-After", str(self.config.retry_after))],
            )
            with self._rejecter_lock:
                if self._rejecter is None:
                    self._rejecter = Rejecter()
                rejecter = self._rejecter
            rejecter.reject(request, answer)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.remove(request)
            raise

    def shutdown_request(self, request: Any) -> None:
        self.connections.remove(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        with self._rejecter_lock:
            if self._rejecter is not None:
                self._rejecter.close()
                self._rejecter = None
