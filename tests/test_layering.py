"""The layers of DESIGN.md import only downwards (checked on the source)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "agentstream"

# module -> agentstream modules it must never import, at any level (also
# under TYPE_CHECKING): what it needs of a higher layer comes as a protocol.
FORBIDDEN = {
    "sse": {"models", "stream", "dispatch", "listener", "client", "tasks"},
    "models": {"stream", "dispatch", "listener", "client", "tasks"},
    "stream": {"dispatch", "listener", "client", "tasks"},
    "dispatch": {"stream", "listener", "client", "tasks"},
    "listener": {"client", "tasks"},
    "tasks": {"client", "listener"},
}


def imported_modules(path: Path, source: Optional[str] = None) -> set[str]:
    """The agentstream modules a file imports (first component after the package)."""
    tree = ast.parse(path.read_text() if source is None else source)
    found: set[str] = set()
    depth = len(path.relative_to(PACKAGE).parts) - 1  # sse/_source.py -> 1
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                up = node.level - 1
                if up > depth:
                    continue
                base = list(path.relative_to(PACKAGE).parts[: depth - up])
                target = base + (node.module.split(".") if node.module else [])
                names = [target] if node.module else [[*base, a.name] for a in node.names]
                found.update(parts[0] for parts in names if parts)
            elif node.module and node.module.startswith("agentstream."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("agentstream."):
                    found.add(alias.name.split(".")[1])
    return found


def sources(module: str) -> list[Path]:
    package = PACKAGE / module
    if package.is_dir():
        return sorted(package.rglob("*.py"))
    return [PACKAGE / f"{module}.py"] if (PACKAGE / f"{module}.py").exists() else []


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_a_layer_does_not_import_the_layers_above_it(module: str) -> None:
    files = sources(module)
    assert files, f"no source for agentstream.{module}"
    for path in files:
        wrong = imported_modules(path) & FORBIDDEN[module]
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)}"


def test_the_checker_sees_an_upward_import() -> None:
    # The check above must be able to fail: the import forms it must see.
    listener = PACKAGE / "listener.py"
    assert "client" not in imported_modules(listener)
    code = "from .client import Client\nfrom . import tasks\nimport agentstream.stream\n"
    assert imported_modules(listener, code) == {"client", "tasks", "stream"}
    assert imported_modules(PACKAGE / "sse" / "_source.py", "from ..models import X\n") == {
        "models"
    }
