"""The agentstream command: demo, tail, serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

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
        "connection broken mid-stream",
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
    assert result.returncode == 1
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
