"""A second process using a cursor store, driven line by line from a test.

    python tests/store_child.py '<json spec>'

The spec is ``{"kind": "sqlite"|"file", "path": ...}``,
``{"kind": "redis", "url": ..., "prefix": ...}`` or ``{"kind": "django",
"db": ...}`` (the test project on that database). The child opens the store,
prints ``ready`` (or ``error: <message>`` and exits 3), then answers one JSON
line per command read on stdin: ``["acquire", name, holder, ttl]`` -> token
or null; ``["save_fenced", name, cursor, token]`` -> "ok" or "lost";
``["load", name]`` -> the cursor. End of input ends it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from agentstream.cursors import FileCursorStore, RedisCursorStore, SQLiteCursorStore
from agentstream.errors import ConfigurationError, LeaseLostError


def open_store(spec: dict[str, Any]) -> Any:
    if spec["kind"] == "sqlite":
        return SQLiteCursorStore(spec["path"])
    if spec["kind"] == "file":
        return FileCursorStore(spec["path"])
    if spec["kind"] == "redis":
        return RedisCursorStore(spec["url"], prefix=spec["prefix"])
    if spec["kind"] == "django":  # the test project, on the parent's test database
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        os.environ["DJANGO_PROJECT_DB"] = spec["db"]
        from tests.django_project import setup

        setup()
        from agentstream.contrib.django.store import DjangoCursorStore

        return DjangoCursorStore()
    raise ValueError(spec["kind"])


def answer(store: Any, command: list[Any]) -> Any:
    if command[0] == "acquire":
        return store.acquire(command[1], command[2], float(command[3]))
    if command[0] == "save_fenced":
        try:
            store.save_fenced(command[1], command[2], int(command[3]))
        except LeaseLostError:
            return "lost"
        return "ok"
    if command[0] == "load":
        return store.load(command[1])
    raise ValueError(command[0])


def main() -> int:
    try:
        store = open_store(json.loads(sys.argv[1]))
    except ConfigurationError as exc:
        print(f"error: {exc}", flush=True)
        return 3
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(answer(store, json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
