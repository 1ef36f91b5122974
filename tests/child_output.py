"""Reading a child process's output in tests, with a bound on the wait."""

from __future__ import annotations

import threading
from typing import IO


def read_line(stream: IO[str], timeout: float = 20) -> str:
    """The next line of ``stream``, stripped; fails the test if none comes within
    ``timeout`` seconds (a bare ``readline()`` would hang the suite instead), or
    if the process ended first."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines, f"no line within {timeout}s"
    assert lines[0], "the process ended"
    return lines[0].strip()
