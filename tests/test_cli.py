"""The agentstream command: demo, tail, serve."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import agentstream
from agentstream.server import ReferenceServer

from .child_output import read_line


def run(*args: str, env: Any = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentstream", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_demo_streams_a_whole_run_resumes_and_exits_zero_quickly() -> None:
    started = time.monotonic()
    result = run("demo", "--pace", "0.02")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for expected in [
        "created:",
        "status in_progress",
        "plan: Search for sources",
        "→ web_search(",
        "✓ web_search",
        "✗ fetch_url",
        "The simulated agent looked into your request,",
        "auth required:",
        "sub-agent",
        "review: approved",
        "shipped to staging: succeeded",
        "finished: done",
        "[connection lost: the server closed the connection mid-stream; reconnecting]",
        "[reconnected, resuming after evt_",
        "none missed, none twice; 1 reconnect(s)",
    ]:
        assert expected in out, expected
    assert "\033[" not in out  # no colour when stdout is not a terminal
    assert elapsed < 30


def test_tail_prints_json_lines_and_ends_with_a_task() -> None:
    with ReferenceServer(agent_pace=0.0) as server:
        task = server.store.create_task("tail me", events_streaming=True)
        server.store.publish("message.chunk", "hello", task["id"])
        server.store.transition_task(
            task["id"], "done", summary="done", actor={"id": "t", "role": "agent"}
        )
        env = {"AGENTSTREAM_BASE_URL": server.url, "AGENTSTREAM_API_KEY": server.api_key}
        result = run("tail", "--task", task["id"], "--json", env=env)
        text = run("tail", "--task", task["id"], "--type", "message.chunk", env=env)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["type"] == "task.created"
    assert events[-1]["type"] == "task.finished"
    assert {"id", "sequence", "occurredAt", "taskId", "data"} <= set(events[0])
    assert text.returncode == 0, text.stderr
    assert "message.chunk" in text.stdout
    assert "'hello'" in text.stdout


def test_tail_with_a_bad_key_fails_clearly() -> None:
    with ReferenceServer() as server:
        result = run("tail", "--base-url", server.url, "--api-key", "wrong-key")
    assert result.returncode == 1
    assert "401" in result.stderr
    assert "wrong-key" not in result.stderr
    assert "Traceback" not in result.stderr


def test_tail_rejects_bad_options_before_connecting() -> None:
    result = run("tail", "--api-key", "k", "--type", "task.nope")
    assert result.returncode == 2
    assert "unknown event type" in result.stderr


def test_tail_resumes_after_a_dropped_connection() -> None:
    with ReferenceServer(agent_pace=0.0) as server:
        task = server.store.create_task("tail me", events_streaming=True)
        env = {
            **os.environ,
            "AGENTSTREAM_BASE_URL": server.url,
            "AGENTSTREAM_API_KEY": server.api_key,
        }
        tail = subprocess.Popen(
            [sys.executable, "-m", "agentstream", "tail", "--json", "--type", "message.chunk"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert tail.stdout is not None
        try:
            # tail starts at the live end: wait until it is connected
            assert server.app.wait_open_streams(1, timeout=10), "tail never connected"
            first = server.store.publish("message.chunk", "before the drop", task["id"])
            assert json.loads(read_line(tail.stdout, timeout=10))["id"] == first["id"]
            server.drop_streams()
            second = server.store.publish("message.chunk", "after the drop", task["id"])
            assert json.loads(read_line(tail.stdout, timeout=10))["id"] == second["id"]
        finally:
            tail.terminate()
            tail.communicate(timeout=10)


def test_demo_uses_colour_on_a_terminal() -> None:
    import io

    from agentstream.demo import run_demo

    out = io.StringIO()
    assert run_demo(pace=0.01, out=out, colour=True) == 0
    assert "\033[32m" in out.getvalue()


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"agentstream {agentstream.__version__}"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["nope"], "invalid choice"),
        (["tail", "--nope"], "unrecognized arguments: --nope"),
        (["tail", "--api-key", "k", "--type", "task.nope"], "unknown event type 'task.nope'"),
        (["tail", "--api-key", "k", "--heartbeat", "0"], "--heartbeat must be an integer"),
        (["tail", "--api-key", "k", "--heartbeat", "x"], "argument --heartbeat: invalid int"),
        (["tail", "--api-key", "k", "--retry-for", "-1"], "--retry-for must be >= 0"),
        (["tail", "--api-key", "k", "--base-url", "ftp://x"], "--base-url must start with http"),
        (["tail"], "no API key: pass --api-key KEY or set AGENTSTREAM_API_KEY"),
        (["demo", "--pace", "-1"], "--pace must be >= 0"),
        (["demo", "--nope"], "unrecognized arguments: --nope"),
        (["serve", "--port", "x"], "invalid int value"),
    ],
)
def test_usage_errors_exit_2_with_usage_and_the_flag_names(args: list[str], says: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
    result = subprocess.run(
        [sys.executable, "-m", "agentstream", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "usage: agentstream" in result.stderr
    assert says in result.stderr
    assert "Client(" not in result.stderr  # the CLI's flags, not the Python API's arguments
    assert "api_key" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A port of 127.0.0.1 that is bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_tail_reports_each_retry_on_stderr_as_it_happens(refused_url: str) -> None:
    tail = subprocess.Popen(
        [sys.executable, "-m", "agentstream", "tail", "--base-url", refused_url, "--api-key", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert tail.stderr is not None
    try:
        first = read_line(tail.stderr, timeout=20)
        second = read_line(tail.stderr, timeout=20)
        assert tail.poll() is None  # reported while still trying, not at the end
    finally:
        tail.terminate()
        tail.communicate(timeout=10)
    assert first.startswith("agentstream tail: attempt 1 failed (connection refused); retrying in")
    assert second.startswith("agentstream tail: attempt 2 failed (connection refused)")


def test_tail_gives_up_with_agentstreams_count_and_the_cause(refused_url: str) -> None:
    result = run("tail", "--base-url", refused_url, "--api-key", "k", "--retry-for", "1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("agentstream tail: attempt 1 failed (connection refused)")
    assert lines[-1].startswith("agentstream tail: gave up after ")
    assert lines[-1].endswith(f"failed attempt(s) to reach {refused_url}: connection refused")
    assert "Max retries" not in result.stderr  # urllib3's count, not ours
    assert "Traceback" not in result.stderr


def test_tail_exits_quietly_when_its_reader_goes_away() -> None:
    """``agentstream tail | head -1``: once head exits, the next write ends tail, with 0."""
    with ReferenceServer(agent_pace=0.0) as server:
        task = server.store.create_task("tail me", events_streaming=True)
        env = {
            **os.environ,
            "AGENTSTREAM_BASE_URL": server.url,
            "AGENTSTREAM_API_KEY": server.api_key,
        }
        tail = subprocess.Popen(
            [sys.executable, "-m", "agentstream", "tail", "--type", "message.chunk"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert tail.stdout is not None
        assert tail.stderr is not None
        try:
            assert server.app.wait_open_streams(1, timeout=10), "tail never connected"
            server.store.publish("message.chunk", "first", task["id"])
            assert "'first'" in read_line(tail.stdout, timeout=10)
            tail.stdout.close()  # what head does after its line
            deadline = time.monotonic() + 20
            while tail.poll() is None and time.monotonic() < deadline:
                server.store.publish("message.chunk", "more", task["id"])
                with contextlib.suppress(subprocess.TimeoutExpired):
                    tail.wait(timeout=0.05)
            status = tail.poll()
        finally:
            if tail.poll() is None:
                tail.kill()
            stderr = tail.stderr.read()
            tail.stderr.close()
            tail.wait(timeout=10)
    assert status == 0, stderr
    assert stderr == ""


# Runs the command with werkzeug (the server extra) made unimportable, as in an
# environment where only `pip install agentstream` was run.
WITHOUT_SERVER_EXTRA = (
    "import sys; sys.modules['werkzeug'] = None; from agentstream.cli import main; "
    "raise SystemExit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("args", [["serve"], ["serve", "--help"], ["demo"]])
def test_without_the_server_extra_it_says_what_to_install(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_SERVER_EXTRA, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert 'pip install "agentstream[server]"' in result.stderr
    assert "werkzeug" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"agentstream {args[0]}: ")
