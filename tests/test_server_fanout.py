"""The fan-out: no read of the store for a live event whatever the number of streams, idle
streams that do not wake, every tailer gets every event in order, and a slow tailer is
disconnected without holding up the others, then resumes from its cursor, losing nothing."""

from __future__ import annotations

import re
import select
import socket
import threading
from typing import Any

import pytest

from agentstream.server import ServerConfig
from agentstream.server._fanout import Subscription

from .server_fixtures import Api, ServerFactory, wait_until


def test_a_live_event_costs_no_store_read_whatever_the_streams(
    servers: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = servers.start()
    api = servers.api(srv)
    store = srv.store
    reads: list[dict[str, Any]] = []
    read_after = store.read_after

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs)
        return read_after(*args, **kwargs)

    monkeypatch.setattr(store, "read_after", counted)
    streams = [api.stream() for _ in range(10)]
    readers = [stream.__enter__() for stream in streams]
    try:
        broadcaster = srv.app._streams.broadcaster
        assert wait_until(lambda: broadcaster.subscriber_count == 10)
        opened = len(reads)  # each stream's own first read
        env = store.publish("task.shipped", {"n": 1})
        for reader in readers:
            assert reader.next_event().envelope == env
        # The store hands the committed event to the fan-out: no query, for all ten.
        assert len(reads) == opened
    finally:
        for stream in streams:
            stream.__exit__(None, None, None)


