"""How to test your own handlers with agentstream's pytest fixtures.

With ``agentstream[server]`` installed, the fixtures ``agentstream_server``,
``agentstream_client`` and ``agentstream_registry`` are available to any
pytest run (agentstream registers itself as a pytest plugin). Run this file
with ``pytest examples/test_my_handlers.py``.
"""

from __future__ import annotations

from agentstream import Client, Registry, TaskEvent
from agentstream.server import ReferenceServer
from agentstream.testing import EventRecorder, listening

# --- the application code under test --------------------------------------------

notifications: list[str] = []


def register_handlers(registry: Registry) -> None:
    @registry.on("task.shipped")
    def announce(event: TaskEvent) -> None:
        notifications.append(
            f"{event.data.task_identifier} is live on {event.data.target_environment}"
        )

    @registry.on_auth_event
    def ask_for_login(event: TaskEvent) -> None:
        notifications.append(f"please sign in to {event.data.provider}")


# --- the tests ----------------------------------------------------------------------


def test_a_whole_simulated_run(agentstream_client: Client, agentstream_registry: Registry) -> None:
    notifications.clear()
    register_handlers(agentstream_registry)
    finished = EventRecorder()
    agentstream_registry.on("task.finished")(finished)
    with listening(agentstream_client, agentstream_registry) as listener:
        task = agentstream_client.create_task("ship a fix", events_streaming=True)
        (done,) = finished.wait_for(count=1)  # waits on the event, never sleeps
        assert listener.wait_handled(done)
    assert notifications == ["please sign in to github", f"{task.identifier} is live on staging"]


def test_a_scripted_event(
    agentstream_server: ReferenceServer, agentstream_client: Client, agentstream_registry: Registry
) -> None:
    notifications.clear()
    register_handlers(agentstream_registry)
    with listening(agentstream_client, agentstream_registry) as listener:
        event = agentstream_client.publish_event(
            "auth.required", {"provider": "slack", "authUrl": "https://slack.example/oauth"}
        )
        assert listener.wait_handled(event)
    assert notifications == ["please sign in to slack"]
