"""A listener process for tests/test_listener_process.py.

Usage: listener_child.py URL KEY CURSOR_DB OUT START_CURSOR [options]

Handles ``message.chunk`` events: the handler does its work (``--work``
seconds), then appends the event id to OUT and says ``handled <data>`` on
stdout. Every cursor write that reached the SQLite store is appended to
``OUT.saves`` once it returned. The listener starts after START_CURSOR when
the store has nothing. Prints ``ready`` once connected.

``--block-at DATA``: the handler of that event says ``blocked in DATA`` and
never returns. ``--stop-timeout S`` (or ``none``) is run_forever's.
``--save-interval S`` is the listener's.
"""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any, Optional

from agentstream import Client, Registry, SQLiteCursorStore, StreamOptions, TaskEvent, signals


class RecordingStore(SQLiteCursorStore):
    """Appends each cursor write to a file once the store has it."""

    def __init__(self, path: str, record: str) -> None:
        super().__init__(path)
        self.record = record

    def save(self, name: str, cursor: str) -> None:
        super().save(name, cursor)
        self._record(cursor)

    def save_fenced(self, name: str, cursor: str, token: int) -> None:
        super().save_fenced(name, cursor, token)
        self._record(cursor)

    def _record(self, cursor: str) -> None:
        with open(self.record, "a") as handle:
            handle.write(f"{cursor}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "key", "db", "out", "start"):
        parser.add_argument(name)
    parser.add_argument("--block-at", default="")
    parser.add_argument("--work", type=float, default=0.0)
    parser.add_argument("--save-interval", type=float, default=0.05)
    parser.add_argument("--stop-timeout", default="10")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    registry = Registry()
    pause = threading.Event()  # never set: waits are the handler's "work"

    @registry.on("message.chunk")
    def record(event: TaskEvent) -> None:
        if args.block_at and event.data == args.block_at:
            print(f"blocked in {event.data}", flush=True)
            pause.wait()  # stuck until the process is killed
        if args.work:
            pause.wait(args.work)
        with open(args.out, "a") as handle:
            handle.write(f"{event.id}\n")
        print(f"handled {event.data}", flush=True)  # the parent waits on these lines

    client = Client(args.url, args.key)
    listener = client.listen(
        StreamOptions(event_types=["message.chunk"], cursor=args.start),
        registry=registry,
        cursor_store=RecordingStore(args.db, args.out + ".saves"),
        name="child",
        save_interval=args.save_interval,
    )

    def ready(sender: Any, **kwargs: Any) -> None:
        print("ready", flush=True)

    signals.connected.connect(ready, sender=listener)
    stop_timeout: Optional[float] = (
        None if args.stop_timeout == "none" else float(args.stop_timeout)
    )
    listener.run_forever(stop_timeout=stop_timeout)
    print(f"stopped cleanly, cursor saved: {listener.cursor_saved}", flush=True)


if __name__ == "__main__":
    main()
