"""FileCursorStore: crash safety and the one-process lock, with real processes.

The behaviours every store shares are in tests/test_cursor_stores.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from agentstream.cursors import FileCursorStore
from agentstream.errors import ConfigurationError

from .child_output import read_line

CHILD = Path(__file__).with_name("file_store_child.py")


def test_saves_survive_a_new_store_object(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    store = FileCursorStore(path)
    store.save("orders", "evt_1")
    store.close()
    assert FileCursorStore(path).load("orders") == "evt_1"
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    "content",
    [b"", b'{"format": 2, "cursors": {"orders": "ev', b"\x00\x00\x00\x00", b"[1, 2]", b"\xff{"],
    ids=["zero-length", "truncated", "zeros", "not-an-object", "not-utf8"],
)
def test_a_corrupt_file_is_set_aside_and_read_as_empty(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cursors.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="agentstream.cursors"):
        store = FileCursorStore(path)
    assert store.load("orders") is None
    corrupt = tmp_path / "cursors.json.corrupt"
    assert corrupt.read_bytes() == content  # kept for a human to look at
    assert any(
        record.levelno == logging.WARNING and "cursors.json.corrupt" in record.getMessage()
        for record in caplog.records
    )
    store.save("orders", "evt_2")
    assert store.load("orders") == "evt_2"
    store.close()
    assert FileCursorStore(path).load("orders") == "evt_2"


def test_reads_the_format_before_leases(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    path.write_text(json.dumps({"orders": "evt_5", "billing": "evt_6"}))
    store = FileCursorStore(path)
    assert store.load("orders") == "evt_5"
    token = store.acquire("orders", "a", 30)
    assert token == 1
    store.save_fenced("orders", "evt_7", token)
    assert store.load("billing") == "evt_6"


def test_a_crash_mid_save_keeps_the_old_cursors_and_the_stray_tmp_is_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cursors.json"
    store = FileCursorStore(path)
    store.save("orders", "evt_1")
    store.close()
    crashed = subprocess.run(
        [sys.executable, str(CHILD), str(path), "crash-mid-save", "evt_2"], timeout=30
    )
    assert crashed.returncode == 9
    strays = list(tmp_path.glob("cursors.json*.tmp"))
    assert len(strays) == 1
    assert json.loads(strays[0].read_text())["cursors"] == {"orders": "evt_2"}
    with caplog.at_level(logging.WARNING, logger="agentstream.cursors"):
        reopened = FileCursorStore(path)
    assert reopened.load("orders") == "evt_1"
    assert not list(tmp_path.glob("*.tmp"))
    assert "did not finish" in caplog.text


def test_tokens_are_durable_before_acquire_returns(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    store = FileCursorStore(path)
    token = store.acquire("orders", "a", 30)
    assert json.loads(path.read_text())["tokens"] == {"orders": token}


def test_a_second_process_is_refused_while_the_first_holds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    holder = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), "hold"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert read_line(holder.stdout) == "ready"
        with pytest.raises(ConfigurationError) as caught:
            FileCursorStore(path)
        message = str(caught.value)
        assert f"another process holds {path}" in message
        assert "SQLiteCursorStore or RedisCursorStore" in message
        # A third process is refused the same way.
        third = subprocess.run(
            [sys.executable, str(CHILD), str(path), "hold"],
            input="",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert third.returncode == 3
        assert "another process holds" in third.stdout
        # The OS drops the lock when its holder dies, even by SIGKILL.
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        store = FileCursorStore(path)
        store.save("orders", "evt_1")
        store.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        assert holder.stdin is not None
        holder.stdin.close()
        holder.stdout.close()


def test_close_lets_another_store_open_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    first = FileCursorStore(path)
    with pytest.raises(ConfigurationError):
        FileCursorStore(path)  # the lock is per open file, also in one process
    first.close()
    FileCursorStore(path).close()


def run_in_fork(body: Callable[[], int]) -> int:
    """Run ``body`` in a forked child; its return value is the child's exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            code = body()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_cannot_use_the_parents_store(tmp_path: Path) -> None:
    store = FileCursorStore(tmp_path / "cursors.json")
    store.save("orders", "evt_1")

    def child() -> int:
        try:
            store.save("orders", "evt_child")
        except ConfigurationError:
            return 3
        return 0

    assert run_in_fork(child) == 3
    assert store.load("orders") == "evt_1"
    store.save("orders", "evt_2")  # the parent keeps its lock
    store.close()
    assert FileCursorStore(tmp_path / "cursors.json").load("orders") == "evt_2"
