"""Every example in examples/ runs and does what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_wire_resume_loses_and_repeats_nothing() -> None:
    result = run("wire_resume.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "received 8 events over 2 connections: none lost, none repeated" in result.stdout
    assert "resuming from 3" in result.stdout
