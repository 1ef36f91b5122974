"""Instructions, not seconds: a client job counted under ``valgrind --tool=callgrind``.

On a shared 2-core machine the wall clock of two identical runs of the same
client differed by up to 1.9× (issue 12's runs: the in-memory Listener at 41k
and at 79k events/s in one session), so ratios of a few percent cannot be
read off it. Callgrind counts the instructions the client process executes
(all its threads), which does not depend on what else the machine is doing:
the same job gives the same count to within the noise of how the socket's
reads happen to fall (measured below by the spread of repeated runs).

Instructions *per event* are taken as the difference between two flood sizes,
``(I(large) - I(small)) / (large - small)``, so that interpreter start-up,
imports and the connection cost cancel out. A throughput ratio is then the
inverse ratio of instructions per event (the CPU-bound case; what the wall
clock adds on top, waiting on the socket, is the same for every client of one
run).

One caveat works against the durable stores, never for them: under callgrind
a client runs about 50 times slower, so time-driven work (the keeper's save
every ``save_interval``, the Redis lease renewal) happens about 50 times more
often per event than in a real run. The counts include it. For the same
reason a lease must be longer under callgrind than in a real run (a 2 s lease
is 40 ms of real work there): :data:`SLOWDOWN` scales it.

Used by ``bench/durable.py --instructions`` and ``bench/ab.py --instructions``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

TOTALS = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)
SLOWDOWN = 50
"""About how many times slower a client runs under callgrind (25 s for a
20,000-event flood against 0.3 s)."""
ENV = {"PYTHONHASHSEED": "0"}
"""The same string hashes in every run: dict and set layouts do not vary between runs."""


def available() -> bool:
    """Whether ``valgrind`` is on the PATH."""
    return shutil.which("valgrind") is not None


def count(
    argv: Sequence[str],
    *,
    env: Optional[dict[str, str]] = None,
    cwd: Optional[Path] = None,
    timeout: float = 900.0,
) -> tuple[int, dict[str, Any]]:
    """Run ``argv`` under callgrind; (instructions executed, the job's JSON result).

    The job prints its result as a JSON object on its last stdout line, as
    ``bench/peer_clients.py`` does.
    """
    with tempfile.TemporaryDirectory(prefix="agentstream-callgrind-") as scratch:
        out = Path(scratch) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            # Valgrind runs one thread at a time; without fair scheduling the
            # reader can keep the keeper (saves, lease renewals) waiting for
            # seconds, which no real run does.
            "--fair-sched=yes",
            f"--callgrind-out-file={out}",
            *argv,
        ]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={**(env if env is not None else os.environ), **ENV},
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
        if done.returncode:
            raise SystemExit(f"{' '.join(argv)} failed under callgrind:\n{done.stderr[-4000:]}")
        totals = TOTALS.findall(out.read_text())
    if not totals:
        raise SystemExit(f"no totals in callgrind's output for {' '.join(argv)}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return int(totals[0]), result


def per_event(small: tuple[int, int], large: tuple[int, int]) -> float:
    """Instructions per event from two (events, instructions) runs of one job."""
    (n_small, i_small), (n_large, i_large) = small, large
    if n_large <= n_small:
        raise ValueError("the large run must have more events than the small one")
    return (i_large - i_small) / (n_large - n_small)