def test_an_idle_stream_does_not_wake_nor_does_a_live_event_wake_it(
    servers: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = servers.start()
    api = servers.api(srv)
    woke = threading.Event()
    wait = Subscription.wait

    def counted_wait(self: Subscription, timeout: Any) -> Any:
        events = wait(self, timeout)
        woke.set()
        return events

    monkeypatch.setattr(Subscription, "wait", counted_wait)
    with api.stream(heartbeatSeconds=300) as reader:
        assert srv.app.wait_open_streams(1)
        # The old streams polled their socket every 0.25 s: two wake-ups in this time.
        assert not woke.wait(0.6)
        env = api.publish("task.shipped", {"n": 1})
        assert reader.next_event().envelope == env
        assert not woke.is_set()  # the fan-out wrote it to the socket: no thread woke


def test_every_tailer_gets_every_event_in_order(servers: ServerFactory) -> None:
    srv = servers.start()
    tailers = 10
    publishers = 4
    per_publisher = 100
    total = publishers * per_publisher
    apis = [servers.api(srv) for _ in range(tailers)]
    received: list[list[int]] = [[] for _ in range(tailers)]
    failures: list[BaseException] = []
    opened = threading.Barrier(tailers + 1, timeout=10)

    def tail(index: int) -> None:
        try:
            with apis[index].stream(timeout=10) as reader:
                opened.wait()
                while len(received[index]) < total:
                    received[index].append(reader.next_event().sequence)
        except BaseException as exc:  # reported below
            failures.append(exc)

    def publish(index: int) -> None:
        api = Api(srv.url, srv.api_key)
        try:
            for n in range(per_publisher):
                api.publish("message.chunk", f"p{index}-{n}")
        finally:
            api.close()

    threads = [threading.Thread(target=tail, args=(i,)) for i in range(tailers)]
    for thread in threads:
        thread.start()
    opened.wait()
    base = srv.store.head_sequence
    senders = [threading.Thread(target=publish, args=(i,)) for i in range(publishers)]
    for thread in senders:
        thread.start()
    for thread in senders + threads:
        thread.join(30)
    assert not failures, failures
    expected = list(range(base + 1, base + total + 1))
    for sequences in received:
        assert sequences == expected


def test_a_slow_tailer_is_disconnected_and_resumes_losing_nothing(
    servers: ServerFactory,
) -> None:
    srv = servers.start(config=ServerConfig(stream_backlog=50))
    api = servers.api(srv)
    payload = "x" * 4000

    # The slow tailer: a raw stream that reads nothing while events pile up.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(10)
    slow.connect(("127.0.0.1", srv.port))
    slow.sendall(
        f"GET /task-events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {srv.api_key}\r\n\r\n".encode()
    )
    fast_sequences: list[int] = []
    with api.stream(timeout=10) as fast:
        assert srv.app.wait_open_streams(2)
        published: list[int] = []
        # Publish until the server gives up on the slow tailer (bounded), reading the
        # fast one meanwhile: it must never lag, whatever the slow one does.
        while srv.app.open_streams == 2 and len(published) < 20_000:
            for _ in range(50):
                published.append(srv.store.publish("message.chunk", payload)["sequence"])
            for _ in range(50):
                fast_sequences.append(fast.next_event().sequence)
        assert srv.app.open_streams == 1, "the slow tailer was never disconnected"
        for _ in range(10):
            published.append(srv.store.publish("message.chunk", payload)["sequence"])
            fast_sequences.append(fast.next_event().sequence)
    assert fast_sequences == published

    # The slow tailer reads what reached it, then resumes from its last complete event.
    data = b""
    while chunk := _recv(slow):
        data += chunk
    slow.close()
    body = _dechunk(data.partition(b"\r\n\r\n")[2])
    events = [b for b in body.split(b"\n\n") if b.startswith(b"id: ") and b"\ndata: " in b]
    assert events, "the slow tailer got nothing at all"
    first_part = [int(b[4:24].decode()[4:20], 16) for b in events]
    last_id = events[-1].split(b"\n", 1)[0][4:].decode()
    assert first_part == published[: len(first_part)]
    assert len(first_part) < len(published)
    with api.stream(timeout=10, cursor=last_id) as resumed:
        rest = [resumed.next_event().sequence for _ in range(len(published) - len(first_part))]
    assert first_part + rest == published


def _dechunk(data: bytes) -> bytes:
    """The body of a chunked response, up to where it was cut off."""
    out = b""
    while True:
        size_line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return out
        size = int(size_line, 16)
        if size == 0 or len(rest) < size:
            return out + rest[:size] if size else out
        out += rest[:size]
        data = rest[size + 2 :]


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def test_a_lone_event_goes_out_at_once_and_a_burst_in_one_write(servers: ServerFactory) -> None:
    # A long interval, so that which round sends what cannot depend on the machine's speed.
    srv = servers.start(config=ServerConfig(fanout_interval=1.0))
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(
        f"GET /task-events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {srv.api_key}\r\n\r\n".encode()
    )
    chunks = _Chunks(sock)
    try:
        assert chunks.next().endswith(b": connected\n\n")
        broadcaster = srv.app._streams.broadcaster
        # Subscribed, and caught up: the fan-out writes to its socket itself.
        assert wait_until(lambda: [s._direct for s in broadcaster._subscriptions] == [True])
        lone = srv.store.publish("message.chunk", "lone")
        # Written by the publishing thread itself, before publish() returned: there is
        # no round in the last second to wait for. (Through the fan-out's thread it
        # could not come before the interval, 1 s.)
        assert chunks.ready(within=0.5)
        assert _sequences(chunks.next()) == [lone["sequence"]]
        burst = [srv.store.publish("message.chunk", f"b{n}")["sequence"] for n in range(10)]
        # All ten came within the interval of that round: one round, one chunk, in order.
        assert _sequences(chunks.next()) == burst
    finally:
        sock.close()


class _Chunks:
    """The HTTP chunks of a chunked response, one by one, from a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._data = b""
        self._in_body = False

    def ready(self, within: float) -> bool:
        """Whether bytes are there to read within ``within`` seconds."""
        return bool(self._data) or bool(select.select([self._sock], [], [], within)[0])

    def next(self) -> bytes:
        while True:
            if not self._in_body and b"\r\n\r\n" in self._data:
                self._data = self._data.partition(b"\r\n\r\n")[2]
                self._in_body = True
            if self._in_body:
                size_line, sep, rest = self._data.partition(b"\r\n")
                if sep and len(rest) >= int(size_line, 16) + 2:
                    size = int(size_line, 16)
                    self._data = rest[size + 2 :]
                    return rest[:size]
            data = self._sock.recv(65536)
            assert data, "the stream ended"
            self._data += data


def _sequences(chunk: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb'"sequence":(\d+)', chunk)]
