"""Every Python block of the docs compiles; every block marked runnable runs and type-checks.

A block is a fenced ```` ```python ```` block of ``docs/**/*.md`` or
``README.md``. One preceded by the line ``<!-- docs-test: run -->`` is a
whole program: it runs as a script against a reference server (its address
and key in ``AGENTSTREAM_BASE_URL`` / ``AGENTSTREAM_API_KEY``, as
``agentstream serve`` prints them), must exit 0 and print what the marker's
optional ``prints: <text>`` says, and must pass mypy (strict). The others
are fragments (they use names defined elsewhere, or run forever) and are
compiled only. The site itself is built by ``make docs``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from agentstream.server import ReferenceServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
RUN_MARK = re.compile(r"^<!-- docs-test: run(?:; prints: (?P<prints>.+?))? -->$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence
    code: str
    run: bool
    prints: Optional[str]

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found: list[Block] = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            if lines[index].strip() == "```python":
                indent = lines[index][: lines[index].index("`")]  # a block inside a list item
                end = lines.index(indent + "```", index + 1)
                mark = RUN_MARK.match(lines[index - 1].strip()) if index else None
                code = textwrap.dedent("\n".join(lines[index + 1 : end])) + "\n"
                prints = mark["prints"] if mark else None
                found.append(Block(page, index + 1, code, mark is not None, prints))
                index = end
            index += 1
    return found


BLOCKS = blocks()
RUNNABLE = [block for block in BLOCKS if block.run]


def test_the_docs_have_runnable_examples() -> None:
    assert len(RUNNABLE) >= 3
    assert {block.page.name for block in RUNNABLE} >= {"index.md", "events.md", "handlers.md"}


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_block_compiles(block: Block) -> None:
    compile(block.code, block.name, "exec")


@pytest.fixture(scope="module")
def server_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    db = tmp_path_factory.mktemp("docs") / "events.sqlite3"
    with ReferenceServer(db, agent_pace=0.0) as server:
        yield {"AGENTSTREAM_BASE_URL": server.url, "AGENTSTREAM_API_KEY": server.api_key}


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.name for block in RUNNABLE])
def test_runnable_block_runs(block: Block, server_env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, **server_env},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip(), "the example printed nothing"
    if block.prints is not None:
        assert block.prints in done.stdout, done.stdout


def test_runnable_blocks_type_check(tmp_path: Path) -> None:
    files = []
    for number, block in enumerate(RUNNABLE):
        path = tmp_path / f"example_{number}.py"
        path.write_text(f"# {block.name}\n{block.code}", encoding="utf-8")
        files.append(str(path))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", *files],
        capture_output=True,
        text=True,
        cwd=ROOT,  # the project's strict configuration; agentstream from the source tree
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
