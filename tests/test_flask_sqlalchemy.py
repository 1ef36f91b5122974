"""Flask-SQLAlchemy in handlers: the session works in each event's app context
and is removed after it, so a failed handler's half-done work never leaks into
the next event."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from agentstream import Registry, TaskEvent, signals
from agentstream.contrib.flask import AgentStream

from .server_fixtures import ServerFactory


def test_a_handlers_session_is_fresh_per_event_and_cleaned_up_after_it(
    tmp_path: Path, servers: ServerFactory
) -> None:
    server = servers.start()
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/app.sqlite3",
        AGENTSTREAM_BASE_URL=server.url,
        AGENTSTREAM_API_KEY=server.api_key,
        AGENTSTREAM_CURSOR_STORE=f"sqlite:///{tmp_path}/cursors.sqlite3",
        AGENTSTREAM_LISTENER_NAME="orm",
    )
    db = SQLAlchemy(app)

    class Chunk(db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.String, primary_key=True)
        text = db.Column(db.String)

    with app.app_context():
        db.create_all()
    registry = Registry()
    ext = AgentStream(app, registry=registry)
    sessions: list[Any] = []  # kept alive, so that their ids stay distinct
    leaked: list[int] = []

    @registry.on("message.chunk")
    def store(event: TaskEvent) -> None:
        session = db.session()
        sessions.append(session)
        leaked.append(len(session.new))  # anything left pending by an earlier event?
        session.add(Chunk(id=event.id, text=str(event.data)))
        if event.data == "part 1":
            raise RuntimeError("fails before commit")  # its row must not leak on
        db.session.commit()

    listener = ext.create_listener(app)
    connected = threading.Event()

    def on_connected(sender: Any, **kwargs: Any) -> None:
        connected.set()

    with signals.connected.connected_to(on_connected, sender=listener):
        listener.start()
        try:
            assert connected.wait(10)
            task = server.store.create_task("t", events_streaming=True)
            last = None
            for n in range(3):
                last = server.store.publish("message.chunk", f"part {n}", str(task["id"]))
            assert last is not None
            assert listener.wait_handled(last["sequence"], timeout=10)
        finally:
            listener.stop(10)
    assert leaked == [0, 0, 0]  # part 1's uncommitted row was thrown away with its session
    assert len({id(s) for s in sessions}) == 3  # a session per event, removed at teardown
    with app.app_context():
        assert sorted(row.text for row in Chunk.query.all()) == ["part 0", "part 2"]
    assert listener.health().handler_failures == 1
