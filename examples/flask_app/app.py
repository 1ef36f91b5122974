"""A Flask app whose handlers record finished tasks in its own SQLite database.

    flask --app examples/flask_app/app.py init-db
    flask --app examples/flask_app/app.py agentstream listen   # the consumer, its own process
    flask --app examples/flask_app/app.py run                  # the web app: GET /tasks

The server and key come from AGENTSTREAM_BASE_URL and AGENTSTREAM_API_KEY
(`agentstream serve` prints both). The cursor is kept in the instance folder,
so a restarted `agentstream listen` resumes where it stopped.

The same handler also receives webhooks, instead of the listener or beside it
(each event handled once either way: the claims are in the cursor's SQLite file):

    agentstream serve --webhook http://127.0.0.1:5000/agentstream/webhooks   # prints a secret
    FLASK_AGENTSTREAM_WEBHOOK_SECRETS=whsec_... flask --app examples/flask_app/app.py run
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Optional

from flask import Flask, current_app, g

from agentstream import TaskEvent, on
from agentstream.contrib.flask import AgentStream

agentstream = AgentStream()

SCHEMA = """
CREATE TABLE IF NOT EXISTS finished_task (
    event_id TEXT PRIMARY KEY,  -- redelivered after a crash? the same row
    task_id TEXT NOT NULL,
    status TEXT NOT NULL,
    prompt TEXT NOT NULL
)
"""


def db() -> sqlite3.Connection:
    """This app context's connection (closed at its teardown: after each event too)."""
    if "db" not in g:
        g.db = sqlite3.connect(current_app.config["DATABASE"])
    connection: sqlite3.Connection = g.db
    return connection


@on("task.finished")
def record_finished(event: TaskEvent) -> None:
    with db() as connection:
        connection.execute(
            "INSERT OR IGNORE INTO finished_task VALUES (?, ?, ?, ?)",
            (event.id, event.task_id, event.data.status.value, event.data.prompt),
        )
    current_app.logger.info("task %s finished: %s", event.task_id, event.data.status.value)


def create_app(config: Optional[dict[str, Any]] = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config["DATABASE"] = f"{app.instance_path}/tasks.sqlite3"
    app.config["AGENTSTREAM_LISTENER_NAME"] = "finished-tasks"
    app.config["AGENTSTREAM_EVENT_TYPES"] = ["task.finished"]
    app.config.from_prefixed_env()  # FLASK_DATABASE=..., FLASK_AGENTSTREAM_CURSOR_STORE=...
    app.config.update(config or {})
    os.makedirs(os.path.dirname(app.config["DATABASE"]), exist_ok=True)
    agentstream.init_app(app)

    @app.teardown_appcontext
    def close_db(exc: Optional[BaseException]) -> None:
        connection = g.pop("db", None)
        if connection is not None:
            connection.close()

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the table."""
        with db() as connection:
            connection.execute(SCHEMA)

    @app.get("/tasks")
    def tasks() -> dict[str, Any]:
        rows = db().execute("SELECT task_id, status, prompt FROM finished_task").fetchall()
        return {"tasks": [{"task_id": t, "status": s, "prompt": p} for t, s, p in rows]}

    return app
