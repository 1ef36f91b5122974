"""The public API's types catch a user's mistakes: mypy and pyright on tests/typing_cases.py.

``typing_cases.py`` marks each line where a checker must report an error
with ``# error: <mypy code>``. mypy (strict, the project's configuration)
must report exactly those lines with those codes; pyright, what most editors
run, must report errors on exactly those lines. Every other line is a use the
checkers must accept, ``assert_type`` calls included.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "typing_cases.py"
MARK = re.compile(r"#\s*error:\s*([a-z-]+)\s*$")
MYPY_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


def expected() -> set[tuple[int, str]]:
    marked = set()
    for number, line in enumerate(CASES.read_text().splitlines(), start=1):
        found = MARK.search(line)
        if found:
            marked.add((number, found[1]))
    return marked


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=ROOT,  # the project's mypy configuration, and agentstream from the source tree
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=240,
        check=False,
    )


def test_the_cases_mark_mistakes_of_every_kind() -> None:
    codes = {code for _, code in expected()}
    assert {"attr-defined", "arg-type", "type-var"} <= codes
    assert "type: ignore" not in CASES.read_text()


def test_mypy_reports_exactly_the_marked_lines() -> None:
    done = run([sys.executable, "-m", "mypy", "--no-error-summary", str(CASES)])
    reported = set()
    for line in done.stdout.splitlines():
        found = MYPY_LINE.match(line)
        if found:
            assert Path(found["file"]).name == CASES.name, line
            reported.add((int(found["line"]), found["code"]))
        else:
            assert ": note: " in line, line  # notes explain an error; anything else is a surprise
    assert reported == expected(), done.stdout + done.stderr
