"""What the fan-out costs a publish with no stream open, in one process, no sockets.

Run from the repository root::

    .venv/bin/python bench/fanout_overhead.py
    .venv/bin/python bench/fanout_overhead.py --pythonpath /path/to/checkout/of/main

Two reference apps on two fresh stores, the fan-out of the second stopped
(``Broadcaster.close()``); ``--rounds`` interleaved rounds of ``--number``
publishes each through the WSGI app (``POST /task-events``, the environ as
werkzeug builds it, no HTTP parsing); µs per publish, best round and
median, with the fan-out running and stopped. Interleaving makes the two
columns share whatever else the machine does. Before issue 16's last round
the fan-out was a thread woken at every commit: this measures that wake-up
(and the GIL and store lock passed back and forth), which callgrind, running
one thread at a time, does not see.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import timeit
from typing import Any

KEY = "as_bench_overhead_key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pythonpath", help="import agentstream from this checkout")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=1000, help="publishes per round")
    args = parser.parse_args()
    if args.pythonpath:
        sys.path.insert(0, args.pythonpath)
    from agentstream import server as srv
    from agentstream.server._app import create_app
    from agentstream.server._store import EventStore

    def app() -> Any:
        path = os.path.join(tempfile.mkdtemp(prefix="agentstream-overhead-"), "e.sqlite3")
        store = EventStore(path, retention=10_000_000)
        return create_app(store, api_keys={KEY: srv.ALL_SCOPES}, agent_pace=0)

    running, stopped = app(), app()
    stopped._streams.broadcaster.close()
    body = json.dumps({"type": "message.chunk", "data": {"t": 1.0, "pad": "x" * 200}}).encode()

    def environ() -> dict[str, Any]:
        return {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/task-events",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8787",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json",
            "HTTP_HOST": "127.0.0.1:8787",
            "HTTP_AUTHORIZATION": f"Bearer {KEY}",
        }

    def publish(app: Any) -> None:
        for _ in app(environ(), lambda *_: None):
            pass

    times: dict[str, list[float]] = {"running": [], "stopped": []}
    for _ in range(args.rounds):
        for name, target in (("running", running), ("stopped", stopped)):
            seconds = timeit.timeit(lambda t=target: publish(t), number=args.number)
            times[name].append(seconds / args.number * 1e6)
    load = os.getloadavg()[0]
    print(f"µs per publish, {args.rounds} interleaved rounds of {args.number}, load {load:.2f}")
    for name, values in times.items():
        print(f"fan-out {name}: best {min(values):.1f}, median {statistics.median(values):.1f}")


if __name__ == "__main__":
    main()
