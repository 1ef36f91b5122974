"""A Listener started at import by a WSGI app (tests/gunicorn_app.py) under
``gunicorn -w 3``, with and without ``--preload``: real gunicorn processes, real
signals, one SQLiteCursorStore shared by every worker.

Each handled event is appended by the process that handled it to a records
file (``<event id> <pid> <fencing token>``); the checks read that file after
gunicorn has exited, so that nothing can still be on its way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest
import requests

from agentstream import SQLiteCursorStore
from agentstream.server import ReferenceServer

from .redis_server import free_port
from .server_fixtures import wait_until

pytest.importorskip("gunicorn")

ROOT = Path(__file__).resolve().parent.parent
NAME = "gunicorn-app"  # the listener's name in tests/gunicorn_app.py
TTL = 1.5
WAIT = 30.0
BOOTING = re.compile(r"Booting worker with pid: (\d+)")


class Gunicorn:
    """``gunicorn -w 3 tests.gunicorn_app:app`` on a free port of 127.0.0.1."""

    def __init__(self, tmp: Path, server: ReferenceServer, start: str, *, preload: bool) -> None:
        self.db = tmp / "cursors.sqlite3"
        self.records = tmp / "records"
        self.port = free_port()
        env = {
            **os.environ,
            "AGENTSTREAM_BASE_URL": server.url,
            "AGENTSTREAM_API_KEY": server.api_key,
            "LEASE_DB": str(self.db),
            "LEASE_RECORDS": str(self.records),
            "LEASE_START": start,
            "LEASE_TTL": str(TTL),
            "LEASE_RESTART_AFTER_FORK": "1" if preload else "0",
        }
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "3",
            "-b",
            f"127.0.0.1:{self.port}",
            "--graceful-timeout",
            "5",
            *(["--preload"] if preload else []),
            "tests.gunicorn_app:app",
        ]
        self.log: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.log.append(line.rstrip())
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def workers_booted(self) -> list[int]:
        with self._changed:
            return [int(m.group(1)) for line in self.log for m in [BOOTING.search(line)] if m]

    def wait_for_workers(self, count: int) -> list[int]:
        with self._changed:
            ok = self._changed.wait_for(lambda: len(self.workers_booted()) >= count, WAIT)
        assert ok, f"gunicorn did not boot {count} workers:\n" + "\n".join(self.log[-30:])
        return self.workers_booted()

    def wait_ready(self) -> None:
        """Three workers booted and the app answering."""
        self.wait_for_workers(3)

        def answers() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{self.port}/", timeout=2).ok
            except requests.RequestException:
                return False

        assert wait_until(answers, timeout=WAIT), "\n".join(self.log[-30:])

    def holder_pid(self) -> Optional[int]:
        """The pid of the process whose listener holds the lease, from the store."""
        store = SQLiteCursorStore(self.db)
        try:
            held = store.lease_holder(NAME)
        finally:
            store.close()
        return None if held is None else int(held[0].split(":")[1])

    def saved_cursor(self) -> Optional[str]:
        store = SQLiteCursorStore(self.db)
        try:
            return store.load(NAME)
        finally:
            store.close()

    def handled(self) -> list[tuple[str, int, str]]:
        if not self.records.exists():
            return []
        lines = self.records.read_text().splitlines()
        return [(parts[0], int(parts[1]), parts[2]) for parts in map(str.split, lines)]

    def wait_handled(self, event_ids: list[str]) -> None:
        wanted = set(event_ids)
        assert wait_until(lambda: wanted <= {e for e, _, _ in self.handled()}, timeout=WAIT), (
            f"{len(wanted - {e for e, _, _ in self.handled()})} events not handled\n"
            + "\n".join(self.log[-30:])
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(WAIT)
        self._reader.join(5)
        if self.process.stderr is not None and not self._reader.is_alive():
            self.process.stderr.close()
        return code


@pytest.fixture
def gunicorn(
    tmp_path: Path, agentstream_server: ReferenceServer
) -> Iterator[Callable[[str, bool], Gunicorn]]:
    started: list[Gunicorn] = []

    def start(cursor: str, preload: bool) -> Gunicorn:
        run = Gunicorn(tmp_path, agentstream_server, cursor, preload=preload)
        started.append(run)
        run.wait_ready()
        return run

    try:
        yield start
    finally:
        for run in started:
            run.stop()


def publish(server: ReferenceServer, task_id: str, count: int, first: int = 0) -> list[str]:
    return [
        str(server.store.publish("message.chunk", f"part {first + n}", task_id)["id"])
        for n in range(count)
    ]


@pytest.mark.parametrize("preload", [False, True], ids=["workers", "preload"])
def test_under_gunicorn_each_event_is_handled_once_and_none_lost_when_the_worker_dies(
    agentstream_server: ReferenceServer,
    gunicorn: Callable[[str, bool], Gunicorn],
    preload: bool,
) -> None:
    task_id = str(agentstream_server.store.create_task("t", events_streaming=True)["id"])
    start = str(agentstream_server.store.publish("message.chunk", "start", task_id)["id"])
    run = gunicorn(start, preload)
    master = run.process.pid
    workers = run.workers_booted()

    # Every worker's listener runs (holding the lease or standing by): none
    # is a copy that says it runs with threads that did not survive the fork.
    for _ in range(6):
        pid, state, _token = requests.get(f"http://127.0.0.1:{run.port}/", timeout=5).text.split()
        assert int(pid) in workers
        assert state in ("connecting", "connected", "standby"), state

    # A quiet run: every event handled once, by one worker (not the master).
    quiet = publish(agentstream_server, task_id, 30)
    run.wait_handled(quiet)
    holder = run.holder_pid()
    assert holder in workers, (holder, master, workers)
    assert sorted(e for e, _, _ in run.handled()) == sorted(quiet)  # each once
    assert {pid for _, pid, _ in run.handled()} == {holder}
    assert wait_until(lambda: run.saved_cursor() == quiet[-1], timeout=WAIT)

    # SIGKILL of the worker holding the lease: gunicorn boots another, another
    # worker takes over, nothing is lost.
    os.kill(holder, signal.SIGKILL)
    assert len(run.wait_for_workers(4)) == 4  # the replacement
    after = publish(agentstream_server, task_id, 30, first=30)
    run.wait_handled(after)
    assert wait_until(lambda: run.holder_pid() not in (None, holder), timeout=WAIT)
    assert run.stop() == 0

    handled = run.handled()
    counts = Counter(event_id for event_id, _, _ in handled)
    assert set(quiet) | set(after) <= set(counts), "events lost"
    assert all(counts[e] == 1 for e in quiet), "a saved event was handled again"
    # Redelivered only what the killed worker handled after its last save.
    repeated = {e for e, n in counts.items() if n > 1}
    assert repeated <= {e for e, pid, _ in handled if pid == holder}
    assert all(pid != master for _, pid, _ in handled)
