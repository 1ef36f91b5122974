"""Reading a child process's output in tests, with a bound on the wait."""

from __future__ import annotations

import threading
from typing import IO


def read_line(stream: IO[str], timeout: float) -> str:
    """The next line of ``stream``, stripped; fails the test if none comes within
    ``timeout`` seconds (a bare ``readline()`` would hang the suite instead)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline().strip()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines, f"no line within {timeout}s"
    return lines[0]
