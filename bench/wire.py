"""Wire-layer throughput and held-event delay: ``agentstream`` beside plain sseclient-py.

Run from the repository root::

    .venv/bin/python bench/wire.py            # 200,000 events, 3 rounds (~2 min on 2 cores)
    .venv/bin/python bench/wire.py --quick    # 20,000 events, 1 round (smoke run)
    .venv/bin/python bench/wire.py --events 50000 --rounds 5 --framings chunked,close

The report (Markdown) goes to stdout and to ``bench/results/wire.md``;
progress goes to stderr. ``bench/README.md`` explains how to read it.

What runs:

* A local SSE server in its own process, on raw sockets: it pre-builds N
  valid ``task.updated`` events of about 600 bytes (``id:`` equal to the
  envelope id, ``event:`` and one JSON ``data:`` line holding an agentstream
  envelope with a strictly increasing ``sequence``) in three framings,
  selected by the request path, and writes each response with one
  ``sendall``:

  - ``chunked``: HTTP/1.1 chunked encoding, 64 KiB chunks;
  - ``per-event``: chunked encoding, one HTTP chunk per event;
  - ``close``: no ``Transfer-Encoding``, no ``Content-Length``: the body ends
    when the server closes the connection.

  The typed clients use ``http://127.0.0.1:PORT/typed/<framing>/<n>`` as
  their base URL, so their ``GET .../task-events/stream`` gets the same
  bytes; a resuming request (``Last-Event-ID`` or ``cursor``) gets 204.

* Throughput: each client, in a fresh process, streams the N events and
  counts them (checking the count and the last event ID); clients and
  framings are interleaved over ``--rounds`` rounds and the median time is
  reported. Two floors show that the server is not the bottleneck: a raw
  socket read to EOF, and requests' ``iter_content(65536)`` counting blank
  lines without parsing. Beside the wire-level parsers run agentstream's typed
  layers: ``client.stream_events()`` (typed, validated events) and a
  ``Listener`` running one registered handler.

* Small-event delay: ``/delay/<framing>`` sends ONE small event carrying the
  server's ``time.time()``, stays silent for 2 s, then sends a second event and
  closes. Each client reports how long after the send its first event was
  yielded (same machine, same clock). A client that holds the event until more
  bytes arrive shows about 2,000 ms. The typed clients get the same test from
  ``/typed-delay/<framing>`` with a minimal valid ``task.updated`` envelope,
  the send time in its ``data.summary``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import multiprocessing
import platform
import socket
import socketserver
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional
from urllib.parse import parse_qs, urlsplit

import requests
import sseclient

from agentstream import Client as AgentStreamClient
from agentstream import Registry, TaskEvent, parse_event
from agentstream.models import TaskUpdatedEvent
from agentstream.sse import EventSource, RetryPolicy

FRAMINGS = ("chunked", "per-event", "close")
CHUNK_SIZE = 64 * 1024
"""Size of an HTTP chunk in the ``chunked`` framing."""
SILENCE = 2.0
"""Seconds the delay endpoint stays silent after its first event."""
READ_CHUNK = 64 * 1024
"""Read size of the floors and of sseclient-py's best case."""
DISTRIBUTIONS = (
    "agentstream",
    "requests",
    "urllib3",
    "sseclient-py",
    "pydantic",
    "pydantic-core",
    "blinker",
)
RESULTS = Path(__file__).resolve().parent / "results" / "wire.md"
THROUGHPUT_DEADLINE = 600.0
"""Seconds after which a throughput measurement is killed and reported as failed."""
DELAY_DEADLINE = 30.0
HELD_MS = 100.0
"""A small event yielded later than this after its send counts as held."""
READ_TIMEOUT = 60.0
"""Read timeout given to every client that takes one (far above the 2 s silence)."""
LISTENER_WAIT = 300.0
"""Seconds a Listener client waits for its N-th handled event before giving up."""
API_KEY = "bench-key"
"""Sent by the typed clients as ``Authorization: Bearer``; the bench server ignores it."""
STREAM_PATH = "/task-events/stream"
"""What ``Client`` appends to its base URL for ``stream_events`` and ``listen``."""


# -- the payload ----------------------------------------------------------------

