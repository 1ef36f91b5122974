"""xpander's task.events() example, with `async for` written as `for`.

Creates a streaming task and prints its text as it streams. Run the
reference server first (`agentstream serve` prints a key), then:

    AGENTSTREAM_API_KEY=... python examples/task_chunks.py
"""

from __future__ import annotations

from agentstream import Client, TaskUpdateEventType

client = Client()  # AGENTSTREAM_BASE_URL / AGENTSTREAM_API_KEY, or arguments

task = client.create_task(prompt="Long-running research task", events_streaming=True)
for event in task.events():
    if event.type == TaskUpdateEventType.Chunk:
        print(event.data, end="", flush=True)
print()
print(f"task {task.id}: {task.reload().status.value}")
