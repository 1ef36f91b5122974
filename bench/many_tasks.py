"""Many ``task.events()`` iterators in one process: one shared upstream beside one each.

Run from the repository root::

    .venv/bin/python bench/many_tasks.py               # 500 tasks, 500 threads
    .venv/bin/python bench/many_tasks.py --tasks 50 --pace 0.2

The reference server runs in this process (its simulated agent emits a
task's ~22 events ``--pace`` seconds apart); each mode runs in a fresh client
process, so that its CPU time and peak RSS are its own:

- ``shared``: ``task.events()`` of one ``Client`` (one upstream connection
  for all of them, after each has caught up on its own request);
- ``separate``: what ``task.events()`` did before: each iterator opens its
  own task-scoped ``client.stream_events()``.

The client creates ``--tasks`` streaming tasks one after the other, each
followed at once by its own thread iterating its events until
``task.finished``, and reports the CPU time (user + system, ``getrusage``)
from the first creation to the last iterator's end (the creations cost the
same in both modes) and the process's peak RSS. This process samples the
server's open streams every 20 ms (peak, and the median while the iterators
run). Afterwards each iterator's events are
checked against the task's history in the server's store: exactly those
ids, in order, all of that task. CPU time rather than wall time is the figure to
compare: the machine is shared and loaded, wall time mostly measures the
others' work.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))


def client_main(mode: str, url: str, key: str, tasks: int) -> None:
    """One mode, in its own process; prints one JSON line."""
    from agentstream import Client, EventType, StreamOptions, Task, TaskEvent

    client = Client(url, key, timeout=60)
    received: dict[str, list[TaskEvent]] = {}
    errors: list[str] = []

    def follow_shared(task: Task) -> None:
        try:
            for event in task.events():
                received[task.id].append(event)
        except Exception as exc:
            errors.append(f"{task.id}: {exc!r}")

    def follow_separate(task: Task) -> None:
        try:
            with client.stream_events(StreamOptions(task_id=task.id)) as stream:
                for event in stream:
                    received[task.id].append(event)
                    if event.type == EventType.TASK_FINISHED:
                        break
        except Exception as exc:
            errors.append(f"{task.id}: {exc!r}")

    target = follow_shared if mode == "shared" else follow_separate
    print("ready", flush=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.monotonic()
    threads = []
    for i in range(tasks):  # create a task, follow it on its own thread, create the next
        task = client.create_task(f"bench {i}", events_streaming=True)
        received[task.id] = []
        thread = threading.Thread(target=target, args=(task,), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rss_kib = after.ru_maxrss
    print("streamed", flush=True)
    print(
        json.dumps(
            {
                "mode": mode,
                "shared_opened": client.task_streams.connections_opened,
                "cpu": cpu,
                "wall": wall,
                "rss_mib": rss_kib / 1024,
                "received": {
                    task_id: [[e.id, e.task_id] for e in events]
                    for task_id, events in received.items()
                },
                "errors": errors[:5],
                "error_count": len(errors),
            }
        ),
        flush=True,
    )


def run_mode(mode: str, server: Any, tasks: int) -> dict[str, Any]:
    child = subprocess.Popen(
        [sys.executable, str(HERE), "--child", mode, server.url, server.api_key, str(tasks)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(server.app.open_streams)
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert child.stdout.readline().strip() == "streamed"
    done.set()
    sampler.join()
    line = child.stdout.readline()
    child.wait()
    result: dict[str, Any] = json.loads(line)
    busy = [s for s in samples if s > 0]  # the streaming phase only
    # Check: every iterator got exactly its task's events, in order (the store's truth).
    wrong = total = 0
    store = server.store
    for task_id, got in result.pop("received").items():
        truth = [e.id for e in store.read_after(0, task_id=task_id, limit=10_000).events]
        total += len(got)
        if [i for i, _ in got] != truth or {t for _, t in got} != {task_id}:
            if not wrong:
                print(f"first wrong: got {len(got)}, truth {len(truth)}", file=sys.stderr)
            wrong += 1
    result["events"] = total
    result["wrong_iterators"] = wrong
    result["peak_streams"] = max(samples, default=0)
    result["median_streams"] = statistics.median(busy) if busy else 0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--pace", type=float, default=1.0, help="seconds between a task's events")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, url, key, tasks = args.child
        client_main(mode, url, key, int(tasks))
        return

    from agentstream.server import ReferenceServer

    with ReferenceServer(agent_pace=args.pace) as server:
        results = [run_mode(mode, server, args.tasks) for mode in ("shared", "separate")]
    shared, separate = results
    print(f"{args.tasks} task.events() iterators, one thread each, agent pace {args.pace}s\n")
    print(
        "| mode | peak upstream streams | median while running | events | wrong iterators"
        " | errors | CPU s | wall s | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {r['peak_streams']} | {r['median_streams']:g} | {r['events']}"
            f" | {r['wrong_iterators']} | {r['error_count']} | {r['cpu']:.2f} | {r['wall']:.1f}"
            f" | {r['rss_mib']:.1f} |"
        )
    print()
    print(f"shared connections opened in the shared run: {shared['shared_opened']}")
    print(f"CPU time shared/separate: {shared['cpu'] / separate['cpu']:.2f}")
    print(f"peak RSS shared/separate: {shared['rss_mib'] / separate['rss_mib']:.2f}")
    for r in results:
        for error in r["errors"]:
            print(f"{r['mode']} error: {error}")
    print("\n(CPU time, not wall time: the machine is shared and loaded.)")


if __name__ == "__main__":
    main()
