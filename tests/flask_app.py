"""A real Flask app for the integration's tests (in-process, under
``flask agentstream listen``, ``flask run --debug`` and gunicorn).

Configuration comes from ``FLASK_*`` environment variables
(``app.config.from_prefixed_env()``): ``FLASK_AGENTSTREAM_CURSOR_STORE``,
``FLASK_EVENTS_LOG`` (where handlers write one JSON line per event), ...
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Optional

from flask import Flask, current_app, g

from agentstream import Registry, TaskEvent
from agentstream.contrib.flask import AgentStream

registry = Registry()
agentstream = AgentStream(registry=registry)


def write(line: dict[str, Any]) -> None:
    path = current_app.config.get("EVENTS_LOG")
    if path:
        with open(path, "a") as log:
            log.write(json.dumps(line) + "\n")


@registry.on_event
def record(event: TaskEvent) -> None:
    """Uses the app context: ``current_app``'s config and a fresh ``g`` per event."""
    write(
        {
            "handled": event.id,
            "sequence": event.sequence,
            "app": current_app.config["APP_LABEL"],
            "fresh_g": "event_id" not in g,
            "pid": os.getpid(),
        }
    )
    g.event_id = event.id


def create_app(config: Optional[dict[str, Any]] = None) -> Flask:
    app = Flask(__name__)
    app.config["APP_LABEL"] = "tests.flask_app"
    app.config.from_prefixed_env()
    app.config.update(config or {})
    agentstream.init_app(app)

    @app.teardown_appcontext
    def teardown(exc: Optional[BaseException]) -> None:
        # Where Flask-SQLAlchemy removes its session: after each event too.
        if "event_id" in g:
            write({"teardown": g.event_id})

    @app.get("/")
    def index() -> dict[str, Any]:
        return {"pid": os.getpid(), "base_url": agentstream.client.base_url}

    return app


if os.environ.get("FLASK_APP_LOG_TO_STDERR"):
    logging.basicConfig(
        level=logging.INFO, format="%(process)d %(levelname)s %(name)s: %(message)s"
    )
