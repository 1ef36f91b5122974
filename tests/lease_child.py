"""A listener process holding (or standing by for) a lease, for tests/test_leases_process.py.

Usage: lease_child.py URL KEY STORE RECORDS [options]

STORE is ``sqlite:<path>`` or ``redis:<url>``. The listener (name ``--name``,
``lease_ttl`` ``--ttl``, ``save_interval`` ``--save-interval``) handles
``message.chunk`` events, starting after ``--start`` when the store has no
cursor (none given: ``on_missing_cursor`` decides). Everything the parent
checks is appended, one line each, to RECORDS (its own file: written with
``O_APPEND`` before the next step, so a SIGKILL loses nothing written)::

    handled <event id> <fencing token> <monotonic start> <monotonic end>
    saved <cursor> <fencing token> <monotonic>    a fenced save the store confirmed
    refused <cursor> <fencing token> <monotonic>  a fenced save the store refused

``time.monotonic()`` is one clock for every process of the host (Linux
CLOCK_MONOTONIC), so the parent can order the records of several children.

On stdout, for the parent to wait on: ``ready``, then the listener's own log
lines about its lease, each prefixed with the monotonic time it was logged
(``<t> holds the lease (fencing token N)``, ``<t> lost its lease ...``,
``<t> standing by ...``), ``<t> handled <data>`` after each event, and
``<t> stale save refused`` / ``<t> stale save ACCEPTED`` (``--stale-save``:
when this process finds it lost its lease, it tries once more to save its
last cursor with the token it had, as a holder that did not notice would).
``run_forever()`` ends the process: 0 after SIGTERM, non-zero when the
listener failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from typing import Any, Optional

from agentstream import (
    Client,
    LeaseLostError,
    Registry,
    StreamOptions,
    TaskEvent,
)
from agentstream.cursors import LeaseStore, RedisCursorStore, SQLiteCursorStore
from agentstream.sse import RetryPolicy


class Records:
    """One line per fact, appended with a single write each."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, line: str) -> None:
        os.write(self._fd, (line + "\n").encode())


def say(text: str) -> None:
    print(f"{time.monotonic():.6f} {text}", flush=True)


def make_store(spec: str) -> LeaseStore:
    kind, _, where = spec.partition(":")
    if kind == "sqlite":
        return SQLiteCursorStore(where)
    if kind == "redis":
        return RedisCursorStore(where, prefix="leases:")
    raise SystemExit(f"unknown store {spec!r}")


class RecordingStore:
    """The real store, each fenced save's outcome recorded once the store answered."""

    def __init__(self, inner: LeaseStore, records: Records) -> None:
        self.inner = inner
        self.records = records

    def load(self, name: str) -> Optional[str]:
        return self.inner.load(name)

    def save(self, name: str, cursor: str) -> None:
        self.inner.save(name, cursor)

    def acquire(self, name: str, holder: str, ttl: float) -> Optional[int]:
        return self.inner.acquire(name, holder, ttl)

    def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        return self.inner.renew(name, holder, token, ttl)

    def release(self, name: str, holder: str, token: int) -> None:
        self.inner.release(name, holder, token)

    def lease_holder(self, name: str) -> Optional[tuple[str, int, float]]:
        return self.inner.lease_holder(name)

    def save_fenced(self, name: str, cursor: str, token: int) -> None:
        try:
            self.inner.save_fenced(name, cursor, token)
        except LeaseLostError:
            self.records.write(f"refused {cursor} {token} {time.monotonic():.6f}")
            raise
        self.records.write(f"saved {cursor} {token} {time.monotonic():.6f}")


class LeaseLog(logging.Handler):
    """Echoes the listener's lease log lines to stdout, timed."""

    def __init__(self, on_lost: Any) -> None:
        super().__init__(logging.INFO)
        self.on_lost = on_lost

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for marker in ("holds the lease", "lost its lease", "standing by"):
            if marker in message:
                say(marker + message.split(marker, 1)[1])
                if marker == "lost its lease":
                    self.on_lost()


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "key", "store", "records"):
        parser.add_argument(name)
    parser.add_argument("--name", default="orders")
    parser.add_argument("--start", default=None)
    parser.add_argument("--ttl", type=float, default=1.5)
    parser.add_argument("--save-interval", type=float, default=0.1)
    parser.add_argument("--work", type=float, default=0.0)
    parser.add_argument("--on-missing-cursor", default="live")
    parser.add_argument("--stale-save", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    records = Records(args.records)
    store = RecordingStore(make_store(args.store), records)
    registry = Registry()
    pause = threading.Event()  # never set: waits are the handler's "work"
    last: dict[str, Any] = {}  # the last event handled and the token it was handled with

    @registry.on("message.chunk")
    def handle(event: TaskEvent) -> None:
        started = time.monotonic()
        token = listener.health().lease_token
        if args.work:
            pause.wait(args.work)
        records.write(f"handled {event.id} {token} {started:.6f} {time.monotonic():.6f}")
        last.update(cursor=event.id, token=token)
        say(f"handled {event.data}")

    def try_stale_save() -> None:
        cursor, token = last.get("cursor"), last.get("token")
        if not args.stale_save or cursor is None or token is None:
            return
        try:
            store.save_fenced(listener.name, cursor, token)
        except LeaseLostError:
            say("stale save refused")
        else:
            say("stale save ACCEPTED")

    log = LeaseLog(lambda: threading.Thread(target=try_stale_save).start())
    lease_logger = logging.getLogger("agentstream.listener")
    lease_logger.addHandler(log)
    lease_logger.setLevel(logging.INFO)

    client = Client(
        args.url, args.key, retry=RetryPolicy.forever(initial_delay=0.01, max_delay=0.2)
    )
    listener = client.listen(
        StreamOptions(event_types=["message.chunk"], cursor=args.start),
        registry=registry,
        cursor_store=store,
        name=args.name,
        lease_ttl=args.ttl,
        save_interval=args.save_interval,
        on_missing_cursor=args.on_missing_cursor,
    )
    print("ready", flush=True)
    listener.run_forever(stop_timeout=5)
    say(f"stopped, state {listener.state.value}")


if __name__ == "__main__":
    main()
