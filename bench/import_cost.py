"""What importing agentstream costs, beside what importing its dependencies costs.

Each sample is a fresh interpreter that times one import statement from the
inside (``time.perf_counter`` around it, so interpreter start-up is not
counted) and reports the growth of its peak RSS. The statements are run
round-robin, so a noisy neighbour slows them all alike; the report gives the
median of ``--runs`` samples and each statement's ratio to the four
dependencies' import (requests, sseclient-py, pydantic, blinker) in the same run.

Two rows time a parse instead of an import: the first event a process parses
after ``from agentstream import Client`` (what a deferred build of the models
would move out of the import), and a second one (the steady state).

It then times whole pytest runs of an empty project with and without
agentstream's plugin (``-p no:agentstream``), which pytest loads in every run
wherever agentstream is installed.

    .venv/bin/python bench/import_cost.py            # 21 samples each
    .venv/bin/python bench/import_cost.py --runs 5   # quicker
    .venv/bin/python bench/import_cost.py --pythonpath /path/to/other/checkout
    .venv/bin/python bench/import_cost.py --instructions

``--pythonpath`` measures another checkout's agentstream (put first on the
path) with this environment's dependencies: the "before" of a change.

``--instructions`` counts instructions instead of seconds, under ``valgrind
--tool=callgrind``: one count per statement, as the count of a process that
runs the setup and the statement less that of one that runs the setup alone.
The count does not depend on what else the machine is doing (the wall clock of
a shared 2-core machine does, by up to 2x between identical runs); two counts
of the same process differ by up to about 1% (a few million instructions), so
a difference smaller than ~10 M is noise: the "second event parsed" row is
there only in seconds. The load average is printed with every report.

Targets (issue 17): ``import agentstream`` <= 1.15 x the dependencies;
``import agentstream.sse`` imports no pydantic (the last column); the plugin
costs <= 50 ms per pytest run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

# name, setup (not timed), statement: the first one is the reference of the ratios.
STATEMENTS = [
    ("deps", "", "import requests, sseclient, pydantic, blinker"),
    (
        "deps, pydantic used",
        "",
        "import requests, sseclient, blinker; from pydantic import BaseModel",
    ),
    ("import agentstream", "", "import agentstream"),
    ("import agentstream.sse", "", "import agentstream.sse"),
    ("from agentstream import Client", "", "from agentstream import Client"),
    ("import agentstream.testing", "", "import agentstream.testing"),
    (
        "first event parsed, after Client",
        "from agentstream import Client, parse_event\nevent = EVENT",
        "parse_event(event)",
    ),
    (
        "second event parsed",
        "from agentstream import Client, parse_event\nparse_event(EVENT)\nevent = EVENT",
        "parse_event(event)",
    ),
    (
        "pytest plugin (pytest loaded)",
        "import pytest",
        # before issue 17 the plugin was agentstream.testing itself
        "try:\n    import agentstream.pytest_plugin\nexcept ImportError:\n"
        "    import agentstream.testing",
    ),
]

# A task.updated as the wire carries it (bench/wire.py's UPDATED), for the parse rows.
EVENT = (
    b'{"id":"evt_000000000000002a_3f9c1e","type":"task.updated","sequence":42,'
    b'"occurredAt":"2026-11-20T10:00:00.123Z","taskId":"task_01JD8Z3K9Q",'
    b'"organizationId":"org_01JD8Z3K9Q","taskVersion":7,"traceId":null,"data":'
    b'{"taskId":"task_01JD8Z3K9Q","taskIdentifier":"AS-42","status":"in_review",'
    b'"previousStatus":"in_progress","changedFields":["status","summary"],'
    b'"actor":{"id":"agent_research","role":"agent"},'
    b'"summary":"Draft ready: three sources compared.","availableActions":["review","stop"],'
    b'"links":{"task":"http://127.0.0.1:8787/tasks/task_01JD8Z3K9Q"}}}'
)

CHILD = """
import resource, sys, time
EVENT = eval(sys.argv[3])
exec(compile(sys.argv[1], "<setup>", "exec"))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
exec(compile(sys.argv[2], "<import>", "exec"))
elapsed = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(elapsed, (after - before) / 1024, int("pydantic" in sys.modules))
"""


def sample(setup: str, statement: str, env: dict[str, str]) -> tuple[float, float, bool]:
    """One fresh interpreter: (seconds, peak RSS growth in MB, pydantic imported)."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, setup, statement, repr(EVENT)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tempfile.gettempdir(),  # not a checkout: its agentstream would come first
    ).stdout.split()
    return float(out[0]), float(out[1]), out[2] == "1"


# Under callgrind: the setup, then the statement or nothing (the difference is its cost).
COUNTED = """
import sys
EVENT = eval(sys.argv[3])
exec(compile(sys.argv[1], "<setup>", "exec"))
exec(compile(sys.argv[2], "<statement>", "exec"))
"""

CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(setup: str, statement: str, env: dict[str, str]) -> int:
    """Instructions one fresh interpreter executes for ``setup`` then ``statement``."""
    done = subprocess.run(
        [*CALLGRIND, sys.executable, "-c", COUNTED, setup, statement, repr(EVENT)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(env, PYTHONHASHSEED="0"),  # the same dict layouts in every run
        cwd=tempfile.gettempdir(),
    )
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no count from callgrind: {done.stderr[-500:]}")
    return int(found.group(1))


def instruction_rows(env: dict[str, str]) -> dict[str, dict[str, float]]:
    """Millions of instructions per statement, and the ratio to the first one."""
    counts = {
        name: instructions(setup, statement, env) - instructions(setup, "pass", env)
        for name, setup, statement in STATEMENTS
        if name != "second event parsed"  # ~50,000 instructions: below the noise
    }
    reference = counts[STATEMENTS[0][0]]
    return {
        name: {"instructions_m": count / 1e6, "ratio": count / reference}
        for name, count in counts.items()
    }


def load_average() -> str:
    """``uptime``'s three numbers: how busy the shared machine was."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def pytest_seconds(project: str, *options: str) -> float:
    """Wall time of one whole pytest run over ``project`` (an empty directory)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, project],
        capture_output=True,
        check=False,  # exit status 5: no tests collected, as expected
    )
    return time.perf_counter() - start


def plugin_cost(runs: int) -> dict[str, float]:
    """Median pytest run of an empty project with and without the plugin, in ms."""
    with_plugin: list[float] = []
    without: list[float] = []
    with tempfile.TemporaryDirectory() as project:
        for _ in range(runs):
            with_plugin.append(pytest_seconds(project))
            without.append(pytest_seconds(project, "-p", "no:agentstream"))
    return {
        "with_ms": statistics.median(with_plugin) * 1000,
        "without_ms": statistics.median(without) * 1000,
        "cost_ms": (statistics.median(with_plugin) - statistics.median(without)) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="samples per statement")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    parser.add_argument("--pythonpath", help="measure the agentstream of this checkout")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind"
    )
    args = parser.parse_args()
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = os.path.abspath(args.pythonpath)
    load_before = load_average()
    if args.instructions:
        counted = instruction_rows(env)
        if args.json:
            print(json.dumps({"instructions": counted, "load": [load_before, load_average()]}))
            return
        print(f"Python {sys.version.split()[0]}, instructions under callgrind")
        print(f"load average {load_before} at the start, {load_average()} at the end\n")
        print(f"{'statement':<34} {'M instr':>9} {'x deps':>7}")
        for name, row in counted.items():
            print(f"{name:<34} {row['instructions_m']:>9.1f} {row['ratio']:>7.2f}")
        return

    times: dict[str, list[float]] = {name: [] for name, _, _ in STATEMENTS}
    memory: dict[str, list[float]] = {name: [] for name, _, _ in STATEMENTS}
    pydantic: dict[str, bool] = {}
    for _ in range(args.runs):
        for name, setup, statement in STATEMENTS:
            seconds, megabytes, loaded = sample(setup, statement, env)
            times[name].append(seconds)
            memory[name].append(megabytes)
            pydantic[name] = loaded

    reference = statistics.median(times[STATEMENTS[0][0]])
    rows = {
        name: {
            "ms": statistics.median(times[name]) * 1000,
            "ratio": statistics.median(times[name]) / reference,
            "rss_mb": statistics.median(memory[name]),
            "pydantic": pydantic[name],
        }
        for name, _, _ in STATEMENTS
    }
    # Whole pytest runs load the plugin that the installed metadata names.
    plugin = plugin_cost(args.runs) if not args.pythonpath else None
    if args.json:
        load = [load_before, load_average()]
        print(json.dumps({"imports": rows, "pytest_plugin": plugin, "load": load}, indent=2))
        return
    print(f"Python {sys.version.split()[0]}, median of {args.runs} fresh interpreters each")
    print(f"load average {load_before} at the start, {load_average()} at the end\n")
    print(f"{'statement':<34} {'ms':>8} {'x deps':>7} {'RSS MB':>7}  pydantic")
    for name, row in rows.items():
        print(
            f"{name:<34} {row['ms']:>8.1f} {row['ratio']:>7.2f} {row['rss_mb']:>7.1f}"
            f"  {'yes' if row['pydantic'] else 'no'}"
        )
    if plugin is None:
        return
    print(
        f"\npytest, empty project: {plugin['with_ms']:.0f} ms with the plugin, "
        f"{plugin['without_ms']:.0f} ms with -p no:agentstream: "
        f"the plugin costs {plugin['cost_ms']:.0f} ms per run"
    )


if __name__ == "__main__":
    main()
