"""The Flask integration's in-process start in real processes: the debug
reloader, and gunicorn's gthread and gevent workers. (``flask agentstream
listen`` as a process is exercised by the Flask example's test in
test_examples.py.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Optional

import requests

from agentstream import SQLiteCursorStore

from .child_output import read_line
from .server_fixtures import ServerFactory, wait_until

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
APP = "tests.flask_app:create_app"


def environment(**flask_config: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENTSTREAM_", "FLASK_", "WERKZEUG_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update({f"FLASK_{k}": v for k, v in flask_config.items()})
    return env


@contextmanager
def process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A child in its own process group (a reloader's or gunicorn's children
    included), killed with its group if the test ends first."""
    child = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def handled_ids(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [
        json.loads(line)["handled"] for line in log.read_text().splitlines() if "handled" in line
    ]


def served_pid(url: str) -> Optional[int]:
    """The pid of the process that answered, or None (not serving yet, or too slow)."""
    try:
        response = requests.get(url, timeout=10)
    except requests.RequestException:
        return None
    return int(response.json()["pid"]) if response.status_code == 200 else None


# What the app logs (with its pid) when it decides about the in-process start.
START_LINE = re.compile(
    r"^(\d+) \w+ agentstream\.contrib\.flask: "
    r".*(no listener was started|listener started) in process (\d+)"
)


def test_the_debug_reloaders_parent_never_starts_a_listener(tmp_path: Path) -> None:
    env = environment(
        AGENTSTREAM_API_KEY="k",
        AGENTSTREAM_START_LISTENER="true",
        AGENTSTREAM_CURSOR_STORE=f"sqlite:///{tmp_path}/cursors.sqlite3",
        APP_LOG_TO_STDERR="1",
    )
    args = [str(BIN / "flask"), "--app", APP, "run", "--debug", "--port", "0"]
    with process(args, env) as child:
        assert child.stderr is not None
        while True:
            line = read_line(child.stderr)
            found = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                break
        url = found[1] + "/"
        assert wait_until(lambda: served_pid(url) is not None, timeout=20)
        worker = served_pid(url)
        assert worker is not None
        assert worker != child.pid  # the reloader's child serves
        start_lines: list[re.Match[str]] = []
        while not start_lines:
            matched = START_LINE.search(read_line(child.stderr))
            if matched:
                start_lines.append(matched)
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(20)
        rest = child.stderr.read().splitlines()
    start_lines += [m for m in map(START_LINE.search, rest) if m]
    assert [int(m[3]) for m in start_lines] == [worker]  # once, in the child only


def _has_control_socket() -> bool:
    """gunicorn 25.1 opens a control socket by default (one path for every run);
    `make test-compat`'s gunicorn 23 has none, nor the flag that turns it off."""
    version = tuple(int(part) for part in metadata.version("gunicorn").split(".")[:2])
    return version >= (25, 1)


def gunicorn(worker_class: str, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    args = [str(BIN / "gunicorn"), "-k", worker_class, "-w", "2", "--threads", "2"]
    if _has_control_socket():
        args.append("--no-control-socket")
    args += ["-b", "127.0.0.1:0", f"{APP}()"]
    return args, env


def listening_url(child: subprocess.Popen[str]) -> str:
    assert child.stderr is not None
    while True:
        found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", read_line(child.stderr))
        if found:
            return found[1] + "/"


def handled_by(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [(line["handled"], line["pid"]) for line in lines if "handled" in line]


def test_under_gunicorn_gthread_one_workers_listener_handles_each_event_and_another_takes_over(
    tmp_path: Path, servers: ServerFactory
) -> None:
    server = servers.start()
    log = tmp_path / "events.jsonl"
    store_path = tmp_path / "cursors.sqlite3"
    env = environment(
        AGENTSTREAM_BASE_URL=server.url,
        AGENTSTREAM_API_KEY=server.api_key,
        AGENTSTREAM_START_LISTENER="true",
        AGENTSTREAM_CURSOR_STORE=f"sqlite:///{store_path}",
        AGENTSTREAM_HEARTBEAT_SECONDS="1",
        AGENTSTREAM_LEASE_TTL="2",
        EVENTS_LOG=str(log),
    )
    store = SQLiteCursorStore(store_path)
    api = servers.api(server)
    with process(*gunicorn("gthread", env)) as child:
        url = listening_url(child)
        # Each worker decides about the in-process start at its first request:
        # make both serve one, so that both start a listener.
        workers: set[int] = set()

        def both_served() -> bool:
            pid = served_pid(url)
            if pid is not None:
                workers.add(pid)
            return len(workers) == 2

        assert wait_until(both_served, timeout=30)
        assert server.app.wait_open_streams(1, timeout=20)  # the lease holder connected
        first = api.create_task("first", eventsStreaming=True)
        with api.stream(taskId=first["id"]) as reader:
            first_frames = reader.rest()
        assert wait_until(lambda: len(handled_by(log)) >= len(first_frames), timeout=20)
        assert wait_until(lambda: store.load("default") == first_frames[-1].id, timeout=10)
        handled = handled_by(log)
        assert [event for event, _ in handled] == [f.id for f in first_frames]  # each once
        holders = {pid for _, pid in handled}
        assert len(holders) == 1
        assert holders <= workers
        assert server.app.open_streams == 1  # the other worker stands by, unconnected
        (holder,) = holders
        os.kill(holder, signal.SIGKILL)  # the consuming worker dies
        assert server.app.wait_open_streams(0, timeout=20)
        # The other worker's listener takes the lease over once it expires.
        assert server.app.wait_open_streams(1, timeout=20)
        second = api.create_task("second", eventsStreaming=True)
        with api.stream(taskId=second["id"]) as reader:
            second_frames = reader.rest()
        expected = len(first_frames) + len(second_frames)
        assert wait_until(lambda: len(handled_by(log)) >= expected, timeout=20)
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 0
    handled = handled_by(log)
    assert [event for event, _ in handled] == [f.id for f in first_frames + second_frames]
    assert {pid for _, pid in handled[len(first_frames) :]} == workers - {holder}
    assert store.load("default") == second_frames[-1].id  # saved on the clean stop
    store.close()


def test_under_gunicorn_gevent_the_in_process_start_says_what_to_run_instead(
    tmp_path: Path,
) -> None:
    env = environment(
        AGENTSTREAM_API_KEY="k",
        AGENTSTREAM_START_LISTENER="true",
        AGENTSTREAM_CURSOR_STORE=f"sqlite:///{tmp_path}/cursors.sqlite3",
        APP_LOG_TO_STDERR="1",
    )
    with process(*gunicorn("gevent", env)) as child:
        assert child.stderr is not None
        url = listening_url(child)
        assert wait_until(lambda: served_pid(url) is not None, timeout=20)
        refusals: list[str] = []
        while not refusals:
            line = read_line(child.stderr)
            if "no listener was started" in line:
                refusals.append(line)
        assert wait_until(lambda: served_pid(url) is not None, timeout=20)  # still serving
        child.send_signal(signal.SIGTERM)
        assert child.wait(20) == 0
    assert "monkey-patched by gevent" in refusals[0]
    assert "flask agentstream listen" in refusals[0]
