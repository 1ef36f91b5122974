"""The cursor-store protocols, and the one rule every lease store shares.

A :class:`CursorStore` keeps one cursor per listener name. A
:class:`LeaseStore` also makes one listener per name the only consumer: it
grants a lease for a time to live, and each grant carries a fencing token that
only grows, so that a save made by a holder that lost its lease is refused.
"""

from __future__ import annotations

import threading
from typing import Optional, Protocol, runtime_checkable

from ..errors import StoreResetError

__all__ = ["CursorStore", "LeaseStore"]


@runtime_checkable
class CursorStore(Protocol):
    """Where cursors are kept, one per listener name."""

    def load(self, name: str) -> Optional[str]:
        """The saved cursor for ``name``, or None."""

    def save(self, name: str, cursor: str) -> None:
        """Remember ``cursor`` for ``name``. Called from listener threads."""


@runtime_checkable
class LeaseStore(CursorStore, Protocol):
    """A cursor store that can also make one listener per name the only consumer.

    Every method is safe to call from several threads of one process, and
    (for stores that span processes) from several processes at once.
    """

    def acquire(self, name: str, holder: str, ttl: float) -> Optional[int]:
        """Grant the lease on ``name`` to ``holder`` for ``ttl`` seconds if nobody
        holds it, or the previous lease expired, or was released.

        Returns the new fencing token: an int strictly greater than every token
        granted before for ``name`` by this store (it only grows, also across
        restarts of the process, for as long as the store's data lasts). If
        ``holder`` already holds an unexpired lease, its expiry is extended and
        its token returned unchanged. Returns None while another holder holds
        an unexpired lease. Raises :class:`~agentstream.errors.StoreResetError`
        when the store's counter went below a token this object returned before.
        """

    def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        """Extend the lease to ``ttl`` seconds from now if ``holder`` still holds
        it with ``token`` (even if it expired a moment ago but nobody else was
        granted it since). False if the lease is gone or belongs to another
        holder or token: the caller must stop at once."""

    def release(self, name: str, holder: str, token: int) -> None:
        """Give the lease up now (a clean stop), if ``holder`` still holds it with
        ``token``; a no-op otherwise. The token counter is kept: the next grant
        gets a larger token."""

    def save_fenced(self, name: str, cursor: str, token: int) -> None:
        """Save ``cursor`` only if ``token`` is the newest token granted for
        ``name``; otherwise raise :class:`~agentstream.errors.LeaseLostError`
        and change nothing. Check and write are one atomic step."""

    def lease_holder(self, name: str) -> Optional[tuple[str, int, float]]:
        """``(holder, token, seconds left)`` of the unexpired lease on ``name``,
        or None (for health reports and tests)."""


class TokenWatermark:
    """The highest fencing token a store object has returned, per name.

    A store that lost its data (a flushed Redis, one restarted without
    persistence, a deleted database file) restarts its counter; this is how a
    store object notices it instead of handing out a token that an older
    holder may still carry.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._highest: dict[str, int] = {}

    def check(self, name: str, token: int, *, new_grant: bool) -> int:
        """Record ``token`` for ``name`` and return it; raise StoreResetError if it
        is lower than one returned before, or equal to it for a new grant."""
        with self._lock:
            highest = self._highest.get(name, 0)
            if token < highest or (new_grant and token == highest):
                raise StoreResetError(name, token, highest)
            self._highest[name] = max(highest, token)
        return token
