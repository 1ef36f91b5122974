"""A listener process for tests/test_listener_process.py.

Usage: listener_child.py URL KEY CURSOR_DB OUT [BLOCK_AT]

Handles message.chunk events by appending their text to OUT, after the
handler's work is done, then saying so on stdout; with BLOCK_AT, the
handler for "part BLOCK_AT" says "blocked in part BLOCK_AT" and never
returns (the process is then killed mid-stream). Prints "ready" once
connected.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from agentstream import Client, Registry, SQLiteCursorStore, StreamOptions, TaskEvent, signals


def main(url: str, key: str, db: str, out: str, block_at: str = "") -> None:
    registry = Registry()

    @registry.on("message.chunk")
    def record(event: TaskEvent) -> None:
        if block_at and event.data == f"part {block_at}":
            # Said only once the cursor of the event before is saved: the
            # parent kills this process after this line.
            print(f"blocked in {event.data}", flush=True)
            threading.Event().wait()  # stuck until the process is killed
        with open(out, "a") as handle:
            handle.write(f"{event.data}\n")
        print(f"handled {event.data}", flush=True)  # the parent waits on these lines

    client = Client(url, key)
    listener = client.listen(
        StreamOptions(event_types=["message.chunk"]),
        registry=registry,
        cursor_store=SQLiteCursorStore(db),
        name="child",
    )

    def ready(sender: Any, **kwargs: Any) -> None:
        print("ready", flush=True)

    signals.connected.connect(ready, sender=listener)
    listener.run_forever()
    print("stopped cleanly", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
