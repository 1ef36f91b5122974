"""``PeerWatcher``: notices, from one thread, that the client of an idle stream went away.

An SSE client sends nothing after its request, so its socket turning
readable means EOF (or a reset). Before, each stream thread woke every
0.25 s to poll its own socket: 1,000 idle streams cost 4,000 wake-ups a
second. Now one thread sleeps in the selector (epoll where there is one) over
every stream's socket, and wakes only when one of them has something to say.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from typing import Callable

__all__ = ["PeerWatcher"]

logger = logging.getLogger(__name__)

OnGone = Callable[[], None]


class PeerWatcher:
    """Calls a stream's ``on_gone`` when its client closes the connection."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="agentstream-peers", daemon=True)
        self._thread.start()

    def watch(self, sock: socket.socket, on_gone: OnGone) -> bool:
        """Watch ``sock`` until :meth:`unwatch`; False if it cannot be (closed already)."""
        with self._lock:
            if self._closed:
                return False
            try:
                self._selector.register(sock, selectors.EVENT_READ, on_gone)
            except (KeyError, ValueError, OSError):
                return False
        self._wake()  # a select()-based selector only sees new sockets on its next call
        return True

    def unwatch(self, sock: socket.socket) -> None:
        """Stop watching ``sock`` (before it is closed). Idempotent."""
        with self._lock:
            if not self._closed:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake()
        self._thread.join(5)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        while True:
            events = self._selector.select()
            gone: list[OnGone] = []
            with self._lock:
                if self._closed:
                    break
                for key, _ in events:
                    sock = key.fileobj
                    if sock is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                        continue
                    assert isinstance(sock, socket.socket)
                    # Readable: EOF, a reset, or (unusually) bytes from the client. Either
                    # way there is nothing more to watch on this socket.
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        self._selector.unregister(sock)
                    if _peer_closed(sock):
                        gone.append(key.data)
            for on_gone in gone:
                try:
                    on_gone()
                except Exception:  # pragma: no cover - a callback bug must not stop the watcher
                    logger.exception("a stream's on_gone callback failed")
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


def _peer_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
