"""Reading a child process's output in tests, with a bound on the wait."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

STORE_CHILD = Path(__file__).with_name("store_child.py")
"""The child that serves one store's operations over stdin and stdout (JSON lines)."""


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


def start_children(spec: dict[str, Any], count: int) -> list[subprocess.Popen[str]]:
    """``count`` :data:`STORE_CHILD` processes on the store ``spec`` names, each ready."""
    children = [
        subprocess.Popen(
            [sys.executable, str(STORE_CHILD), json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for child in children:
        assert child.stdout is not None
        assert read_line(child.stdout) == "ready"
    return children


def ask(child: subprocess.Popen[str], *command: Any) -> Any:
    """Send one command to a store child; its answer."""
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.write(json.dumps(command) + "\n")
    child.stdin.flush()
    return json.loads(read_line(child.stdout))


def stop_children(children: list[subprocess.Popen[str]], timeout: float = 20) -> None:
    """Close every child's stdin (its end of work); each must exit 0."""
    for child in children:
        assert child.stdin is not None
        child.stdin.close()
    for child in children:
        assert child.wait(timeout) == 0
        assert child.stdout is not None
        child.stdout.close()
