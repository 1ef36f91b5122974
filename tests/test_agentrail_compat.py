"""AgentRail's own published SDK reads the reference server's stream.

A test-only dependency (``agentrail`` in the ``dev`` extra). Its client is
asyncio-based: asyncio appears here, in a test of a third-party SDK, and
nowhere in agentstream.
"""

from __future__ import annotations

import asyncio
import sys

import pytest
import requests

from agentstream.server import ReferenceServer

# agentrail requires Python 3.10; `make test` runs 3.11, where it is installed.
pytestmark = pytest.mark.skipif(sys.version_info < (3, 10), reason="agentrail needs Python 3.10+")


def test_agentrail_sdk_validates_the_three_agentrail_event_types() -> None:
    import agentrail.client as agentrail_client

    with ReferenceServer(agent_pace=0.0) as server:
        task_id = None

        async def read() -> list[object]:
            client = agentrail_client.AgentRailClient(base_url=server.url, api_key=server.api_key)
            try:
                options = agentrail_client.StreamOptions(
                    event_types=["task.updated", "task.reviewed", "task.shipped"],
                    task_id=task_id,
                )
                return [event async for event in client.stream_events(options)]
            finally:
                await client.close()

        response = requests.post(
            f"{server.url}/tasks",
            json={"prompt": "ship it", "eventsStreaming": True},
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=10,
        )
        task_id = response.json()["id"]
        events = asyncio.run(asyncio.wait_for(read(), timeout=20))
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("TaskUpdatedEvent") >= 3
    assert kinds.count("TaskReviewedEvent") == 1
    assert kinds.count("TaskShippedEvent") == 1
    shipped = next(e for e in events if type(e).__name__ == "TaskShippedEvent")
    assert shipped.data.ship_status.value == "succeeded"
    assert shipped.data.task_id == task_id