UPDATED: dict[str, Any] = {
    "id": "evt_000000000000002a_3f9c1e",
    "type": "task.updated",
    "sequence": 42,
    "occurredAt": "2026-11-20T10:00:00.123Z",
    "taskId": "task_01JD8Z3K9Q",
    "organizationId": "org_01JD8Z3K9Q",
    "taskVersion": 7,
    "traceId": None,
    "data": {
        "taskId": "task_01JD8Z3K9Q",
        "taskIdentifier": "AS-42",
        "status": "in_review",
        "previousStatus": "in_progress",
        "changedFields": ["status", "summary"],
        "actor": {"id": "agent_research", "role": "agent"},
        "summary": "Draft ready: three sources compared.",
        "availableActions": ["review", "stop"],
        "links": {"task": "http://127.0.0.1:8787/tasks/task_01JD8Z3K9Q"},
    },
}
"""A realistic ``task.updated`` envelope, as the wire carries it (``bench/models.py``
times it too)."""

# id and sequence are filled in per event.
_ENVELOPE: dict[str, Any] = {**UPDATED, "id": "", "sequence": 0}


def event_id(seq: int) -> str:
    """The id of event number ``seq``: the envelope's ``id`` and the SSE ``id:`` line."""
    return f"evt_{seq:016x}_3f9c1e"


def envelope_data(seq: int, summary: Optional[str] = None) -> str:
    """The ``data`` of event number ``seq``: a compact, valid ``task.updated`` envelope,
    with ``data.summary`` replaced by ``summary`` if given.

    ``sequence`` is ``seq``, so it strictly increases (the typed stream drops an
    event whose sequence is not above the last one it delivered).
    """
    envelope = {**_ENVELOPE, "id": event_id(seq), "sequence": seq}
    if summary is not None:
        envelope["data"] = {**_ENVELOPE["data"], "summary": summary}
    return json.dumps(envelope, separators=(",", ":"))


def build_event(seq: int, summary: Optional[str] = None) -> bytes:
    """Event number ``seq`` (from 1) as the server sends it: ``id``, ``event``, one ``data``
    (see :func:`envelope_data` for ``summary``)."""
    data = envelope_data(seq, summary)
    return f"id: {event_id(seq)}\nevent: task.updated\ndata: {data}\n\n".encode()


def build_events(n: int) -> list[bytes]:
    """Events 1 to ``n``."""
    return [build_event(seq) for seq in range(1, n + 1)]


def chunk(piece: bytes) -> bytes:
    """One HTTP/1.1 chunk holding ``piece``."""
    return b"%x\r\n%s\r\n" % (len(piece), piece)


LAST_CHUNK = b"0\r\n\r\n"


def frame(events: list[bytes], framing: str) -> bytes:
    """The response body for ``events`` in ``framing``, as written to the socket."""
    body = b"".join(events)
    if framing == "close":
        return body
    if framing == "per-event":
        pieces = events
    else:
        pieces = [body[i : i + CHUNK_SIZE] for i in range(0, len(body), CHUNK_SIZE)]
    return b"".join(chunk(piece) for piece in pieces) + LAST_CHUNK


def read_request(
    sock: socket.socket,
) -> Optional[tuple[str, dict[str, list[str]], dict[str, str]]]:
    """Read one request head: path, query and lower-cased headers (None if the
    client left first). Sets TCP_NODELAY, as every bench server wants."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            return None
        head += data
    request_line, *header_lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    parts = urlsplit(request_line.split(b" ")[1].decode())
    headers = {}
    for line in header_lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return parts.path, parse_qs(parts.query), headers


def response_head(framing: str, extra: Optional[dict[str, str]] = None) -> bytes:
    """Status line and headers of an SSE response in ``framing``."""
    lines = [
        "HTTP/1.1 200 OK",
        "Content-Type: text/event-stream",
        "Cache-Control: no-cache",
        "Connection: close",
    ]
    if framing != "close":
        lines.append("Transfer-Encoding: chunked")
    lines.extend(f"{name}: {value}" for name, value in (extra or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def timed_event(seq: int) -> bytes:
    """A small event (well under 128 bytes) carrying the server's clock at build time."""
    return f'id: {seq}\ndata: {{"seq":{seq},"sentAt":{time.time():.6f}}}\n\n'.encode()


def timed_envelope_data(seq: int, sent_at: float) -> str:
    """A minimal valid ``task.updated`` envelope, ``sent_at`` in its ``data.summary``."""
    envelope = {
        "id": event_id(seq),
        "type": "task.updated",
        "sequence": seq,
        "occurredAt": "2026-11-20T10:00:00.123Z",
        "taskId": "task_01JD8Z3K9Q",
        "data": {
            "taskId": "task_01JD8Z3K9Q",
            "taskIdentifier": "AS-42",
            "status": "in_progress",
            "actor": {"id": "agent_research", "role": "agent"},
            "summary": f"{sent_at:.6f}",
            "links": {"task": "/tasks/task_01JD8Z3K9Q"},
        },
    }
    return json.dumps(envelope, separators=(",", ":"))


