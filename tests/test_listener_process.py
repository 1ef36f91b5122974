"""A listener as its own process: killed and restarted, and stopped by signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agentstream.server import ReferenceServer

from .child_output import read_line

CHILD = Path(__file__).with_name("listener_child.py")


def start_child(server: ReferenceServer, tmp: Path, *extra: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [
            sys.executable,
            str(CHILD),
            server.url,
            server.api_key,
            str(tmp / "c.db"),
            str(tmp / "out"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert read_line(child.stdout, timeout=20) == "ready"
    return child


def wait_handled(child: subprocess.Popen[str], count: int, timeout: float = 20) -> None:
    """Read the child's "handled ..." lines until ``count`` have come."""
    assert child.stdout is not None
    for _ in range(count):
        assert read_line(child.stdout, timeout).startswith("handled "), "unexpected output"


def publish(server: ReferenceServer, task_id: str, numbers: range) -> None:
    for n in numbers:
        server.store.publish("message.chunk", f"part {n}", task_id)


def test_killed_mid_stream_then_restarted_handles_every_event_exactly_once(
    tmp_path: Path, agentstream_server: ReferenceServer
) -> None:
    task_id = str(agentstream_server.store.create_task("t", events_streaming=True)["id"])
    first = start_child(agentstream_server, tmp_path, "20")
    publish(agentstream_server, task_id, range(30))
    wait_handled(first, 20)  # parts 0-19
    # Stuck in the handler of part 20, so part 19's cursor is saved: kill it now.
    assert read_line(first.stdout, timeout=20) == "blocked in part 20"  # type: ignore[arg-type]
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    first.stdout.close()  # type: ignore[union-attr]
    first.stderr.close()  # type: ignore[union-attr]
    publish(agentstream_server, task_id, range(30, 40))  # while no process listens
    second = start_child(agentstream_server, tmp_path)
    try:
        wait_handled(second, 20)  # parts 20-39, resumed from the stored cursor
    finally:
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=10)
    assert (tmp_path / "out").read_text().splitlines() == [f"part {n}" for n in range(40)]
    assert second.returncode == 0, err
    assert "stopped cleanly" in out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_forever_exits_zero_on_ctrl_c_and_sigterm(
    tmp_path: Path, agentstream_server: ReferenceServer, signum: int
) -> None:
    child = start_child(agentstream_server, tmp_path)
    os.kill(child.pid, signum)
    out, err = child.communicate(timeout=10)
    assert child.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped cleanly" in out
