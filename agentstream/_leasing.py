"""When a lease holder renews, and until when it may dispatch: :class:`LeaseClock`.

Pure timing, no threads and no store calls (the listener makes those). A
lease granted for ``ttl`` seconds is renewed every ``ttl / 4``; the holder
dispatches only until ``ttl * 3 / 4`` after the start of its last successful
grant or renewal, counted on its own monotonic clock from *before* the
request was sent, so that it stops dispatching while the store still counts
the lease as its own: the last quarter is the margin for a handler already
running, a slow store call and clock drift. Two renewals in a row may fail
before the holder stops.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["LeaseClock"]


class LeaseClock:
    """The timing of one listener's lease on its name."""

    def __init__(self, ttl: float) -> None:
        if not ttl > 0:
            raise ValueError("lease_ttl must be more than 0 seconds")
        self.ttl = ttl
        self.token: Optional[int] = None
        """The fencing token of the lease held, or None."""
        self.valid_until: Optional[float] = None
        """``time.monotonic()`` until which dispatching is safe, or None."""
        self._renew_at = 0.0

    @property
    def renew_period(self) -> float:
        """Seconds between two renewals."""
        return self.ttl / 4

    @property
    def standby_poll(self) -> float:
        """Seconds between two attempts to take a lease someone else holds."""
        return min(0.5, self.ttl / 4)

    def granted(self, token: int, sent_at: float) -> None:
        """The store granted (or renewed) the lease; the request left at ``sent_at``."""
        self.token = token
        self.valid_until = sent_at + self.ttl * 3 / 4
        self._renew_at = sent_at + self.renew_period

    def renewal_failed(self, now: float) -> None:
        """A renewal could not reach the store: try again soon, still before
        :attr:`valid_until`."""
        self._renew_at = now + self.renew_period / 4

    def lost(self) -> None:
        """The lease is gone (refused, expired, released)."""
        self.token = None
        self.valid_until = None

    def renewal_due(self, now: float) -> bool:
        return self.token is not None and now >= self._renew_at

    def holds(self, now: float) -> bool:
        """True while the lease is held and dispatching is still safe."""
        return self.valid_until is not None and now < self.valid_until
