"""Decorator handlers and a listener thread: the design card's example.

    AGENTSTREAM_API_KEY=... python examples/handlers.py

Runs until Ctrl-C (or SIGTERM), then exits 0. Create tasks meanwhile (for
example with examples/task_chunks.py) to see the handlers fire.
"""

from __future__ import annotations

from agentstream import Client, StreamOptions, TaskEvent, on, on_auth_event


@on("task.shipped")
def shipped(event: TaskEvent) -> None:
    print(f"shipped: {event.data.task_identifier} to {event.data.target_environment}", flush=True)


@on_auth_event
def needs_login(event: TaskEvent) -> None:
    print(f"needs login: {event.data.provider} at {event.data.auth_url}", flush=True)


client = Client()
print("listening", flush=True)
client.listen(StreamOptions(heartbeat_seconds=30)).run_forever()
