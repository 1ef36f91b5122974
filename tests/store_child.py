"""A second process using a cursor store, driven line by line from a test.

    python tests/store_child.py '<json spec>'

The spec is ``{"kind": "sqlite"|"file", "path": ...}``,
``{"kind": "redis", "url": ..., "prefix": ...}`` or ``{"kind": "django",
"db": ...}`` (the test project on that database); with ``"dedup": true``, the
dedup store of that kind (sqlite, redis, django). The child opens the store,
prints ``ready`` (or ``error: <message>`` and exits 3), then answers one JSON
line per command read on stdin: ``["acquire", name, holder, ttl]`` -> token
or null; ``["save_fenced", name, cursor, token]`` -> "ok" or "lost";
``["load", name]`` -> the cursor; ``["claim", event_id, ttl]`` -> the claim's
value, ``["complete", event_id, retention]`` and ``["release", event_id]``
-> "ok". End of input ends it.
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
    if spec.get("dedup"):
        return open_dedup_store(spec)
    if spec["kind"] == "sqlite":
        return SQLiteCursorStore(spec["path"])
    if spec["kind"] == "file":
        return FileCursorStore(spec["path"])
    if spec["kind"] == "redis":
        return RedisCursorStore(spec["url"], prefix=spec["prefix"])
    if spec["kind"] == "django":
        setup_django(spec["db"])
        from agentstream.contrib.django.store import DjangoCursorStore

        return DjangoCursorStore()
    raise ValueError(spec["kind"])


def open_dedup_store(spec: dict[str, Any]) -> Any:
    from agentstream.webhooks import RedisDedupStore, SQLiteDedupStore

    if spec["kind"] == "sqlite":
        return SQLiteDedupStore(spec["path"])
    if spec["kind"] == "redis":
        return RedisDedupStore(spec["url"], prefix=spec["prefix"])
    if spec["kind"] == "django":
        setup_django(spec["db"])
        from agentstream.contrib.django.store import DjangoDedupStore

        return DjangoDedupStore()
    raise ValueError(spec["kind"])


def setup_django(db: str) -> None:
    """The test project, on the parent's test database."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ["DJANGO_PROJECT_DB"] = db
    from tests.django_project import setup

    setup()


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
    if command[0] == "claim":
        return store.claim(command[1], float(command[2])).value
    if command[0] == "complete":
        store.complete(command[1], float(command[2]))
        return "ok"
    if command[0] == "release":
        store.release(command[1])
        return "ok"
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
