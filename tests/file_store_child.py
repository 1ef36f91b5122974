"""A process that opens a FileCursorStore, for tests/test_file_cursor_store.py.

python tests/file_store_child.py PATH hold
    opens the store, prints "ready", holds it until stdin closes.
python tests/file_store_child.py PATH crash-mid-save CURSOR
    saves CURSOR but dies (os._exit) after the temporary file is written
    and fsynced, before it replaces the file: what a power cut there leaves.
"""

from __future__ import annotations

import os
import sys

from agentstream.cursors import FileCursorStore
from agentstream.errors import ConfigurationError


def main() -> int:
    path, mode = sys.argv[1], sys.argv[2]
    try:
        store = FileCursorStore(path)
    except ConfigurationError as exc:
        print(f"error: {exc}", flush=True)
        return 3
    if mode == "hold":
        print("ready", flush=True)
        sys.stdin.read()
        return 0
    if mode == "crash-mid-save":

        def die(src: object, dst: object) -> None:
            os._exit(9)

        os.replace = die  # type: ignore[assignment]
        store.save("orders", sys.argv[3])
    return 1


if __name__ == "__main__":
    sys.exit(main())
