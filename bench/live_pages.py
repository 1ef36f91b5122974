"""What an open live task page costs a sync web worker: the example app under gunicorn.

Run from the repository root::

    .venv/bin/python bench/live_pages.py              # 100 pages
    .venv/bin/python bench/live_pages.py --pages 300

The reference server runs in this process with an idle agent (the script
publishes what the tasks emit). ``examples/live_page`` runs under ``gunicorn
-k gthread -w 1 --threads <pages + 10>`` with a 2 s page heartbeat. The
script opens ``--pages`` event streams, one per task, as browsers would, and
reads from ``/proc`` the gunicorn worker's threads and RSS: with one page open
(the baseline), with all of them open, while the tasks are idle and after one
event each, and after every page was closed. It counts the upstream streams
open on the reference server at each step. Then, with ``--threads 4`` and
four pages open, it asks for the app's index page: it is not answered until
a page closes (every worker thread is held by a page). Counts, not timings:
the numbers hold on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from agentstream import Client, EventType  # noqa: E402
from agentstream.server import ReferenceServer  # noqa: E402

GUNICORN = Path(sys.executable).parent / "gunicorn"
EXAMPLE = ROOT / "examples" / "live_page"


def worker_status(pid: int) -> tuple[int, int]:
    """(threads, RSS in KiB) of a process."""
    text = Path(f"/proc/{pid}/status").read_text()
    threads = re.search(r"Threads:\s+(\d+)", text)
    rss = re.search(r"VmRSS:\s+(\d+)", text)
    assert threads is not None
    assert rss is not None
    return int(threads[1]), int(rss[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Gunicorn:
    """The example app under gunicorn -k gthread, one worker."""

    def __init__(self, server: ReferenceServer, threads: int) -> None:
        bind = f"127.0.0.1:{free_port()}"
        self.url = f"http://{bind}"
        env = {
            **os.environ,
            "AGENTSTREAM_BASE_URL": server.url,
            "AGENTSTREAM_API_KEY": server.api_key,
            "FLASK_LIVE_PAGE_HEARTBEAT_SECONDS": "2",
        }
        self.process = subprocess.Popen(
            [
                *(str(GUNICORN), "-k", "gthread", "-w", "1", "--threads", str(threads)),
                *("--graceful-timeout", "1", "-b", bind, "--chdir", str(EXAMPLE)),
                "app:create_app()",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.url + "/", timeout=1).close()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        self.worker = int(children.read_text().split()[0])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


class Page:
    """One browser's event stream, read line by line."""

    def __init__(self, url: str) -> None:
        self.response = requests.get(url, stream=True, timeout=30)
        self.lines: Iterator[bytes] = self.response.iter_lines()

    def next_event(self) -> None:
        for line in self.lines:
            if line.startswith(b"data:"):
                return
        raise EOFError("the page's stream ended")

    def close(self) -> None:
        self.response.close()


def wait_for(condition: object, timeout: float) -> float:
    start = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise TimeoutError("condition not met")
        time.sleep(0.05)
    return time.monotonic() - start


def cost(pages: int) -> None:
    with ReferenceServer(agent_pace=3600.0) as server, Client(server.url, server.api_key) as api:
        app = Gunicorn(server, threads=pages + 10)
        try:
            tasks = [api.create_task(f"page {i}", events_streaming=True) for i in range(pages + 1)]
            first = Page(f"{app.url}/tasks/{tasks[0].id}/events")
            first.next_event()
            time.sleep(1)  # let the first page settle (imports, the shared stream)
            base_threads, base_rss = worker_status(app.worker)
            opened = [first]
            for task in tasks[1:]:
                page = Page(f"{app.url}/tasks/{task.id}/events")
                page.next_event()
                opened.append(page)
            idle_streams = server.app.open_streams
            for task in tasks:
                api.publish_event(EventType.CHUNK, "x", task_id=task.id)
            for page in opened:
                page.next_event()
            wait_for(lambda: server.app.open_streams == 1, 30)
            threads, rss = worker_status(app.worker)
            print(
                f"{pages} more pages open: worker threads {base_threads} -> {threads} "
                f"({(threads - base_threads) / pages:.2f} per page), RSS {base_rss} -> {rss} KiB "
                f"({(rss - base_rss) / pages:.0f} KiB per page)"
            )
            print(
                f"upstream streams on the server: {idle_streams} while the tasks had no new "
                f"event (each page on its own catch-up), {server.app.open_streams} after one "
                "event each (all on the shared stream)"
            )
            for page in opened:
                page.close()
            freed = wait_for(lambda: worker_status(app.worker)[0] <= threads - pages - 1, 30)
            wait_for(lambda: server.app.open_streams == 0, 30)
            print(
                f"all pages closed: their upstream threads ended within {freed:.1f} s "
                f"(2 s heartbeat); worker threads {worker_status(app.worker)[0]} (gthread keeps "
                f"its pool), upstream streams {server.app.open_streams}"
            )
        finally:
            app.stop()


def exhaustion() -> None:
    with ReferenceServer(agent_pace=3600.0) as server, Client(server.url, server.api_key) as api:
        app = Gunicorn(server, threads=4)
        try:
            pages = []
            for i in range(4):
                task = api.create_task(f"held {i}", events_streaming=True)
                page = Page(f"{app.url}/tasks/{task.id}/events")
                page.next_event()
                pages.append(page)
            try:
                requests.get(app.url + "/", timeout=3).close()
                print("--threads 4, 4 pages open: the index page was answered (unexpected)")
            except requests.exceptions.ReadTimeout:
                print("--threads 4, 4 pages open: the index page was not answered within 3 s")
            pages[0].close()
            start = time.monotonic()
            requests.get(app.url + "/", timeout=30).close()
            waited = time.monotonic() - start
            print(f"one page closed: the index page answered {waited:.1f} s later")
            for page in pages[1:]:
                page.close()
        finally:
            app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=100)
    args = parser.parse_args()
    cost(args.pages)
    exhaustion()


if __name__ == "__main__":
    main()
