"""Cursors and leases in memory: one process."""

from __future__ import annotations

import threading
import time
from typing import NamedTuple, Optional

from ..errors import LeaseLostError

__all__ = ["MemoryCursorStore"]


class _Lease(NamedTuple):
    holder: str
    token: int
    expires_at: float  # time.monotonic()


class MemoryCursorStore:
    """Cursors in memory: survives a listener restart in the same process, not
    a new process. Each :class:`~agentstream.Client` keeps one for its listeners.

    Implements :class:`~agentstream.cursors.LeaseStore` for the listeners of one
    process (a script, tests); leases expire on ``time.monotonic()``.
    """

    def __init__(self) -> None:
        self._cursors: dict[str, str] = {}
        self._lock = threading.Lock()  # leases and fenced saves only
        self._leases: dict[str, _Lease] = {}
        self._tokens: dict[str, int] = {}

    def load(self, name: str) -> Optional[str]:
        return self._cursors.get(name)

    def save(self, name: str, cursor: str) -> None:
        # One dict set: atomic under the GIL without a lock, and save() is on the
        # benchmarked path of a Listener (a lock here cost 3% of its time).
        self._cursors[name] = cursor

    def acquire(self, name: str, holder: str, ttl: float) -> Optional[int]:
        with self._lock:
            now = time.monotonic()
            lease = self._leases.get(name)
            if lease is not None and lease.expires_at > now:
                if lease.holder != holder:
                    return None
                self._leases[name] = lease._replace(expires_at=now + ttl)
                return lease.token
            token = self._tokens.get(name, 0) + 1
            self._tokens[name] = token
            self._leases[name] = _Lease(holder, token, now + ttl)
            return token

    def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        with self._lock:
            lease = self._leases.get(name)
            # The lease record is replaced on every grant, so a matching one means
            # nobody else was granted it since, even if it just expired.
            if lease is None or lease.holder != holder or lease.token != token:
                return False
            self._leases[name] = lease._replace(expires_at=time.monotonic() + ttl)
            return True

    def release(self, name: str, holder: str, token: int) -> None:
        with self._lock:
            lease = self._leases.get(name)
            if lease is not None and lease.holder == holder and lease.token == token:
                del self._leases[name]

    def save_fenced(self, name: str, cursor: str, token: int) -> None:
        with self._lock:
            current = self._tokens.get(name)
            if current != token:
                raise LeaseLostError(name, token, current)
            self._cursors[name] = cursor

    def lease_holder(self, name: str) -> Optional[tuple[str, int, float]]:
        with self._lock:
            lease = self._leases.get(name)
            if lease is None:
                return None
            left = lease.expires_at - time.monotonic()
        return (lease.holder, lease.token, left) if left > 0 else None
