"""agentstream.contrib.django in a real project (tests/django_project), in-process.

Checks, handler discovery, nothing started by Django's start-up or by
``check``, the listener the settings describe handling a simulated task on a
real reference server with Django's connection rules around each event, and
``agentstream_tail``. The ``manage.py`` subprocesses are in
test_django_commands.py.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest

from .django_project import setup

setup()

from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402

from agentstream import ListenerState, parse_event, signals  # noqa: E402
from agentstream.contrib.django import checks, conf  # noqa: E402
from agentstream.contrib.django.models import ListenerCursor  # noqa: E402
from agentstream.contrib.django.runner import build_listener  # noqa: E402
from agentstream.contrib.django.store import DjangoCursorStore  # noqa: E402
from agentstream.server import ReferenceServer  # noqa: E402

from .django_project.shipments.agentstream_handlers import record  # noqa: E402
from .django_project.shipments.models import HandledEvent  # noqa: E402
from .django_settings_type import SettingsWrapper  # noqa: E402
from .server_fixtures import ServerFactory, wait_until  # noqa: E402


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSTREAM_API_KEY", raising=False)
    monkeypatch.delenv("AGENTSTREAM_BASE_URL", raising=False)


@pytest.fixture
def server(servers: ServerFactory, settings: SettingsWrapper) -> ReferenceServer:
    """A reference server, and AGENTSTREAM pointing at it."""
    srv = servers.start()
    settings.AGENTSTREAM = {
        **settings.AGENTSTREAM,
        "BASE_URL": srv.url,
        "API_KEY": srv.api_key,
    }
    return srv


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


@pytest.mark.usefixtures("no_env_key")
def test_a_missing_key_is_a_check_warning_and_nothing_else(settings: SettingsWrapper) -> None:
    messages = checks.check_settings()
    assert ids(messages) == ["agentstream.W001"]
    assert all(m.is_serious() is False for m in messages)
    assert "AGENTSTREAM_API_KEY" in (messages[0].hint or "")


@pytest.mark.usefixtures("no_env_key")
@pytest.mark.parametrize(
    ("extra", "expected_id", "words"),
    [
        ({"BASE_URL": "ftp://example.com"}, "agentstream.W002", "http:// or https://"),
        ({"BASE_URL": "http://u:secretpw@example.com"}, "agentstream.W002", "credentials"),
        ({"WORKERS": 0}, "agentstream.W002", "WORKERS"),
        ({"HEARTBEAT_SECONDS": 900}, "agentstream.W002", "1 to 300"),
        ({"EVENT_TYPES": ["task.shiped"]}, "agentstream.W002", "unknown event type"),
        ({"CURSOR_STORE": 42}, "agentstream.W002", "CURSOR_STORE"),
        ({"REGISTRY": "agentstream.Client"}, "agentstream.W002", "Registry"),
        ({"DATABASE": "other"}, "agentstream.W002", "DATABASES"),
        ({"API_KEYS": "x"}, "agentstream.W003", "API_KEYS"),
        ({"START_LISTENER": True}, "agentstream.W004", "agentstream_listen"),
    ],
)
def test_a_wrong_setting_is_a_check_warning_that_names_it(
    settings: SettingsWrapper, extra: dict[str, Any], expected_id: str, words: str
) -> None:
    settings.AGENTSTREAM = {**settings.AGENTSTREAM, "API_KEY": "k", **extra}
    messages = checks.check_settings()
    assert expected_id in ids(messages)
    found = next(m for m in messages if m.id == expected_id)
    assert words in found.msg + (found.hint or "")
    assert "secretpw" not in found.msg
    assert not any(m.is_serious() for m in messages)


@pytest.mark.usefixtures("no_env_key")
def test_manage_check_runs_without_a_key_and_starts_nothing() -> None:
    before = set(threading.enumerate())
    err = io.StringIO()
    call_command("check", stderr=err, stdout=io.StringIO())
    assert "agentstream.W001" in err.getvalue()
    started = [t for t in threading.enumerate() if t not in before]
    assert not started, started


def test_ready_discovered_the_apps_handlers_module() -> None:
    event = parse_event(
        json.dumps(
            {
                "id": "evt_1",
                "type": "task.shipped",
                "sequence": 1,
                "occurredAt": "2026-11-20T10:00:00.123Z",
                "data": {},
            }
        )
    )
    assert conf.registry().handlers_for(event) == (record,)
    assert not [t for t in threading.enumerate() if t.name.startswith("agentstream-")]


def test_listen_without_a_key_is_a_command_error(
    no_env_key: None, settings: SettingsWrapper
) -> None:
    with pytest.raises(CommandError, match="no agentstream API key"):
        call_command("agentstream_listen")


@pytest.mark.django_db(transaction=True)
def test_the_listener_writes_each_event_of_a_task_to_a_model(
    server: ReferenceServer, servers: ServerFactory
) -> None:
    client, listener = build_listener(heartbeat_seconds=1)
    assert isinstance(listener.cursor_store, DjangoCursorStore)
    connected = threading.Event()
    with client, signals.connected.connected_to(lambda *a, **k: connected.set(), sender=listener):
        listener.start()
        try:
            assert connected.wait(10)
            api = servers.api(server)
            task = api.create_task("record me", eventsStreaming=True)
            with api.stream(taskId=task["id"]) as reader:
                frames = reader.rest()
            assert frames[-1].event == "task.finished"
            assert listener.wait_handled(frames[-1].sequence, timeout=10)
        finally:
            listener.stop(10)
    rows = list(HandledEvent.objects.filter(task_id=task["id"]).order_by("sequence"))
    assert [r.event_id for r in rows] == [f.id for f in frames]
    # Django's connection rules ran around every event: each handler call began
    # with its connection closed (CONN_MAX_AGE = 0), so none leaks or goes stale.
    assert all(r.fresh_connection for r in rows)
    assert ListenerCursor.objects.get(name="shipments").cursor == frames[-1].id


@pytest.mark.django_db
def test_tail_prints_a_tasks_events(server: ReferenceServer, servers: ServerFactory) -> None:
    task = servers.api(server).create_task("tail me", eventsStreaming=True)
    out = io.StringIO()
    call_command("agentstream_tail", "--task", task["id"], "--json", stdout=out)
    lines = out.getvalue().splitlines()
    assert '"type":"task.created"' in lines[0]
    assert '"type":"task.finished"' in lines[-1]


@pytest.mark.django_db(transaction=True)
def test_two_listeners_on_one_name_share_the_database_lease_one_consumes(
    server: ReferenceServer, servers: ServerFactory
) -> None:
    (first_client, first), (second_client, second) = build_listener(), build_listener()
    with first_client, second_client:
        first.start()
        second.start()
        try:
            assert server.app.wait_open_streams(1, timeout=10)
            assert wait_until(
                lambda: (
                    {first.state, second.state} == {ListenerState.CONNECTED, ListenerState.STANDBY}
                ),
                timeout=10,
            )
            active = first if first.state == ListenerState.CONNECTED else second
            api = servers.api(server)
            task = api.create_task("one consumer", eventsStreaming=True)
            with api.stream(taskId=task["id"]) as reader:
                frames = reader.rest()
            assert active.wait_handled(frames[-1].sequence, timeout=10)
            assert server.app.open_streams == 1
        finally:
            first.stop(10)
            second.stop(10)
    handled = first.health().events_handled + second.health().events_handled
    assert handled == len(frames)  # each event once, by the holder only
    assert HandledEvent.objects.filter(task_id=task["id"]).count() == len(frames)
