"""The connections the reference server serves: counted against the cap, refused over it,
closed and joined at stop()."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from typing import Optional

__all__ = ["Connections", "Rejecter"]

_REJECT_LINGER = 2.0  # seconds a refused connection gets to read its 503 and close


class Connections:
    """The connections being served: counted against the cap, closed and joined at stop()."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._closing = False
        self._lock = threading.Lock()
        self._open: dict[socket.socket, Optional[threading.Thread]] = {}
        self._idle: set[socket.socket] = set()  # waiting for their next request

    def reserve(self, sock: socket.socket) -> bool:
        """Count ``sock`` in, unless the cap is reached (then False)."""
        with self._lock:
            if len(self._open) >= self.limit:
                return False
            self._open[sock] = None
            return True

    def attach(self, sock: socket.socket) -> None:
        """Record the thread that serves ``sock`` (called from that thread)."""
        with self._lock:
            self._open[sock] = threading.current_thread()

    def remove(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)
            self._idle.discard(sock)

    def set_idle(self, sock: socket.socket, idle: bool) -> bool:
        """Mark ``sock`` as waiting for a request (or not); False once closing began."""
        with self._lock:
            if self._closing:
                return False
            if idle:
                self._idle.add(sock)
            else:
                self._idle.discard(sock)
            return True

    def count(self) -> int:
        with self._lock:
            return len(self._open)

    def close_all(self, grace: float, timeout: float) -> None:
        """Let connections finish for ``grace`` seconds, then cut the rest and join them.

        A stream whose generator just ended still has its last chunk to write:
        cutting its socket at once would turn a clean end into a truncated one.
        """
        me = threading.current_thread()
        deadline = time.monotonic() + grace
        with self._lock:
            self._closing = True
            idle = list(self._idle)
            threads = [t for t in self._open.values() if t is not None and t is not me]
        for sock in idle:  # kept-alive connections between requests: nothing to finish
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            items = list(self._open.items())
        for sock, _ in items:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, maybe in items:
            if maybe is not None and maybe is not me:
                maybe.join(timeout)


class Rejecter:
    """Answers connections over the cap with a 503, from one thread for all of them.

    The answer goes out at once; the connection is then half-closed and kept
    until the client closes it (at most ``_REJECT_LINGER`` seconds), so that
    its unread request does not turn our close into a reset that would hide
    the 503 from it.
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._deadlines: dict[socket.socket, float] = {}
        self._pending: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="agentstream-rejecter", daemon=True)
        self._thread.start()

    def reject(self, sock: socket.socket, answer: bytes) -> None:
        try:
            sock.setblocking(False)
            sock.send(answer)  # small: fits in any socket buffer
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        with self._lock:
            if self._closed:
                sock.close()
                return
            self._pending.append(sock)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            timeout = min((d - now for d in self._deadlines.values()), default=None)
            events = self._selector.select(None if timeout is None else max(0.0, timeout))
            with self._lock:
                if self._closed:
                    break
                pending, self._pending = self._pending, []
            for sock in pending:
                self._deadlines[sock] = time.monotonic() + _REJECT_LINGER
                self._selector.register(sock, selectors.EVENT_READ)
            for key, _ in events:
                fileobj = key.fileobj
                assert isinstance(fileobj, socket.socket)
                sock = fileobj
                if sock is self._wake_r:
                    with contextlib.suppress(OSError):
                        sock.recv(4096)
                    continue
                try:
                    if sock.recv(65536):
                        continue  # the client's request: skip it, wait for its close
                except OSError:
                    pass
                self._drop(sock)
            now = time.monotonic()
            for sock in [s for s, d in self._deadlines.items() if d <= now]:
                self._drop(sock)
        for sock in list(self._deadlines) + self._pending:
            self._drop(sock)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _drop(self, sock: socket.socket) -> None:
        if self._deadlines.pop(sock, None) is not None:
            self._selector.unregister(sock)
        sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(5)
