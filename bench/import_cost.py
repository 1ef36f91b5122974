"""What importing agentstream costs, beside what importing its dependencies costs.

Each sample is a fresh interpreter that times one import statement from the
inside (``time.perf_counter`` around it, so interpreter start-up is not
counted) and reports the growth of its peak RSS. The statements are run
round-robin, so a noisy neighbour slows them all alike; the report gives the
median of ``--runs`` samples and each statement's ratio to the four
dependencies' import (requests, sseclient-py, pydantic, blinker) in the same run.

It then times whole pytest runs of an empty project with and without
agentstream's plugin (``-p no:agentstream``), which pytest loads in every run
wherever agentstream is installed.

    .venv/bin/python bench/import_cost.py            # 21 samples each
    .venv/bin/python bench/import_cost.py --runs 5   # quicker
    .venv/bin/python bench/import_cost.py --pythonpath /path/to/other/checkout

``--pythonpath`` measures another checkout's agentstream (put first on the
path) with this environment's dependencies: the "before" of a change.

Targets (issue 17): ``import agentstream`` <= 1.15 x the dependencies;
``import agentstream.sse`` imports no pydantic (the last column); the plugin
costs <= 50 ms per pytest run.
"""

from __future__ import annotations

import argparse
import json
import os
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
        "pytest plugin (pytest loaded)",
        "import pytest",
        # before issue 17 the plugin was agentstream.testing itself
        "try:\n    import agentstream.pytest_plugin\nexcept ImportError:\n"
        "    import agentstream.testing",
    ),
]

CHILD = """
import resource, sys, time
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
        [sys.executable, "-c", CHILD, setup, statement],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tempfile.gettempdir(),  # not a checkout: its agentstream would come first
    ).stdout.split()
    return float(out[0]), float(out[1]), out[2] == "1"


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
    args = parser.parse_args()
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = os.path.abspath(args.pythonpath)

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
        print(json.dumps({"imports": rows, "pytest_plugin": plugin}, indent=2))
        return
    print(f"Python {sys.version.split()[0]}, median of {args.runs} fresh interpreters each\n")
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