def timed_envelope(seq: int) -> bytes:
    """The typed clients' small event: a valid envelope carrying the server's clock."""
    data = timed_envelope_data(seq, time.time())
    return f"id: {event_id(seq)}\nevent: task.updated\ndata: {data}\n\n".encode()


def data_of(event: bytes) -> str:
    """The ``data`` of one SSE event as :func:`build_event` writes it."""
    return event.split(b"\ndata: ", 1)[1].rstrip(b"\n").decode()


def check_envelopes(samples: Iterable[bytes] = ()) -> None:
    """Fail early unless ``parse_event`` types what the server sends, without error:
    events 1 and 2, the timed event, and the SSE events in ``samples``."""
    checks = [(1, envelope_data(1)), (2, envelope_data(2)), (1, timed_envelope_data(1, 0))]
    for sample in samples:
        data = data_of(sample)
        checks.append((json.loads(data)["sequence"], data))
    for seq, data in checks:
        event = parse_event(data)
        if not isinstance(event, TaskUpdatedEvent) or event.validation_error is not None:
            raise RuntimeError(f"the bench envelope does not validate: {event!r}")
        if event.id != event_id(seq) or event.sequence != seq:
            raise RuntimeError(f"the bench envelope has id {event.id!r}, sequence {event.sequence}")


# -- the server -----------------------------------------------------------------


