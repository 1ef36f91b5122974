"""Every example in examples/ runs and does what it says."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from agentstream import Client, SQLiteCursorStore, StreamOptions

from .child_output import read_line
from .redis_server import free_port
from .server_fixtures import wait_until

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(
    name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@contextlib.contextmanager
def serve(tmp_path: Path, *options: str) -> Iterator[tuple[dict[str, str], list[str]]]:
    """`agentstream serve` as its own process; yields the environment it prints,
    and the lines it printed up to there (with ``--webhook``: up to the secret)."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentstream",
            "serve",
            "--port",
            "0",
            "--pace",
            "0.005",
            "--db",
            str(tmp_path / "events.sqlite3"),
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    try:
        printed: list[str] = []
        env: dict[str, str] = {}
        while not env or ("--webhook" in options and "secret (shown" not in printed[-1]):
            printed.append(read_line(server.stdout))
            found = re.search(r"AGENTSTREAM_BASE_URL=(\S+) AGENTSTREAM_API_KEY=(\S+)", printed[-1])
            if found:
                env = {"AGENTSTREAM_BASE_URL": found[1], "AGENTSTREAM_API_KEY": found[2]}
        yield env, printed
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(10)
        server.stdout.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`agentstream serve` as its own process; yields the environment it prints."""
    with serve(tmp_path) as (env, _):
        yield env


def test_wire_resume_loses_and_repeats_nothing() -> None:
    result = run("wire_resume.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "received 8 events over 2 connections: none lost, none repeated" in result.stdout
    assert "resuming from 3" in result.stdout


def test_task_chunks_prints_the_streamed_text(served: dict[str, str]) -> None:
    result = run("task_chunks.py", env=served)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "The simulated agent looked into your request, called two tools, and wrote this answer."
    )
    assert lines[1].endswith(": done")


def test_stream_shipped_follows_and_resumes_from_its_cursor(served: dict[str, str]) -> None:
    start = _a_cursor_before_what_follows(served)
    for _ in range(2):  # two runs that ship something
        assert run("task_chunks.py", env=served).returncode == 0
    result = run("stream_shipped.py", "--count=2", start, env=served)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all("shipped to staging: succeeded" in line for line in lines)
    cursor = lines[0].rsplit("cursor ", 1)[1].rstrip(")")
    resumed = run("stream_shipped.py", "--count=1", cursor, env=served)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines() == lines[1:]


def _a_cursor_before_what_follows(env: dict[str, str]) -> str:
    client = Client(env["AGENTSTREAM_BASE_URL"], env["AGENTSTREAM_API_KEY"])
    task_id = client.create_task("probe", events_streaming=True).id
    with client.stream_events(StreamOptions(task_id=task_id)) as stream:
        return next(stream).id


def test_handlers_example_fires_decorated_handlers_and_stops_on_sigterm(
    served: dict[str, str],
) -> None:
    child = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "handlers.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **served},
    )
    assert child.stdout is not None
    try:
        assert read_line(child.stdout) == "listening"
        client = Client(served["AGENTSTREAM_BASE_URL"], served["AGENTSTREAM_API_KEY"])
        # The listener starts at the live end once connected; a task created
        # before that is missed, so create them until the handlers report one.
        seen: list[str] = []
        reader = threading.Thread(target=lambda: seen.extend(child.stdout), daemon=True)
        reader.start()
        for _ in range(40):
            client.create_task("something to ship")
            reader.join(0.25)
            if any(line.startswith("shipped:") for line in seen):
                break
    finally:
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=10)
    assert child.returncode == 0, err
    assert any(line.startswith("needs login: github at https://") for line in seen)
    assert any(line.startswith("shipped: AS-") for line in seen)


def test_the_testing_example_passes_under_pytest() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "test_my_handlers.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def _run_listener_until_finished(
    args: list[str], env: dict[str, str], served: dict[str, str], count_finished: Any
) -> tuple[str, str]:
    """Start a framework's listen command, create a task once it is connected,
    wait until ``count_finished()`` sees it, stop it with SIGTERM (exit 0).
    Returns the task id and the id of its last event."""
    child = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    try:
        assert "listening as" in read_line(child.stdout)
        assert "connected" in read_line(child.stdout)
        client = Client(served["AGENTSTREAM_BASE_URL"], served["AGENTSTREAM_API_KEY"])
        task = client.create_task("Record me when finished", events_streaming=True)
        events = list(task.events())  # until its task.finished has been sent
        assert wait_until(lambda: count_finished(task.id) == 1, timeout=20)
        child.send_signal(signal.SIGTERM)
        assert child.wait(20) == 0, child.stderr.read() if child.stderr else ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
    return task.id, events[-1].id


def _count(db: Path, table: str, task_id: str) -> int:
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            found = conn.execute(
                f"SELECT count(*) FROM {table} WHERE task_id = ? AND status = 'done'", (task_id,)
            ).fetchone()
        except sqlite3.OperationalError:  # not created yet
            return 0
    return int(found[0])


def test_flask_app_example_records_finished_tasks(served: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    env = {
        **os.environ,
        **served,
        "FLASK_DATABASE": str(db),
        "FLASK_AGENTSTREAM_CURSOR_STORE": f"sqlite:///{tmp_path}/cursors.sqlite3",
    }
    flask = [
        str(Path(sys.executable).parent / "flask"),
        "--app",
        str(EXAMPLES / "flask_app" / "app.py"),
    ]
    assert subprocess.run([*flask, "init-db"], env=env, timeout=60, check=False).returncode == 0
    task_id, last_event_id = _run_listener_until_finished(
        [*flask, "agentstream", "listen"],
        env,
        served,
        lambda task: _count(db, "finished_task", task),
    )
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT task_id, status, prompt FROM finished_task").fetchall()
    assert rows == [(task_id, "done", "Record me when finished")]
    # The handler used the app context (its config and a g connection torn down
    # after each event); the cursor was saved at SIGTERM.
    store = SQLiteCursorStore(tmp_path / "cursors.sqlite3")
    assert store.load("finished-tasks") == last_event_id
    store.close()


def test_django_project_example_records_finished_tasks(
    served: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite3"
    env = {**os.environ, **served, "EXAMPLE_DB": str(db)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage = [sys.executable, str(EXAMPLES / "django_project" / "manage.py")]
    migrate = subprocess.run(
        [*manage, "migrate", "--no-input"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    _run_listener_until_finished(
        [*manage, "agentstream_listen"],
        env,
        served,
        lambda task: _count(db, "tracker_finishedtask", task),
    )
    with contextlib.closing(sqlite3.connect(db)) as conn:
        saved = conn.execute(
            "SELECT cursor FROM agentstream_listener_cursor WHERE name = 'tracker'"
        ).fetchone()
    assert saved is not None
    assert saved[0].startswith("evt_")


# -- the examples receiving webhooks ----------------------------------------------------


@contextlib.contextmanager
def serve_with_webhook(tmp_path: Path, url: str) -> Iterator[tuple[dict[str, str], str]]:
    """`agentstream serve --webhook URL`; yields its environment and the secret it prints."""
    with serve(tmp_path, "--webhook", url, "--webhook-retry-scale", "0.1") as (env, printed):
        secret = re.search(r"secret \(shown only this once\): (whsec_\S+)", printed[-1])
        assert secret is not None
        yield env, secret[1]


@contextlib.contextmanager
def web_process(args: list[str], env: dict[str, str], ready_url: str) -> Iterator[None]:
    """A web server as its own process, up once ``ready_url`` answers 200."""
    child = subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )

    def up() -> bool:
        try:
            return requests.get(ready_url, timeout=1).status_code == 200
        except requests.ConnectionError:
            return child.poll() is not None  # it died: stop waiting

    try:
        assert wait_until(up, timeout=30)
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        yield
    finally:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
        if child.stderr is not None:
            child.stderr.close()


def _finish_a_task(env: dict[str, str]) -> tuple[str, set[str]]:
    """A task run to its end; its id and the ids of all its events."""
    client = Client(env["AGENTSTREAM_BASE_URL"], env["AGENTSTREAM_API_KEY"])
    task = client.create_task("Record me when finished", events_streaming=True)
    events = {event.id for event in task.events()}  # until its task.finished has been sent
    client.close()
    return task.id, events


def _claims(db: Path, table: str) -> dict[str, str]:
    """Event id -> state of every webhook claim in ``db``."""
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            return dict(conn.execute(f"SELECT event_id, state FROM {table}").fetchall())
        except sqlite3.OperationalError:  # not created yet
            return {}


def _all_handled(db: Path, table: str, events: set[str]) -> bool:
    """Every event delivered and handled: the last deliveries may still be on
    their way when the finished task is recorded, so wait for them before the
    receiver stops (a receiver stopped mid-handler leaves its claim
    ``in_progress`` until it expires, as documented)."""
    claims = _claims(db, table)
    return events <= claims.keys() and set(claims.values()) == {"handled"}


def test_flask_app_example_records_finished_tasks_by_webhook(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "tasks.sqlite3"
    url = f"http://127.0.0.1:{port}/agentstream/webhooks"
    with serve_with_webhook(tmp_path, url) as (served, secret):
        env = {
            **os.environ,
            **served,
            "FLASK_DATABASE": str(db),
            "FLASK_AGENTSTREAM_CURSOR_STORE": f"sqlite:///{tmp_path}/cursors.sqlite3",
            "FLASK_AGENTSTREAM_WEBHOOK_SECRETS": secret,
        }
        flask = [
            str(Path(sys.executable).parent / "flask"),
            "--app",
            str(EXAMPLES / "flask_app" / "app.py"),
        ]
        assert subprocess.run([*flask, "init-db"], env=env, timeout=60, check=False).returncode == 0
        with web_process(
            [*flask, "run", "--port", str(port)], env, f"http://127.0.0.1:{port}/tasks"
        ):
            task_id, events = _finish_a_task(served)
            assert wait_until(lambda: _count(db, "finished_task", task_id) == 1, timeout=30)
            # Every delivery claimed in the cursor store's file, and handled.
            claims = tmp_path / "cursors.sqlite3"
            assert wait_until(lambda: _all_handled(claims, "webhook_dedup", events), timeout=30)
    assert len(events) >= 2
    assert _count(db, "finished_task", task_id) == 1


def test_django_project_example_records_finished_tasks_by_webhook(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "db.sqlite3"
    url = f"http://127.0.0.1:{port}/agentstream/webhooks/"
    manage = [sys.executable, str(EXAMPLES / "django_project" / "manage.py")]
    with serve_with_webhook(tmp_path, url) as (served, secret):
        env = {**os.environ, **served, "EXAMPLE_DB": str(db), "AGENTSTREAM_WEBHOOK_SECRETS": secret}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        migrate = subprocess.run(
            [*manage, "migrate", "--no-input"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr
        with web_process(
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            env,
            f"http://127.0.0.1:{port}/tasks/",
        ):
            task_id, events = _finish_a_task(served)
            assert wait_until(lambda: _count(db, "tracker_finishedtask", task_id) == 1, timeout=30)
            table = "agentstream_webhook_dedup"
            assert wait_until(lambda: _all_handled(db, table, events), timeout=30)
    assert _count(db, "tracker_finishedtask", task_id) == 1


def test_live_page_example_serves_a_task_live_and_keeps_the_key_on_the_server(
    tmp_path: Path,
) -> None:
    """What the browser test drives, without a browser: the pages, the stream, the
    headers (tests/test_live_page_browser.py checks what a person sees)."""
    from agentstream.server import ReferenceServer
    from agentstream.server._agent import script_event_types

    from .live_page_example import example

    with ReferenceServer(tmp_path / "events.sqlite3", agent_pace=0.0) as server:
        app = example.create_app(
            {"AGENTSTREAM_BASE_URL": server.url, "AGENTSTREAM_API_KEY": server.api_key}
        )
        browser = app.test_client()
        # buffered: each body is read now, while the server runs (not when first looked at)
        index = browser.get("/", buffered=True)
        created = browser.post("/tasks", data={"prompt": "<b>Haiku</b> please"}, buffered=True)
        assert created.status_code == 303
        page = browser.get(created.headers["Location"], buffered=True)
        events_url = re.search(r'data-events-url="([^"]+)"', page.text)
        assert events_url is not None
        stream = browser.get(events_url[1], buffered=True)  # ends after task.finished
        with browser.get("/static/live.js", buffered=True) as script:
            script_text = script.text
        unknown = browser.get("/tasks/task_unknown", buffered=True)
        with app.app_context():
            example.agentstream.client.close()
    assert index.status_code == page.status_code == stream.status_code == 200
    assert "&lt;b&gt;Haiku&lt;/b&gt; please" in page.text  # the prompt, escaped
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'self'" in policy
    assert stream.mimetype == "text/event-stream"
    assert stream.text.count("\nevent: ") == len(script_event_types())
    assert "textContent" in script_text
    assert ".innerHTML" not in script_text
    assert unknown.status_code == 404
    assert server.api_key not in script_text
    for answer in (index, created, page, stream):
        assert server.api_key not in answer.get_data(as_text=True) + str(answer.headers)
