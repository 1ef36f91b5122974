"""The test project's ``manage.py`` as real processes against a reference server.

Each Django process costs about a second to start, so there are two:
``migrate`` with no key set (the checks warn, it runs), and an
``agentstream_listen`` that handles a simulated task and stops on SIGTERM.
``check`` itself runs in-process in test_django.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from .child_output import read_line
from .server_fixtures import ServerFactory, wait_until

MANAGE = Path(__file__).resolve().parent / "django_project" / "manage.py"


def environment(db: Path, server: Any = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSTREAM_", "DJANGO_"))}
    env["DJANGO_PROJECT_DB"] = str(db)
    if server is not None:
        env["AGENTSTREAM_BASE_URL"] = server.url
        env["AGENTSTREAM_API_KEY"] = server.api_key
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MANAGE), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def test_agentstream_listen_handles_a_task_and_exits_zero_on_sigterm(
    tmp_path: Path, servers: ServerFactory
) -> None:
    server = servers.start()
    db = tmp_path / "db.sqlite3"
    # No key set: the system checks warn, and migrate runs all the same.
    migrate = manage("migrate", "--no-input", env=environment(db))
    assert migrate.returncode == 0, migrate.stderr
    assert "agentstream.W001" in migrate.stderr
    assert "Applying agentstream.0001_initial... OK" in migrate.stdout
    assert "Applying agentstream.0002_webhookdedup... OK" in migrate.stdout
    env = environment(db, server)
    child = subprocess.Popen(
        [sys.executable, str(MANAGE), "agentstream_listen", "--heartbeat", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    try:
        assert "listening as 'shipments'" in read_line(child.stdout)
        assert "connected, resuming after (live end)" in read_line(child.stdout)
        api = servers.api(server)
        task = api.create_task("ship it", eventsStreaming=True)
        with api.stream(taskId=task["id"]) as reader:
            frames = reader.rest()
        assert frames[-1].event == "task.finished"

        def handled() -> Optional[list[tuple[Any, ...]]]:
            found = rows(db, "SELECT event_id FROM shipments_handledevent ORDER BY sequence")
            return found if len(found) >= len(frames) else None

        assert wait_until(handled, timeout=20)
        child.send_signal(signal.SIGTERM)
        assert child.wait(20) == 0, child.stderr.read() if child.stderr else ""
        assert f"stopped, cursor {frames[-1].id}" in child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
    assert [
        r[0] for r in rows(db, "SELECT event_id FROM shipments_handledevent ORDER BY sequence")
    ] == [f.id for f in frames]
    assert rows(db, "SELECT cursor FROM agentstream_listener_cursor WHERE name = 'shipments'") == [
        (frames[-1].id,)
    ]
