"""What a long-running listener logs about its connection: :class:`ConnectionLog`.

A listener that never gives up must not be silent while it retries, nor
fill the log with a line per attempt: a WARNING at the first failed
attempt, then at most one WARNING per ``interval`` with the count and the
last error, and an INFO line once the connection is back, with the cursor it
resumed from. Pure (a clock is passed in), so it is tested without threads.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional

__all__ = ["FAILURE_LOG_INTERVAL", "ConnectionLog"]

FAILURE_LOG_INTERVAL = 60.0
"""Seconds between two WARNING lines while a listener keeps failing to connect."""


class ConnectionLog:
    """Logs a listener's failed attempts, rate-limited, and its reconnects."""

    def __init__(
        self,
        name: str,
        logger: logging.Logger,
        *,
        interval: float = FAILURE_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._failures = 0  # failed attempts since the last connection
        self._first_failure_at = 0.0
        self._logged_at: Optional[float] = None
        self._unlogged = 0

    def failed(self, error: Optional[BaseException], delay: float) -> None:
        """An attempt failed; the next one comes in ``delay`` seconds."""
        now = self._clock()
        self._failures += 1
        if self._failures == 1:
            self._first_failure_at = now
        if self._logged_at is not None and now - self._logged_at < self._interval:
            self._unlogged += 1
            return
        if self._failures == 1:
            self._logger.warning(
                "listener %r lost its connection: %s; retrying in %.1fs (forever, with backoff)",
                self._name,
                _describe(error),
                delay,
            )
        else:
            self._logger.warning(
                "listener %r still cannot connect: %d failed attempts over %.0fs; "
                "last error: %s; next attempt in %.1fs",
                self._name,
                self._failures,
                now - self._first_failure_at,
                _describe(error),
                delay,
            )
        self._logged_at = now
        self._unlogged = 0

    def connected(self, url: str, cursor: Optional[str]) -> None:
        """A connection is up, resuming after ``cursor``."""
        resume = f"resuming after {cursor}" if cursor else "with no cursor (from the live end)"
        if self._failures:
            self._logger.info(
                "listener %r connected again to %s after %d failed attempt(s) over %.0fs, %s",
                self._name,
                url,
                self._failures,
                self._clock() - self._first_failure_at,
                resume,
            )
        else:
            self._logger.info("listener %r connected to %s, %s", self._name, url, resume)
        self._failures = 0
        self._logged_at = None
        self._unlogged = 0


def _describe(error: Optional[BaseException]) -> str:
    if error is None:
        return "the server closed the stream"
    return f"{type(error).__name__}: {error}"
