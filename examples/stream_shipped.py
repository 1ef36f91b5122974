"""AgentRail's stream_events example, with `async for` written as `for`.

Follows `task.shipped` events and keeps the cursor, so a restart resumes
where it left off. Run the reference server first (`agentstream serve`
prints a key), then:

    AGENTSTREAM_API_KEY=... python examples/stream_shipped.py [LAST_EVENT_ID]

It runs until Ctrl-C; `--count N` stops after N events (used by the tests).
"""

from __future__ import annotations

import sys

from agentstream import Client, StreamOptions, TaskEventType

args = [a for a in sys.argv[1:] if not a.startswith("--count=")]
count = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--count=")), 0)
last_event_id = args[0] if args else None

client = Client()  # AGENTSTREAM_BASE_URL / AGENTSTREAM_API_KEY, or arguments

seen = 0
# The loop is DESIGN.md's example as written.
# fmt: off
for event in client.stream_events(StreamOptions(
        event_types=[TaskEventType.TASK_SHIPPED.value], heartbeat_seconds=30,
        cursor=last_event_id)):
    last_event_id = event.id
    print(f"{event.data.task_identifier} shipped to {event.data.target_environment}: "
          f"{event.data.ship_status} (cursor {last_event_id})", flush=True)
    seen += 1  # noqa: SIM113
    if seen == count:
        break
# fmt: on
