"""agentstream.contrib.flask with a real Flask app (tests/flask_app.py), in-process.

The ``flask`` commands as processes, the reloader and gunicorn are in
test_flask_cli.py.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, current_app

from agentstream import MemoryCursorStore, SQLiteCursorStore, signals
from agentstream.contrib import _common
from agentstream.contrib.flask import AgentStream
from agentstream.cursors import RedisCursorStore
from agentstream.errors import ConfigurationError

from . import flask_app
from .redis_server import RedisServer
from .server_fixtures import ServerFactory


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AGENTSTREAM_API_KEY", "AGENTSTREAM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def make_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask("t", instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    return app


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_init_app_refuses_a_second_registration(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    extension = AgentStream(app)
    with pytest.raises(RuntimeError, match="already registered"):
        extension.init_app(app)
    with pytest.raises(RuntimeError, match="already registered"):
        AgentStream(app)


@pytest.mark.usefixtures("no_env")
def test_state_is_per_app_and_never_on_the_extension(tmp_path: Path) -> None:
    extension = AgentStream()
    first = make_app(tmp_path, AGENTSTREAM_BASE_URL="http://127.0.0.1:1", AGENTSTREAM_API_KEY="a")
    second = make_app(tmp_path, AGENTSTREAM_BASE_URL="http://127.0.0.1:2", AGENTSTREAM_API_KEY="b")
    extension.init_app(first)
    extension.init_app(second)
    assert not hasattr(extension, "app")
    with first.app_context():
        assert extension.client.base_url == "http://127.0.0.1:1"
        assert extension.client is extension.client
    with second.app_context():
        assert extension.client.base_url == "http://127.0.0.1:2"
    assert first.extensions["agentstream"].extension is extension
    with pytest.raises(RuntimeError, match="application context"):
        extension.client  # noqa: B018
    other = AgentStream()
    with first.app_context(), pytest.raises(RuntimeError, match="init_app"):
        other.client  # noqa: B018


@pytest.mark.usefixtures("no_env")
def test_config_keys_get_defaults_and_a_missing_key_fails_only_when_connecting(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path)
    extension = AgentStream(app)
    assert "AGENTSTREAM_API_KEY" in app.config  # setdefault: documented and visible
    settings = extension.settings(app)
    assert settings.base_url == "http://127.0.0.1:8787"
    assert settings.name == "default"
    assert "AGENTSTREAM_API_KEY" not in repr(settings)
    with app.app_context(), pytest.raises(ConfigurationError, match="AGENTSTREAM_API_KEY"):
        extension.client  # noqa: B018
    store = extension.cursor_store(app)  # default: SQLite in the instance folder
    assert isinstance(store, SQLiteCursorStore)
    assert Path(store.path) == tmp_path / "instance" / "agentstream.sqlite3"
    store.close()


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"AGENTSTREAM_WORKERS": 0}, "AGENTSTREAM_WORKERS must be at least 1"),
        ({"AGENTSTREAM_BASE_URL": "127.0.0.1:8787"}, "AGENTSTREAM_BASE_URL must be an http"),
        ({"AGENTSTREAM_BASE_URL": "http://u:pw1234@h"}, "credentials"),
        ({"AGENTSTREAM_HEARTBEAT_SECONDS": "30"}, "AGENTSTREAM_HEARTBEAT_SECONDS must be a int"),
        ({"AGENTSTREAM_EVENT_TYPES": "task.shipped"}, "list of event types"),
        ({"AGENTSTREAM_START_LISTENER": "perhaps"}, "true or false"),
    ],
)
def test_a_wrong_config_value_is_a_clear_error_at_init_app(
    tmp_path: Path, config: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AgentStream(make_app(tmp_path, **config))
    assert words in str(caught.value)
    assert "pw1234" not in str(caught.value)


def test_cursor_stores_from_config_strings(tmp_path: Path) -> None:
    assert isinstance(_common.cursor_store_from_url("memory"), MemoryCursorStore)
    store = _common.cursor_store_from_url(f"sqlite:///{tmp_path}/a/cursors.sqlite3")
    assert isinstance(store, SQLiteCursorStore)
    assert Path(store.path) == tmp_path / "a" / "cursors.sqlite3"
    store.close()
    given = MemoryCursorStore()
    assert _common.cursor_store_from_url(given) is given
    with pytest.raises(ConfigurationError) as caught:
        _common.cursor_store_from_url("postgres://user:hunter2@db/x")
    assert "hunter2" not in str(caught.value)
    assert "sqlite:///" in str(caught.value)
    with pytest.raises(ConfigurationError, match="sqlite:///relative/path"):
        _common.cursor_store_from_url("sqlite://cursors.db")


def test_a_redis_url_is_a_redis_store_that_never_shows_its_password(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url.replace("redis://", "redis://:sekret@", 1)
    store = _common.cursor_store_from_url(redis_server.url)
    assert isinstance(store, RedisCursorStore)
    try:
        token = store.acquire("flask-config", "me", 5.0)
        assert token is not None
        store.release("flask-config", "me", token)
    finally:
        store.close()
    with_password = _common.cursor_store_from_url(url)
    try:
        assert "sekret" not in repr(with_password)
    finally:
        with_password.close()


def test_a_view_uses_the_extensions_client(tmp_path: Path) -> None:
    app = flask_app.create_app({"AGENTSTREAM_API_KEY": "k", "TESTING": True})
    response = app.test_client().get("/")
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["base_url"] == "http://127.0.0.1:8787"


def test_handlers_run_in_a_fresh_app_context_per_event(
    tmp_path: Path, servers: ServerFactory
) -> None:
    server = servers.start()
    log = tmp_path / "events.jsonl"
    app = flask_app.create_app(
        {
            "AGENTSTREAM_BASE_URL": server.url,
            "AGENTSTREAM_API_KEY": server.api_key,
            "AGENTSTREAM_CURSOR_STORE": f"sqlite:///{tmp_path}/cursors.sqlite3",
            "AGENTSTREAM_LISTENER_NAME": "in-process-test",
            "EVENTS_LOG": str(log),
        }
    )
    listener = flask_app.agentstream.create_listener(app, heartbeat_seconds=1)
    connected = threading.Event()
    with signals.connected.connected_to(lambda *a, **k: connected.set(), sender=listener):
        listener.start()
        try:
            assert connected.wait(10)
            api = servers.api(server)
            task = api.create_task("ship it", eventsStreaming=True)
            with api.stream(taskId=task["id"]) as reader:
                frames = reader.rest()
            assert listener.wait_handled(frames[-1].sequence, timeout=10)
        finally:
            listener.stop(10)
    seen = lines(log)
    handlers = [line for line in seen if "handled" in line]
    assert [line["handled"] for line in handlers] == [f.id for f in frames]
    assert all(line["fresh_g"] and line["app"] == "tests.flask_app" for line in handlers)
    # Each event's app context was torn down right after its handlers.
    order = [
        ("handled", x["handled"]) if "handled" in x else ("teardown", x["teardown"]) for x in seen
    ]
    assert order == [(kind, f.id) for f in frames for kind in ("handled", "teardown")]
    assert SQLiteCursorStore(tmp_path / "cursors.sqlite3").load("in-process-test") == frames[-1].id
    with pytest.raises(RuntimeError):
        current_app.name  # noqa: B018 - no context leaked into this thread


def test_in_process_start_is_refused_with_a_store_the_workers_do_not_share(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = flask_app.create_app(
        {
            "AGENTSTREAM_API_KEY": "k",
            "AGENTSTREAM_START_LISTENER": True,
            "AGENTSTREAM_CURSOR_STORE": "memory",
        }
    )
    with caplog.at_level(logging.ERROR, logger="agentstream.contrib.flask"):
        client = app.test_client()
        assert client.get("/").status_code == 200
        assert client.get("/").status_code == 200
    refusals = [r.getMessage() for r in caplog.records]
    assert len(refusals) == 1, refusals  # once per process, not per request
    assert "MemoryCursorStore" in refusals[0]
    assert "flask agentstream listen" in refusals[0]
    with app.app_context():
        assert flask_app.agentstream.listener is None


def test_in_process_start_at_the_first_request_with_a_shared_lease_store(
    tmp_path: Path, servers: ServerFactory
) -> None:
    server = servers.start()
    log = tmp_path / "events.jsonl"
    app = flask_app.create_app(
        {
            "AGENTSTREAM_BASE_URL": server.url,
            "AGENTSTREAM_API_KEY": server.api_key,
            "AGENTSTREAM_START_LISTENER": True,
            "AGENTSTREAM_CURSOR_STORE": f"sqlite:///{tmp_path}/cursors.sqlite3",
            "EVENTS_LOG": str(log),
        }
    )
    with app.app_context():
        assert flask_app.agentstream.listener is None  # init_app started nothing
    client = app.test_client()
    assert client.get("/").status_code == 200
    with app.app_context():
        listener = flask_app.agentstream.listener
    assert listener is not None
    try:
        assert client.get("/").status_code == 200
        with app.app_context():
            assert flask_app.agentstream.listener is listener  # one per process
        assert server.app.wait_open_streams(1, timeout=10)
        api = servers.api(server)
        task = api.create_task("in process", eventsStreaming=True)
        with api.stream(taskId=task["id"]) as reader:
            frames = reader.rest()
        assert listener.wait_handled(frames[-1].sequence, timeout=10)
    finally:
        listener.stop(10)
    assert [line["handled"] for line in lines(log) if "handled" in line] == [f.id for f in frames]


def test_in_process_start_never_happens_under_app_testing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = flask_app.create_app(
        {"AGENTSTREAM_API_KEY": "k", "AGENTSTREAM_START_LISTENER": True, "TESTING": True}
    )
    with caplog.at_level(logging.DEBUG, logger="agentstream"):
        assert app.test_client().get("/").status_code == 200
    assert not caplog.records
    with app.app_context():
        assert flask_app.agentstream.listener is None


def test_importing_agentstream_imports_no_framework_and_needs_only_the_core() -> None:
    code = (
        "import sys, agentstream, agentstream.contrib\n"
        "from importlib.metadata import requires\n"
        "loaded = sorted(m for m in ('flask', 'django', 'werkzeug', 'click', 'redis', 'gevent')"
        " if m in sys.modules)\n"
        "core = sorted(r.split('>')[0].split('=')[0].split('<')[0] for r in requires('agentstream')"
        " if 'extra ==' not in r)\n"
        "print(loaded, core)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] ['blinker', 'pydantic', 'requests', 'sseclient-py']"


def test_flask_agentstream_listen_with_a_bad_key_exits_non_zero_with_the_reason(
    tmp_path: Path, servers: ServerFactory
) -> None:
    server = servers.start()
    app = flask_app.create_app(
        {
            "AGENTSTREAM_BASE_URL": server.url,
            "AGENTSTREAM_API_KEY": "wrong-key",
            "AGENTSTREAM_CURSOR_STORE": "memory",
        }
    )
    result = app.test_cli_runner().invoke(args=["agentstream", "listen"])
    assert result.exit_code != 0
    assert "401" in result.output
    assert "wrong-key" not in result.output


def test_flask_agentstream_tail_prints_a_tasks_events(servers: ServerFactory) -> None:
    server = servers.start()
    app = flask_app.create_app(
        {"AGENTSTREAM_BASE_URL": server.url, "AGENTSTREAM_API_KEY": server.api_key}
    )
    task = servers.api(server).create_task("tail me", eventsStreaming=True)
    result = app.test_cli_runner().invoke(
        args=["agentstream", "tail", "--task", task["id"], "--json"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines[0]["type"] == "task.created"
    assert lines[-1]["type"] == "task.finished"
