"""agentstream.testing and the pytest plugin: what a user testing their own handlers relies on."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from importlib.metadata import distribution
from pathlib import Path

import pytest

from agentstream import (
    EventType,
    MessageChunkEvent,
    Registry,
    TaskEvent,
    TaskShippedData,
    TaskShippedEvent,
    parse_event,
)
from agentstream.testing import EventRecorder, make_event


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- importable without pytest ----------------------------------------------------


def test_the_helpers_import_no_pytest() -> None:
    result = python(
        "import sys; import agentstream.testing; "
        "print(sorted(m for m in sys.modules if m == 'pytest' or m.startswith('_pytest')))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_helpers_work_where_pytest_is_not_installed() -> None:
    # None in sys.modules makes `import pytest` fail as it does without pytest.
    result = python(
        "import sys; sys.modules['pytest'] = None\n"
        "from agentstream.testing import EventRecorder, FAST_RETRY, listening, make_event\n"
        "recorder = EventRecorder(); recorder(make_event('task.shipped'))\n"
        "print(recorder.wait_for_type('task.shipped', timeout=1)[0].type)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "task.shipped"


def test_the_fixtures_can_still_be_imported_from_agentstream_testing() -> None:
    from agentstream import pytest_plugin, testing

    assert testing.agentstream_server is pytest_plugin.agentstream_server
    with pytest.raises(AttributeError):
        _ = testing.nothing_here  # type: ignore[attr-defined]


# -- the plugin ----------------------------------------------------------------------


def test_the_plugin_is_registered_under_the_name_agentstream() -> None:
    plugins = distribution("agentstream").entry_points  # entry_points(group=) is 3.10+
    (plugin,) = [ep for ep in plugins if ep.group == "pytest11" and ep.name == "agentstream"]
    assert plugin.value == "agentstream.pytest_plugin"


def test_loading_the_plugin_imports_nothing_of_agentstream_but_itself() -> None:
    """What keeps the plugin's cost per pytest run near zero (docs/testing.md has the numbers)."""
    result = python(
        "import sys, pytest; before = set(sys.modules); import agentstream.pytest_plugin\n"
        "print(sorted(set(sys.modules) - before))"
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.replace("'", '"')))
    assert loaded == {"agentstream", "agentstream.pytest_plugin"}


def test_the_server_fixture_without_the_server_extra_says_what_to_install(
    tmp_path: Path,
) -> None:
    # werkzeug made unimportable, as where only `pip install agentstream` was run
    (tmp_path / "conftest.py").write_text("import sys\nsys.modules['werkzeug'] = None\n")
    (tmp_path / "test_mine.py").write_text(
        textwrap.dedent(
            """
            def test_uses_the_server(agentstream_server):
                pass
            """
        )
    )
    result = subprocess.run(
        # (pytest-django, a dev dependency, would look for a Django project here)
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:django",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert (
        "the agentstream_server fixture needs the reference server: "
        'pip install "agentstream[server]"'
    ) in result.stdout
    assert "module 'werkzeug' is not installed" in result.stdout
    assert "ModuleNotFoundError" not in result.stdout
    assert "Traceback" not in result.stdout


# -- make_event ----------------------------------------------------------------------


@pytest.mark.parametrize("event_type", list(EventType))
def test_make_event_has_a_valid_default_for_every_type(event_type: EventType) -> None:
    event = make_event(event_type)
    assert event.validation_error is None
    assert type(event).__name__.endswith("Event")
    assert type(event) is not TaskEvent  # the typed subclass, as parse_event gives
    assert event.type is event_type
    # exactly what parse_event makes of the same wire JSON
    wire = json.dumps(event.model_dump(mode="json", by_alias=True))
    assert parse_event(wire) == event
    assert make_event(event_type.value).type is event_type


def test_make_event_lays_data_over_the_default_in_either_spelling() -> None:
    event = make_event(
        "task.shipped", data={"target_environment": "production", "shipStatus": "running"}
    )
    assert isinstance(event, TaskShippedEvent)
    assert event.data.target_environment == "production"
    assert event.data.ship_status == "running"
    assert event.data.operation_id == "op_test"  # the default's other fields stay


def test_make_event_takes_a_payload_model_or_text_as_the_whole_payload() -> None:
    data = make_event(TaskShippedEvent).data.model_copy(update={"summary": "out"})
    assert make_event("task.shipped", data=data).data == data
    chunk = make_event(MessageChunkEvent, data="Hello")
    assert isinstance(chunk, MessageChunkEvent)
    assert chunk.data == "Hello"


def test_make_event_envelope_overrides() -> None:
    when = datetime(2026, 11, 20, 10, 0, 0, 123000, tzinfo=timezone.utc)
    event = make_event(
        "task.updated",
        id="evt_1",
        sequence=42,
        occurred_at=when,
        task_id="task_9",
        organization_id="org_9",
        task_version=7,
        trace_id="trace_1",
    )
    assert (event.id, event.sequence, event.time, event.task_id) == ("evt_1", 42, when, "task_9")
    assert (event.organization_id, event.task_version, event.trace_id) == ("org_9", 7, "trace_1")
    assert event.data.task_id == "task_9"  # the default payload is about the same task


def test_make_event_defaults_grow_like_a_stream() -> None:
    first, second = make_event("message.chunk"), make_event("message.chunk")
    assert second.sequence > first.sequence
    assert first.id != second.id


def test_make_event_of_an_unknown_type_is_untyped_with_the_data_as_given() -> None:
    event = make_event("custom.thing", data={"some_key": 1})
    assert type(event) is TaskEvent
    assert event.type == "custom.thing"
    assert event.data == {"some_key": 1}


def test_make_event_refuses_what_would_silently_give_an_untyped_event() -> None:
    with pytest.raises(ValueError, match=r"not a valid task\.shipped payload"):
        make_event("task.shipped", data={"targetEnvironment": "the moon"})
    with pytest.raises(ValueError, match="unknown envelope field"):
        make_event("task.shipped", occured_at="2026-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="not the class of one event type"):
        make_event(TaskEvent)


def test_a_made_event_reaches_the_handlers_for_its_type() -> None:
    registry = Registry()
    shipped, everything = EventRecorder(), EventRecorder()
    registry.on("task.shipped")(shipped)
    registry.on_event(everything)
    event = make_event("task.shipped")
    registry.dispatch(event)
    registry.dispatch(make_event("task.created"))
    assert shipped.events == [event]
    assert isinstance(shipped.events[0].data, TaskShippedData)
    assert everything.types == ["task.shipped", "task.created"]
