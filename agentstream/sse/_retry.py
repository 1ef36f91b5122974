"""When to reconnect, and when to give up: :class:`RetryPolicy`."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Callable, Optional

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, and a retry budget.

    The *n*-th consecutive failed attempt (counting from 1) waits a random
    time between 0 and ``min(max_delay, base * multiplier ** (n - 1))``
    ("full jitter"), where ``base`` is the server's ``retry:`` value when it
    sent one, else ``initial_delay``. A ``Retry-After`` from a 429 or 503 is
    a floor on that wait.

    The budget is spent when ``max_attempts`` consecutive attempts have failed
    or ``max_elapsed`` seconds have passed since the first of them (``None``
    means no limit), or would have passed by the next attempt. It resets after
    a healthy connection: one that delivered an event, or stayed open for
    ``healthy_after`` seconds.

    Immutable: derive variants with :meth:`with_` or the named factories.
    """

    initial_delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    max_attempts: Optional[int] = None
    max_elapsed: Optional[float] = 300.0
    healthy_after: float = 30.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0 seconds")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ValueError("max_attempts must be >= 0 or None")
        if self.max_elapsed is not None and self.max_elapsed < 0:
            raise ValueError("max_elapsed must be >= 0 or None")

    @classmethod
    def default(cls) -> RetryPolicy:
        """1 s initial delay, 30 s cap, doubling; give up after 5 minutes of failures."""
        return cls()

    @classmethod
    def forever(cls, *, initial_delay: float = 1.0, max_delay: float = 30.0) -> RetryPolicy:
        """Never give up (for long-running listeners)."""
        return cls(initial_delay=initial_delay, max_delay=max_delay, max_elapsed=None)

    @classmethod
    def never(cls) -> RetryPolicy:
        """Do not reconnect: the first failure ends the stream."""
        return cls(max_attempts=0, max_elapsed=None)

    def with_(self, **changes: object) -> RetryPolicy:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def delay(
        self,
        attempt: int,
        *,
        server_retry: Optional[float] = None,
        retry_after: Optional[float] = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before attempt number ``attempt`` (1 = first retry)."""
        base = self.initial_delay if server_retry is None else server_retry
        base = max(base, 0.001)  # a server's "retry: 0" still backs off, from 1 ms
        ceiling = min(self.max_delay, base * self.multiplier ** max(0, attempt - 1))
        wait = ceiling * rand() if self.jitter else ceiling
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    def exhausted(self, attempts: int, elapsed: float) -> bool:
        """True when ``attempts`` failures over ``elapsed`` seconds spend the budget."""
        if self.max_attempts is not None and attempts > self.max_attempts:
            return True
        return self.max_elapsed is not None and elapsed >= self.max_elapsed

    def waits_past_budget(self, elapsed: float, delay: float) -> bool:
        """True when waiting ``delay`` more seconds, ``elapsed`` seconds after the
        first failure, would pass ``max_elapsed``: give up now instead."""
        return self.max_elapsed is not None and elapsed + delay > self.max_elapsed
