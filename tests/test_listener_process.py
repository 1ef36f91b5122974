"""A listener as its own process: killed at random and restarted, stopped by signals.

Across a crash delivery is at-least-once, and the docs say exactly how much
comes again: the events handled after the last cursor write. These tests
check both bounds from the child's own records: the next life never starts
after an event the last one did not handle (nothing lost), and never before
the last write the store confirmed (nothing repeated beyond the window).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentstream.server import ReferenceServer

from .child_output import read_line

CHILD = Path(__file__).with_name("listener_child.py")


def start_child(
    server: ReferenceServer, tmp: Path, start: str, *extra: str
) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [
            sys.executable,
            str(CHILD),
            server.url,
            server.api_key,
            str(tmp / "c.db"),
            str(tmp / "out"),
            start,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert read_line(child.stdout, timeout=20) == "ready"
    return child


def wait_handled(child: subprocess.Popen[str], count: int, timeout: float = 20) -> list[str]:
    """Read the child's next ``count`` "handled ..." lines."""
    assert child.stdout is not None
    lines = [read_line(child.stdout, timeout) for _ in range(count)]
    assert all(line.startswith("handled ") for line in lines), lines
    return lines


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            stream.close()


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def new_task_and_start(server: ReferenceServer) -> tuple[str, str]:
    """A task, and the id of its first event: where the first life starts."""
    task = server.store.create_task("t", events_streaming=True)
    created = server.store.publish("message.chunk", "start marker", str(task["id"]))
    return str(task["id"]), str(created["id"])


def test_sigkill_at_random_points_loses_nothing_and_repeats_only_the_unsaved(
    tmp_path: Path, agentstream_server: ReferenceServer
) -> None:
    seed = random.randrange(1_000_000)
    rand = random.Random(seed)
    task_id, start = new_task_and_start(agentstream_server)
    total = 150
    published = [
        agentstream_server.store.publish("message.chunk", f"part {n}", task_id)["id"]
        for n in range(total)
    ]
    order = {event_id: index for index, event_id in enumerate(published)}
    out, saves = tmp_path / "out", tmp_path / "out.saves"
    lives: list[list[str]] = []  # event ids handled by each life, in order
    last_saved: list[str] = []  # the last write each killed life had confirmed
    for _ in range(3):
        before = len(lines_of(out))
        child = start_child(agentstream_server, tmp_path, start, "--work", "0.002")
        wait_handled(child, rand.randint(5, 30))  # then killed at a random point
        kill(child)
        handled = lines_of(out)[before:]
        lives.append(handled)
        confirmed = lines_of(saves)
        last_saved.append(confirmed[-1] if confirmed else start)
    before = len(lines_of(out))
    child = start_child(agentstream_server, tmp_path, start)
    try:
        deadline = time.monotonic() + 30
        while published[-1] not in lines_of(out)[before:]:
            assert time.monotonic() < deadline, f"seed {seed}: the last life did not finish"
            read_line(child.stdout, 20)  # type: ignore[arg-type]
    finally:
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=10)
    lives.append(lines_of(out)[before:])

    everything = [event_id for life in lives for event_id in life]
    assert set(everything) == set(published), f"seed {seed}: events lost"
    for number, life in enumerate(lives):
        assert len(life) == len(set(life)), f"seed {seed}: repeated within life {number}"
    for number in range(1, len(lives)):
        earlier = lives[number - 1]
        if not lives[number]:
            continue
        first = order[lives[number][0]]
        # Nothing lost: it starts no later than right after the last handled event.
        assert first <= order[earlier[-1]] + 1 if earlier else True, f"seed {seed}"
        # Repeats bounded: it starts after the last write the store confirmed.
        saved = last_saved[number - 1]
        if saved in order:
            assert first > order[saved], f"seed {seed}: repeated before the saved cursor"
        repeated = set(lives[number]) & set(earlier)
        assert all(order[e] > order.get(saved, -1) for e in repeated), f"seed {seed}"


def test_a_bounded_stop_exits_with_the_stuck_event_not_marked_handled(
    tmp_path: Path, agentstream_server: ReferenceServer
) -> None:
    task_id, start = new_task_and_start(agentstream_server)
    child = start_child(
        agentstream_server, tmp_path, start, "--block-at", "part 3", "--stop-timeout", "0.5"
    )
    published = [
        agentstream_server.store.publish("message.chunk", f"part {n}", task_id)["id"]
        for n in range(6)
    ]
    wait_handled(child, 3)
    assert read_line(child.stdout, 20) == "blocked in part 3"  # type: ignore[arg-type]
    started = time.monotonic()
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=10)
    assert time.monotonic() - started < 5
    assert child.returncode == 0, err
    assert "was still running 0.5s after the stop" in err
    # The saved cursor is the last event handled: part 3 comes again next time.
    assert f"cursor saved: {published[2]}" in out


def test_a_second_signal_exits_at_once(tmp_path: Path, agentstream_server: ReferenceServer) -> None:
    task_id, start = new_task_and_start(agentstream_server)
    child = start_child(
        agentstream_server, tmp_path, start, "--block-at", "part 0", "--stop-timeout", "none"
    )
    agentstream_server.store.publish("message.chunk", "part 0", task_id)
    assert read_line(child.stdout, 20) == "blocked in part 0"  # type: ignore[arg-type]
    child.send_signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.5)  # the first one waits for the stuck handler (no timeout)
    started = time.monotonic()
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=10)
    assert time.monotonic() - started < 5
    assert child.returncode == 128 + signal.SIGTERM


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_forever_exits_zero_on_ctrl_c_and_sigterm(
    tmp_path: Path, agentstream_server: ReferenceServer, signum: int
) -> None:
    _, start = new_task_and_start(agentstream_server)
    child = start_child(agentstream_server, tmp_path, start)
    os.kill(child.pid, signum)
    out, err = child.communicate(timeout=10)
    assert child.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped cleanly" in out


FORK_SCRIPT = """
import os, sys
from agentstream import Client, Registry, StreamOptions
client = Client(sys.argv[1], sys.argv[2])
restart = sys.argv[3] == "restart"
listener = client.listen(registry=Registry(), restart_after_fork=restart).start()
pid = os.fork()
if pid == 0:
    print("child", listener.state.value, listener.running, flush=True)
    if restart:
        print("restarted", listener.running, listener.health().state.value != "new", flush=True)
        listener.stop(5)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", listener.running, flush=True)
listener.stop(5)
"""


@pytest.mark.parametrize("mode", ["reset", "restart"])
def test_a_listener_is_never_a_zombie_after_fork(
    agentstream_server: ReferenceServer, mode: str
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FORK_SCRIPT,
            agentstream_server.url,
            agentstream_server.api_key,
            mode,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    if mode == "reset":
        assert "child new False" in lines  # its threads did not survive: not "running"
        assert "parent True" in lines  # the parent's listener is untouched
    else:
        assert "restarted True True" in lines
        assert "parent False" in lines  # it moved to the child (stopped before the fork)
