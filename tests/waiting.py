"""A bounded wait on a condition that offers no event to wait on."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Check ``condition`` every 5 ms until it holds (True) or ``timeout`` passes
    (False). For states read through a public snapshot (``listener.health()``),
    which has nothing to wait on; everything else waits on its own event."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
