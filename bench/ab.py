"""Before/after: the same flood through clients of two revisions, interleaved.

Run from the repository root::

    .venv/bin/python bench/ab.py --base HEAD~1 --clients as-listener,launchdarkly
    .venv/bin/python bench/ab.py --base main --framing per-event --rounds 7
    .venv/bin/python bench/ab.py --base 30a3b55 --instructions   # callgrind counts

The working tree is "after"; ``--base`` (any git revision) is checked out into
a temporary worktree and is "before". ``bench/peers.py``'s server serves
``--events`` events in one framing; every run is a fresh client process
(``bench/peer_clients.py``'s flood: from before the client is built to the
last event delivered), clients and revisions alternate within each round, and
the table gives medians and the ratio to the first row. Client keys are
those of ``bench/peer_clients.py`` (``as-sse``, ``as-typed``,
``as-listener``, ``as-listener-sqlite``, ``as-listener-file``,
``launchdarkly``, ...), whose working-tree copy runs every
client: only agentstream itself comes from ``--base``. Peers are run once per
round, not per revision.

With ``--instructions`` every run is counted under callgrind instead
(``bench/callgrind.py``): instructions per event from floods of ``--events``
and a quarter of it, which the machine's load does not move; the "×" columns
are then the inverse ratio (throughput, CPU-bound).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import callgrind  # noqa: E402  (bench/ is not a package)
import peers  # noqa: E402
import wire  # noqa: E402
from peer_clients import AGENTSTREAM, DURABLE  # noqa: E402

AGENTSTREAM_KEYS = frozenset(spec.key for spec in (*AGENTSTREAM, *DURABLE))


def flood(repo: Path, key: str, url: str, n: int) -> tuple[float, float]:
    """Events/s of one flood run of ``key`` with ``repo``'s agentstream, by the wall
    clock and per CPU-second of the client process (all its threads).

    The client script is always the working tree's, so that only the library
    differs between the two revisions (an older ``peer_clients.py`` could time
    its clients differently).
    """
    job = json.dumps({"client": key, "test": "flood", "base": url, "n": n})
    done = subprocess.run(
        [sys.executable, str(HERE / "peer_clients.py"), job],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(repo)),  # ahead of the installed agentstream
        cwd=repo,
        timeout=600,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"{key} ({repo}) failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    events = float(result["events"])
    return events / float(result["seconds"]), events / float(result["cpu_seconds"])


def instructions_per_event(repo: Path, key: str, base: str, n: int) -> float:
    """Instructions per event of ``key`` with ``repo``'s agentstream, under callgrind:
    the difference between floods of ``n`` and ``n // 4`` events."""
    runs: list[tuple[int, int]] = []
    for size in (max(1, n // 4), n):
        job = json.dumps({"client": key, "test": "flood", "base": f"{base}/{size}", "n": size})
        count, _ = callgrind.count(
            [sys.executable, str(HERE / "peer_clients.py"), job],
            env=dict(os.environ, PYTHONPATH=str(repo)),
            cwd=repo,
        )
        runs.append((size, count))
    return callgrind.per_event(runs[0], runs[1])


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="HEAD", help="the 'before' revision (HEAD)")
    parser.add_argument("--clients", default="as-typed,as-listener", help="comma-separated keys")
    parser.add_argument("--framing", default="chunked", choices=wire.FRAMINGS)
    parser.add_argument("--events", type=int, help="events per flood (100,000; 20,000 counted)")
    parser.add_argument("--rounds", type=int, help="rounds (5; 1 with --instructions)")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instructions per event under callgrind (--events defaults to 20,000)",
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.instructions else 5
    if args.events is None:
        args.events = 20_000 if args.instructions else 100_000
    if args.instructions and not callgrind.available():
        parser.error("--instructions needs valgrind (Debian: apt-get install valgrind)")

    with tempfile.TemporaryDirectory(prefix="agentstream-ab-") as scratch:
        before = Path(scratch) / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(before), args.base],
            check=True,
        )
        try:
            rows: list[tuple[str, str, Path]] = []  # (label, client key, checkout)
            for key in args.clients.split(","):
                rows.append((f"{key} (working tree)", key, ROOT))
                if key in AGENTSTREAM_KEYS:
                    rows.append((f"{key} ({args.base})", key, before))
            config = peers.ServerConfig([args.framing], args.events, resume_events=0, big_bytes=0)
            rates: dict[str, list[float]] = {label: [] for label, _, _ in rows}
            cpu_rates: dict[str, list[float]] = {label: [] for label, _, _ in rows}
            with wire.server_process(peers.serve, config) as port:
                base = f"http://127.0.0.1:{port}/flood/{args.framing}"
                for _ in range(args.rounds):
                    for label, key, repo in rows:
                        if args.instructions:
                            each = instructions_per_event(repo, key, base, args.events)
                            rates[label].append(each)
                            wire.progress(f"{label}: {each:,.0f} instructions/event")
                            continue
                        rate, cpu_rate = flood(repo, key, f"{base}/{args.events}", args.events)
                        rates[label].append(rate)
                        cpu_rates[label].append(cpu_rate)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=True
            )

    if args.instructions:
        print_instructions(args, rows, rates)
        return
    print(f"{args.events:,} events, {args.framing}, {args.rounds} rounds, medians (events/s)\n")
    print("| client | events/s | × first row | rounds (k/s) | events per CPU-s | × first row |")
    print("|---|---:|---:|---|---:|---:|")
    first = statistics.median(rates[rows[0][0]])
    first_cpu = statistics.median(cpu_rates[rows[0][0]])
    for label, _, _ in rows:
        median = statistics.median(rates[label])
        cpu = statistics.median(cpu_rates[label])
        each = ", ".join(f"{rate / 1000:.0f}" for rate in rates[label])
        print(
            f"| {label} | {median:,.0f} | {median / first:.2f} | {each} | "
            f"{cpu:,.0f} | {cpu / first_cpu:.2f} |"
        )
    print(
        "\nEvents per CPU-s: the events over the client process's CPU time in the same "
        "window (load elsewhere on the machine moves it less than the wall clock)."
    )


def print_instructions(
    args: argparse.Namespace, rows: list[tuple[str, str, Path]], counts: dict[str, list[float]]
) -> None:
    print(
        f"{args.events // 4:,} and {args.events:,} events, {args.framing}, {args.rounds} "
        "round(s) under callgrind, medians (instructions per event)\n"
    )
    print(f"| client | instructions/event | throughput × {args.base} (inverse) | rounds |")
    print("|---|---:|---:|---|")
    medians = {label: statistics.median(counts[label]) for label, _, _ in rows}
    for label, key, _ in rows:
        base_label = f"{key} ({args.base})"
        ratio = medians[base_label] / medians[label] if base_label in medians else 1.0
        each = ", ".join(f"{value:,.0f}" for value in counts[label])
        print(f"| {label} | {medians[label]:,.0f} | {ratio:.3f} | {each} |")


if __name__ == "__main__":
    main()