class BenchServer(socketserver.ThreadingTCPServer):
    """Serves pre-built SSE bodies; see :class:`BenchHandler` for the paths."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, bodies: dict[tuple[str, int], bytes]) -> None:
        super().__init__(("127.0.0.1", 0), BenchHandler)
        self.bodies = bodies


class StreamHandler(socketserver.BaseRequestHandler):
    """What both bench servers share (this one and ``bench/peers.py``'s): reading
    the request, and the responses. Subclasses implement :meth:`route`."""

    def handle(self) -> None:
        request = read_request(self.request)
        if request is None:
            return
        # OSError: the client went away first (the delay clients stop after one event).
        with contextlib.suppress(OSError):
            self.route(*request)

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> None:
        raise NotImplementedError

    def send_status(self, status: str) -> None:
        """A response without a body (204 ends agentstream's streams)."""
        length = "Connection: close" if status.startswith("204") else "Content-Length: 0"
        self.request.sendall(f"HTTP/1.1 {status}\r\n{length}\r\n\r\n".encode())

    def send_body(self, framing: str, body: bytes) -> None:
        """A pre-framed body, its size in ``X-Wire-Bytes``."""
        self.request.sendall(response_head(framing, {"X-Wire-Bytes": str(len(body))}))
        self.request.sendall(body)

    def send_paced(
        self, framing: str, times: Sequence[float], event: Callable[[int], bytes]
    ) -> None:
        """Events 1, 2, ... ``times[i]`` seconds after the head, each built just before
        its send (so it can carry the send time); then the end of the body."""
        wrap: Callable[[bytes], bytes] = bytes if framing == "close" else chunk
        # The head goes with the first event, in one write: nothing for Nagle or
        # delayed ACKs to hold.
        head = response_head(framing)
        start = time.monotonic()
        for seq, at in enumerate(times, 1):
            pause = start + at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            self.request.sendall(head + wrap(event(seq)))
            head = b""
        if framing != "close":
            self.request.sendall(LAST_CHUNK)

    def send_delayed(self, framing: str, event: Callable[[int], bytes]) -> None:
        """Event 1, then :data:`SILENCE` seconds of nothing, then event 2 and the end."""
        self.send_paced(framing, (0.0, SILENCE), event)


class BenchHandler(StreamHandler):
    """The paths, each ``<framing>`` one of :data:`FRAMINGS`:

    - ``GET /stream/<framing>?n=<n>``: N events;
    - ``GET /delay/<framing>``: the delay test;
    - ``GET /typed/<framing>/<n>/task-events/stream`` and
      ``GET /typed-delay/<framing>/task-events/stream``: the same for a
      ``Client`` whose base URL is ``.../typed/<framing>/<n>`` (or
      ``.../typed-delay/<framing>``); any query string, any ``Authorization``.

    A request that resumes (a ``Last-Event-ID`` header or a ``cursor``
    parameter: a typed client reconnecting after the end of the body) gets
    204, which ends an agentstream stream without another reconnect.
    """

    server: BenchServer
    request: socket.socket

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> None:
        typed = path.endswith(STREAM_PATH)
        if typed:
            path = path[: -len(STREAM_PATH)]
        kind, *rest = path.strip("/").split("/")
        resumed = "cursor" in query or "last-event-id" in headers
        if typed and resumed:
            self.send_status("204 No Content")
        elif kind == "stream" and not typed and len(rest) == 1:
            self.send_stream(rest[0], int(query["n"][0]))
        elif kind == "typed" and typed and len(rest) == 2:
            self.send_stream(rest[0], int(rest[1]))
        elif kind == "delay" and not typed and rest and rest[0] in FRAMINGS:
            self.send_delayed(rest[0], timed_event)
        elif kind == "typed-delay" and typed and rest and rest[0] in FRAMINGS:
            self.send_delayed(rest[0], timed_envelope)
        else:
            self.send_status("404 Not Found")

    def send_stream(self, framing: str, n: int) -> None:
        body = self.server.bodies.get((framing, n))
        if body is None:
            self.send_status("404 Not Found")
        else:
            self.send_body(framing, body)


def serve(conn: Connection, framings: Sequence[str], sizes: Sequence[int]) -> None:
    """Server process: build the bodies, send back the port, serve until told to stop."""
    events = build_events(max(sizes))
    bodies = {(f, n): frame(events[:n], f) for f in framings for n in set(sizes)}
    del events
    with BenchServer(bodies) as server:
        serve_until_stopped(server, conn)


def serve_until_stopped(server: socketserver.TCPServer, conn: Connection) -> None:
    """In a server process: serve on a thread, send the port back over ``conn``, and
    return once the parent says stop (or its end of ``conn`` closes)."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conn.send(server.server_address[1])
    with contextlib.suppress(EOFError):  # the parent's end closing also means stop
        conn.recv()
    server.shutdown()


@contextlib.contextmanager
def server_process(target: Callable[..., None], *args: Any) -> Iterator[int]:
    """Run ``target(conn, *args)`` (a ``serve`` function) in its own process; yield the
    port it sends back; tell it to stop on exit (terminated if it does not within 10 s)."""
    context = multiprocessing.get_context("fork")
    parent_end, server_end = context.Pipe()
    server = context.Process(target=target, args=(server_end, *args), daemon=True)
    server.start()
    try:
        yield parent_end.recv()
    finally:
        parent_end.send("stop")
        server.join(10)
        if server.is_alive():
            server.terminate()


# -- the clients ----------------------------------------------------------------

Events = Generator[tuple[Optional[str], str], None, None]
"""What a peer yields: (event ID, data) for each event, as soon as the library yields it."""

ACCEPT = {"Accept": "text/event-stream"}


def socket_floor(url: str, n: int) -> int:
    """Read the response to EOF from a bare socket; check the byte count. Returns ``n``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    with socket.create_connection((host, port)) as sock:
        request = f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
        sock.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(READ_CHUNK)
            if not data:
                raise RuntimeError("connection closed before the response head")
            received += data
        head, _, rest = received.partition(b"\r\n\r\n")
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        expected = int(headers[b"X-Wire-Bytes"])
        size = len(rest)
        buffer = bytearray(1024 * 1024)
        while True:
            got = sock.recv_into(buffer)
            if not got:
                break
            size += got
    if size != expected:
        raise RuntimeError(f"received {size} body bytes, expected {expected}")
    return n


def requests_floor(url: str, n: int) -> int:
    """requests' ``iter_content(65536)``, counting blank lines (``\\n\\n``) without parsing."""
    count = 0
    previous = 0
    with requests.get(url, stream=True, headers=ACCEPT, timeout=(10, READ_TIMEOUT)) as response:
        response.raise_for_status()
        for piece in response.iter_content(READ_CHUNK):
            count += piece.count(b"\n\n")
            if previous == 0x0A and piece[0] == 0x0A:
                count += 1  # a blank line split across two reads
            previous = piece[-1]
    return count


def sseclient_readme(url: str) -> Events:
    """sseclient-py exactly as its README shows it: the Response iterates in 128-byte reads."""
    response = requests.get(url, stream=True, headers={"Accept": "text/event-stream"})
    client = sseclient.SSEClient(response)  # type: ignore[arg-type]  # as in the README
    try:
        for event in client.events():
            yield event.id, event.data
    finally:
        client.close()


def sseclient_64k(url: str) -> Events:
    """sseclient-py at its best: fed ``response.iter_content(65536)``."""
    response = requests.get(url, stream=True, headers=ACCEPT, timeout=(10, READ_TIMEOUT))
    client = sseclient.SSEClient(response.iter_content(READ_CHUNK))
    try:
        for event in client.events():
            yield event.id, event.data
    finally:
        response.close()


def agentstream_sse(url: str) -> Events:
    """``agentstream.sse.EventSource`` with its defaults (64 KiB reads), but no reconnect.

    EventSource reconnects after a clean end of stream by design; the
    consumers stop at the N-th (or first) event and closing the generator
    closes the source.
    """
    with EventSource(url, retry=RetryPolicy.never(), read_timeout=READ_TIMEOUT) as source:
        for event in source:
            yield event.id, event.data


class Measurement(NamedTuple):
    """What one client process reports: events counted, seconds taken, last event ID."""

    events: int
    seconds: float
    last_id: Optional[str]


def agentstream_typed(base_url: str, n: int) -> Measurement:
    """``client.stream_events()``: typed, validated events; stop at the N-th, close the stream.

    The stream would reconnect after the end of the body (by design); it is
    closed at the N-th event, before it reads that end.
    """
    start = time.perf_counter()
    count = 0
    last_id: Optional[str] = None
    with AgentStreamClient(base_url, API_KEY) as client, client.stream_events() as stream:
        for event in stream:
            count += 1
            last_id = event.id
            if count == n:
                break
    return Measurement(count, time.perf_counter() - start, last_id)


def agentstream_listener(base_url: str, n: int) -> Measurement:
    """A ``Listener`` running one ``@registry.on("task.updated")`` handler that counts.

    Timed from before the client is built to the moment the handler has seen
    the N-th event; the handler then stops the listener (from its own thread,
    so no later event is handled), which is not timed. If the body ends
    first, the reader's resume gets 204 from the server and the listener ends
    by itself, short of N.
    """
    registry = Registry()
    count = 0
    last_id: Optional[str] = None
    reached_at = 0.0

    @registry.on("task.updated")
    def counted(event: TaskEvent) -> None:
        nonlocal count, last_id, reached_at
        count += 1
        last_id = event.id
        if count == n:
            reached_at = time.perf_counter()
            listener.stop()

    start = time.perf_counter()
    with AgentStreamClient(base_url, API_KEY) as client:
        listener = client.listen(registry=registry)
        listener.start()
        try:
            if not listener.join(LISTENER_WAIT):
                raise RuntimeError(f"listener timed out after {count} events")
        finally:
            stopped = listener.stop(timeout=10)
    if not stopped:
        raise RuntimeError("the listener did not stop within 10 s")
    if count != n or listener.error is not None or listener.stats.invalid_events:
        raise RuntimeError(
            f"listener ended after {count} events: error {listener.error!r}, stats {listener.stats}"
        )
    if not listener.wait_handled(n, timeout=10):
        raise RuntimeError(f"the cursor did not pass sequence {n}: {listener.cursor!r}")
    return Measurement(count, reached_at - start, last_id)


def sent_at_of(event: TaskEvent) -> float:
    """The server's send time of a typed delay event (in its ``data.summary``)."""
    return float(event.data.summary)


def typed_delay(base_url: str) -> float:
    """Milliseconds from the server's send to ``client.stream_events()`` yielding it."""
    with AgentStreamClient(base_url, API_KEY) as client, client.stream_events() as stream:
        event = next(stream)
        arrived = time.time()
    return (arrived - sent_at_of(event)) * 1000


def listener_delay(base_url: str) -> float:
    """Milliseconds from the server's send to a Listener's handler seeing the event."""
    registry = Registry()
    seen = threading.Event()
    delays: list[float] = []

    @registry.on("task.updated")
    def first(event: TaskEvent) -> None:
        if not delays:
            delays.append((time.time() - sent_at_of(event)) * 1000)
            seen.set()

    with AgentStreamClient(base_url, API_KEY) as client:
        listener = client.listen(registry=registry)
        listener.start()
        try:
            if not seen.wait(DELAY_DEADLINE):
                raise RuntimeError(f"no event handled in {DELAY_DEADLINE:.0f} s: {listener!r}")
        finally:
            listener.stop(timeout=10)
    return delays[0]


@dataclass(frozen=True)
class Client:
    """One measured client: a floor (counts only), a peer (yields events), or typed.

    A typed client (``typed``) does its own counting and timing; it takes a
    ``Client`` base URL and has its own delay function (``typed_delay``).
    """

    key: str
    label: str
    floor: Optional[Callable[[str, int], int]] = None
    peer: Optional[Callable[[str], Events]] = None
    typed: Optional[Callable[[str, int], Measurement]] = None
    first_delay: Optional[Callable[[str], float]] = None

    def stream_url(self, base: str, framing: str, n: int) -> str:
        """Where this client streams ``n`` events in ``framing`` (a base URL if typed)."""
        if self.typed is not None:
            return f"{base}/typed/{framing}/{n}"
        return f"{base}/stream/{framing}?n={n}"

    def delay_url(self, base: str, framing: str) -> str:
        """Where this client gets the small-event delay test in ``framing``."""
        if self.typed is not None:
            return f"{base}/typed-delay/{framing}"
        return f"{base}/delay/{framing}"


CLIENTS = (
    Client("socket-floor", "raw socket floor (read to EOF)", floor=socket_floor),
    Client("requests-floor", "requests iter_content(65536) floor", floor=requests_floor),
    Client("sseclient-readme", "sseclient-py, README form (128-byte reads)", peer=sseclient_readme),
    Client("sseclient-64k", "sseclient-py over iter_content(65536)", peer=sseclient_64k),
    Client("agentstream", "agentstream.sse.EventSource", peer=agentstream_sse),
    Client(
        "typed",
        "agentstream typed: client.stream_events()",
        typed=agentstream_typed,
        first_delay=typed_delay,
    ),
    Client(
        "listener",
        "agentstream listener: Listener + 1 handler",
        typed=agentstream_listener,
        first_delay=listener_delay,
    ),
)
BY_KEY = {client.key: client for client in CLIENTS}
PEERS = tuple(client for client in CLIENTS if client.peer is not None)
"""The wire-level parsers."""
TYPED = tuple(client for client in CLIENTS if client.typed is not None)
"""agentstream's typed layers."""
DELAYED = PEERS + TYPED
"""The clients of the small-event delay test."""
AGENTSTREAM = ("agentstream", *(client.key for client in TYPED))
"""The agentstream clients, whose delays the targets check."""


def measure_throughput(key: str, url: str, n: int) -> Measurement:
    """Run client ``key`` against ``url`` until ``n`` events; time it (in this process)."""
    client = BY_KEY[key]
    if client.typed is not None:
        return client.typed(url, n)
    start = time.perf_counter()
    if client.floor is not None:
        return Measurement(client.floor(url, n), time.perf_counter() - start, None)
    assert client.peer is not None
    count = 0
    last_id: Optional[str] = None
    events = client.peer(url)
    try:
        for event_id, _data in events:
            count += 1
            last_id = event_id
            if count == n:
                break
    finally:
        events.close()
    return Measurement(count, time.perf_counter() - start, last_id)


def measure_delay(key: str, url: str) -> float:
    """Milliseconds from the server's send to client ``key`` yielding the first event."""
    first_delay = BY_KEY[key].first_delay
    if first_delay is not None:
        return first_delay(url)
    peer = BY_KEY[key].peer
    assert peer is not None
    events = peer(url)
    try:
        _id, data = next(events)
        arrived = time.time()
    finally:
        events.close()
    return (arrived - float(json.loads(data)["sentAt"])) * 1000


# -- isolation --------------------------------------------------------------------


def _child(conn: Connection, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Process target: send back ``("ok", result)`` or ``("error", traceback)``."""
    try:
        conn.send(("ok", function(*args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))


def isolated(function: Callable[..., Any], *args: Any, deadline: float) -> Any:
    """Call ``function(*args)`` in a fresh process and return its result (or raise)."""
    context = multiprocessing.get_context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, function, args))
    process.start()
    sender.close()
    try:
        if not receiver.poll(deadline):
            raise TimeoutError(f"{function.__name__}{args} took more than {deadline:.0f} s")
        status, value = receiver.recv()
    finally:
        if process.is_alive():
            process.join(5)
        if process.is_alive():
            process.terminate()
            process.join()
        receiver.close()
    if status != "ok":
        raise RuntimeError(f"{function.__name__}{args} failed in its process:\n{value}")
    return value


# -- the run ----------------------------------------------------------------------


@dataclass
class Settings:
    """The run, as the command line asked for it."""

    events: int
    rounds: int
    framings: list[str]
    readme_events: int
    command: str


@dataclass
class Throughput:
    """One client in one framing: the time of each round."""

    client: Client
    framing: str
    events: int
    times: list[float]

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def progress(message: str) -> None:
    """One line of progress, on stderr (stdout is the report)."""
    print(message, file=sys.stderr, flush=True)


def events_for(client: Client, settings: Settings) -> int:
    """Events asked of ``client``: all of them, unless the README form is capped."""
    return settings.readme_events if client.key == "sseclient-readme" else settings.events


def run_throughput(base: str, settings: Settings) -> dict[tuple[str, str], Throughput]:
    """Every client in every framing, once per round; check each count and last ID."""
    results: dict[tuple[str, str], Throughput] = {}
    for round_number in range(1, settings.rounds + 1):
        for framing in settings.framings:
            for client in CLIENTS:
                n = events_for(client, settings)
                url = client.stream_url(base, framing, n)
                got: Measurement = isolated(
                    measure_throughput, client.key, url, n, deadline=THROUGHPUT_DEADLINE
                )
                if got.events != n:
                    raise RuntimeError(f"{client.key}/{framing}: {got.events} events, not {n}")
                if client.floor is None and got.last_id != event_id(n):
                    raise RuntimeError(f"{client.key}/{framing}: last id {got.last_id!r}, not {n}")
                entry = results.setdefault(
                    (framing, client.key), Throughput(client, framing, n, [])
                )
                entry.times.append(got.seconds)
                progress(
                    f"round {round_number}/{settings.rounds} {framing:9} {client.key:16} "
                    f"{n:>7} events in {got.seconds:7.3f} s = {n / got.seconds:>10,.0f} events/s"
                )
    return results


def run_delays(base: str, settings: Settings) -> dict[tuple[str, str], list[float]]:
    """The small-event delay of every parsing client in every framing, once per round."""
    delays: dict[tuple[str, str], list[float]] = {}
    for round_number in range(1, settings.rounds + 1):
        for framing in settings.framings:
            for client in DELAYED:
                url = client.delay_url(base, framing)
                delay: float = isolated(measure_delay, client.key, url, deadline=DELAY_DEADLINE)
                delays.setdefault((framing, client.key), []).append(delay)
                progress(
                    f"round {round_number}/{settings.rounds} delay {framing:9} "
                    f"{client.key:16} {delay:9.1f} ms"
                )
    return delays


def ratio(
    results: dict[tuple[str, str], Throughput], framing: str, key: str, of: str = "agentstream"
) -> float:
    """Client ``of``'s events/s over client ``key``'s, in ``framing`` (above 1: faster)."""
    return results[(framing, of)].rate / results[(framing, key)].rate


def extra_cost(results: dict[tuple[str, str], Throughput], framing: str, key: str) -> float:
    """Microseconds per event that client ``key`` spends beyond ``agentstream.sse``."""
    return (1 / results[(framing, key)].rate - 1 / results[(framing, "agentstream")].rate) * 1e6


def report(
    settings: Settings,
    results: dict[tuple[str, str], Throughput],
    delays: dict[tuple[str, str], list[float]],
    event_bytes: float,
    wall: float,
) -> str:
    lines = [
        "# agentstream wire benchmark",
        "",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; wall time {wall:.0f} s",
        f"- command: `{settings.command}`",
        f"- machine: {platform.platform()}, {multiprocessing.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "- versions: " + ", ".join(f"{name} {version(name)}" for name in DISTRIBUTIONS),
        f"- payload: {settings.events:,} `task.updated` events, {event_bytes:.0f} bytes each "
        f"on average (MB/s counts these SSE bytes, 1 MB = 10^6 bytes)",
        f"- {settings.rounds} round(s), clients and framings interleaved, each measurement in "
        f"its own process; times are medians",
    ]
    if settings.readme_events != settings.events:
        lines.append(
            f"- **sseclient-py README form capped at {settings.readme_events:,} events** "
            f"(`--readme-events`); its events/s is still comparable"
        )
    lines += [
        "",
        "## Throughput",
        "",
        "| framing | client | events | median s | events/s | MB/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for framing in settings.framings:
        for client in CLIENTS:
            entry = results[(framing, client.key)]
            lines.append(
                f"| {framing} | {client.label} | {entry.events:,} | {entry.seconds:.3f} | "
                f"{entry.rate:,.0f} | {entry.rate * event_bytes / 1e6:.1f} |"
            )
    lines += [
        "",
        "## Ratios (events/s; above 1 means the first is faster)",
        "",
        "agentstream = `agentstream.sse.EventSource` (the raw wire layer); typed = "
        "`client.stream_events()`; listener = a `Listener` with one handler.",
        "",
        "| framing | agentstream / sseclient-py README form | agentstream / sseclient-py 64 KiB "
        "| raw socket floor / fastest parser | typed / agentstream | listener / agentstream "
        "| typed / sseclient-py 64 KiB | listener / sseclient-py 64 KiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for framing in settings.framings:
        fastest = max(results[(framing, client.key)].rate for client in PEERS)
        floor = results[(framing, "socket-floor")].rate
        lines.append(
            f"| {framing} | {ratio(results, framing, 'sseclient-readme'):.2f} | "
            f"{ratio(results, framing, 'sseclient-64k'):.2f} | {floor / fastest:.1f} | "
            f"{ratio(results, framing, 'agentstream', of='typed'):.2f} | "
            f"{ratio(results, framing, 'agentstream', of='listener'):.2f} | "
            f"{ratio(results, framing, 'sseclient-64k', of='typed'):.2f} | "
            f"{ratio(results, framing, 'sseclient-64k', of='listener'):.2f} |"
        )
    lines += [
        "",
        "## Cost of the typed layers (µs per event beyond `agentstream.sse.EventSource`, "
        "from the medians)",
        "",
        "| framing | " + " | ".join(client.label for client in TYPED) + " |",
        "|---|" + "---:|" * len(TYPED),
    ]
    for framing in settings.framings:
        cells = [f"{extra_cost(results, framing, client.key):.1f}" for client in TYPED]
        lines.append(f"| {framing} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## Small-event delay (ms from the server's send to the event being yielded, "
        f"or handled for the listener; the server then stays silent {SILENCE:.0f} s; "
        f"median of {settings.rounds}, worst in brackets)",
        "",
        "| framing | " + " | ".join(client.label for client in DELAYED) + " |",
        "|---|" + "---:|" * len(DELAYED),
    ]
    for framing in settings.framings:
        cells = []
        for client in DELAYED:
            values = delays[(framing, client.key)]
            cells.append(f"{statistics.median(values):,.1f} ({max(values):,.1f})")
        lines.append(f"| {framing} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "In the delay test `chunked` and `per-event` are the same bytes (a chunk cannot "
        "span the silence, so each event is its own chunk). The wire-level clients get a "
        f"{len(timed_event(1))}-byte event, the typed ones a minimal valid `task.updated` "
        f"envelope ({len(timed_envelope(1))} bytes).",
        "",
        *verdict(settings, results, delays),
    ]
    return "\n".join(lines) + "\n"


def verdict(
    settings: Settings,
    results: dict[tuple[str, str], Throughput],
    delays: dict[tuple[str, str], list[float]],
) -> list[str]:
    """The issue's targets: not slower than plain sseclient-py, and no held event."""
    lines = ["## Against the targets", ""]
    for framing in settings.framings:
        readme = ratio(results, framing, "sseclient-readme")
        best = ratio(results, framing, "sseclient-64k")
        met = "met" if min(readme, best) >= 1 else "**MISSED: agentstream is slower**"
        lines.append(
            f"- not slower than sseclient-py, {framing}: {met} "
            f"({readme:.2f}x the README form, {best:.2f}x the 64 KiB form)"
        )
    for key in AGENTSTREAM:
        worst = max(max(delays[(framing, key)]) for framing in settings.framings)
        met = "met" if worst < HELD_MS else f"**MISSED: {BY_KEY[key].label} held an event**"
        lines.append(
            f"- no held event, {BY_KEY[key].label}: {met} (worst small-event delay "
            f"{worst:,.1f} ms; held means more than {HELD_MS:.0f} ms)"
        )
    return lines


def version(distribution: str) -> str:
    """The installed version of ``distribution``, or "not installed"."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def parse_args(argv: Optional[Sequence[str]] = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, help="events per stream (default 200,000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, median kept (default 3)")
    parser.add_argument(
        "--framings",
        default=",".join(FRAMINGS),
        help="comma-separated subset of: " + ", ".join(FRAMINGS),
    )
    parser.add_argument(
        "--readme-events",
        type=int,
        help="cap the events of the slow sseclient-py README form (default: no cap)",
    )
    parser.add_argument("--quick", action="store_true", help="20,000 events, 1 round")
    args = parser.parse_args(argv)
    framings = [f.strip() for f in args.framings.split(",") if f.strip()]
    unknown = sorted(set(framings) - set(FRAMINGS))
    if unknown or not framings:
        parser.error(f"unknown framing(s) {unknown}; choose from {', '.join(FRAMINGS)}")
    events = args.events or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 3)
    readme_events = min(args.readme_events or events, events)
    command = " ".join(["python", "bench/wire.py", *(argv if argv is not None else sys.argv[1:])])
    return Settings(events, rounds, framings, readme_events, command)


def main(argv: Optional[Sequence[str]] = None) -> None:
    settings = parse_args(argv)
    check_envelopes()
    started = time.perf_counter()
    sizes = sorted({settings.events, settings.readme_events})
    progress(f"building {settings.events:,} events in the server process...")
    with server_process(serve, settings.framings, sizes) as port:
        base = f"http://127.0.0.1:{port}"
        results = run_throughput(base, settings)
        delays = run_delays(base, settings)
    payload = sum(len(build_event(seq)) for seq in range(1, settings.events + 1))
    event_bytes = payload / settings.events
    text = report(settings, results, delays, event_bytes, time.perf_counter() - started)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    progress(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
