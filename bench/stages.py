"""Per-event cost of each stage of the pipeline, in-process, no sockets.

Run from the repository root::

    .venv/bin/python bench/stages.py              # 100,000 events, best of 7
    .venv/bin/python bench/stages.py -n 20000     # quicker

The input is the flood of ``bench/peers.py`` (``bench/wire.py``'s events: valid
``task.updated`` envelopes of about 612 bytes in canonical
``id:``/``event:``/``data:`` blocks), pre-built
and cut into 64 KiB pieces, as ``EventSource`` reads it. Each row times one
stage alone over all the events and gives microseconds per event (the best
of ``--repeat`` runs); the last row chains parsing and validation, as the
typed stream does. The socket and the server are left out on
purpose: ``bench/ab.py`` and ``bench/peers.py`` measure the whole thing.

Rows:

* de-chunking: ``ChunkedReader`` over a body with one HTTP chunk per event;
* SSE parsing: ``SSEParser.feed`` (canonical blocks take its regex path);
* SSE parsing, general path: the same events with ``event:`` before ``id:``,
  which the regex path does not take;
* validation: ``parse_event`` on each ``data`` field;
* dispatch: ``Registry.dispatch`` of a parsed event to one handler, plus the
  Listener's one-worker bookkeeping, as ``Listener._read_and_handle`` does it
  per event (the stop and lease checks, ``CursorTracker.complete_next``, the counters;
  no store write: the keeper thread saves the cursor off the event path);
* parse + validate: ``feed`` then ``parse_event``, what the typed stream does.
"""

import argparse
import io
import platform
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import pydantic

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wire

from agentstream import Client, Registry, signals
from agentstream.models import TaskEvent, parse_event
from agentstream.sse import SSEParser
from agentstream.sse._chunked import ChunkedReader


def pieces(stream: bytes) -> list[bytes]:
    return [stream[i : i + wire.READ_CHUNK] for i in range(0, len(stream), wire.READ_CHUNK)]


def stages(n: int) -> dict[str, Callable[[], object]]:
    events = wire.build_events(n)
    canonical = pieces(b"".join(events))
    # The same blocks with the type line first: the parser's general path.
    reordered = pieces(
        b"".join(
            b"event: task.updated\n" + e.replace(b"\nevent: task.updated", b"", 1) for e in events
        )
    )
    chunked = wire.frame(events, "per-event")
    datas = [raw.data for raw in SSEParser().feed(b"".join(events))]
    sample = parse_event(datas[0])

    def dechunk() -> None:
        reader = ChunkedReader(io.BytesIO(chunked))
        while reader.read1(wire.READ_CHUNK):
            pass

    def parse(blocks: list[bytes]) -> Callable[[], None]:
        def run() -> None:
            parser = SSEParser()
            for block in blocks:
                parser.feed(block)

        return run

    def validate() -> None:
        for data in datas:
            parse_event(data)

    registry = Registry()
    handled: list[TaskEvent] = []

    @registry.on("task.updated")
    def handler(event: TaskEvent) -> None:
        handled[:] = [event]

    listener = Client("http://127.0.0.1:9", "as_bench_key").listen(registry=registry)
    dispatch, complete = listener._dispatcher(), listener._tracker.complete_next
    received = signals.event_received
    stopping, clock, monotonic = listener._stopping, time.time, time.monotonic

    def dispatch_and_bookkeeping() -> None:
        # The body of Listener._read_and_handle's loop, without the stream: the
        # cursor in memory only (the keeper thread writes it to the store).
        for _ in range(n):
            if stopping.is_set():
                return
            deadline = listener._lease_deadline
            if deadline is not None and monotonic() >= deadline:
                raise RuntimeError("this listener holds no lease")
            result = dispatch(sample, sender=listener, signal=received)
            complete(sample.sequence, sample.id)
            listener._handled += 1
            if result.errors:
                listener._failures += len(result.errors)
            listener._last_event = sample
            listener._last_event_at = clock()
            if listener._waiting:
                raise RuntimeError("nobody waits on this listener")

    def parse_and_validate() -> None:
        parser = SSEParser()
        for block in canonical:
            for raw in parser.feed(block):
                parse_event(raw.data)

    return {
        "de-chunking (one HTTP chunk per event)": dechunk,
        "SSE parsing (canonical blocks)": parse(canonical),
        "SSE parsing (general path)": parse(reordered),
        "validation (parse_event)": validate,
        "dispatch + one-worker bookkeeping": dispatch_and_bookkeeping,
        "SSE parsing + validation": parse_and_validate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--number", type=int, default=100_000, help="events (100,000)")
    parser.add_argument("--repeat", type=int, default=7, help="runs, best kept (7)")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, pydantic {pydantic.VERSION}; "
        f"{args.number:,} events, best of {args.repeat}\n"
    )
    print(f"{'stage':45s} {'µs/event':>9s}")
    for name, run in stages(args.number).items():
        best = min(timeit.repeat(run, number=1, repeat=args.repeat))
        print(f"{name:45s} {best / args.number * 1e6:9.2f}")


if __name__ == "__main__":
    main()
