"""Organizations: every key acts for one; what it publishes, creates and streams stays
inside that organization, and another organization's key sees none of it."""

from __future__ import annotations

import pytest

from agentstream.server import ALL_SCOPES, ApiKey, ReferenceServer

from .server_fixtures import ServerFactory, error_of

KEY_A = "key-of-org-a"
KEY_B = "key-of-org-b"
KEY_LOCAL = "key-of-the-default-org"


@pytest.fixture
def srv(servers: ServerFactory) -> ReferenceServer:
    return servers.start(
        api_keys={
            KEY_A: ApiKey(ALL_SCOPES, "org_a"),
            KEY_B: ApiKey(ALL_SCOPES, "org_b"),
            KEY_LOCAL: ALL_SCOPES,  # bare scopes: the default organization
        }
    )


def test_streams_carry_only_their_organizations_events(
    servers: ServerFactory, srv: ReferenceServer
) -> None:
    a, b = servers.api(srv, KEY_A), servers.api(srv, KEY_B)
    assert srv.organizations == {"org_a", "org_b", "org_local"}
    with a.stream() as stream_a, b.stream() as stream_b:
        a1 = a.publish("task.shipped", {"who": "a1"})
        b1 = b.publish("task.shipped", {"who": "b1"})
        a2 = a.publish("task.shipped", {"who": "a2"})
        assert (a1["organizationId"], b1["organizationId"]) == ("org_a", "org_b")
        assert [stream_a.next_event().envelope for _ in range(2)] == [a1, a2]
        assert stream_b.next_event().envelope == b1
        b2 = b.publish("task.shipped", {"who": "b2"})
        assert stream_b.next_event().envelope == b2  # a2 never reached b
    # a replay from a cursor skips the other organization's events too
    with b.stream(cursor=a1["id"]) as replay:
        assert [replay.next_event().envelope for _ in range(2)] == [b1, b2]


def test_a_key_cannot_publish_for_another_organization(
    servers: ServerFactory, srv: ReferenceServer
) -> None:
    a = servers.api(srv, KEY_A)
    response = a.request(
        "POST", "/task-events", json={"type": "task.shipped", "organizationId": "org_b"}
    )
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "organization_forbidden"
    assert error["details"]["organizationId"] == "org_a"
    assert a.publish("task.shipped", {}, organizationId="org_a")["organizationId"] == "org_a"


def test_tasks_of_another_organization_do_not_exist_for_a_key(
    servers: ServerFactory, srv: ReferenceServer
) -> None:
    a, b = servers.api(srv, KEY_A), servers.api(srv, KEY_B)
    task = a.create_task("org a's task")
    tid = task["id"]
    assert a.request("GET", f"/tasks/{tid}").status_code == 200
    for response in (
        b.request("GET", f"/tasks/{tid}"),
        b.request("POST", f"/tasks/{tid}/stop"),
        b.request("POST", "/task-events", json={"type": "task.shipped", "taskId": tid}),
        b.stream_response(taskId=tid),
    ):
        assert response.status_code == 404
        assert error_of(response)["code"] == "task_not_found"
    # the simulated run's events belong to org_a, and org_a's task stream has them all
    with a.stream(taskId=tid) as stream:
        events = stream.rest()
    assert events[-1].event == "task.finished"
    assert {frame.envelope["organizationId"] for frame in events} == {"org_a"}


def test_the_simulated_run_of_one_organization_stays_out_of_the_others_stream(
    servers: ServerFactory, srv: ReferenceServer
) -> None:
    a, local = servers.api(srv, KEY_A), servers.api(srv, KEY_LOCAL)
    with local.stream() as stream:
        task = a.create_task("busy")
        with a.stream(taskId=task["id"]) as run:
            assert run.rest()[-1].event == "task.finished"
        mine = local.publish("task.shipped", {"mine": True})
        assert mine["organizationId"] == "org_local"
        assert stream.next_event().envelope == mine  # none of org_a's run came first


def test_an_older_database_gets_organizations_from_its_envelopes(tmp_path: object) -> None:
    import json
    import sqlite3
    from pathlib import Path

    from agentstream.server import EventStore

    path = Path(str(tmp_path)) / "v1.sqlite3"
    with EventStore(path) as store:
        store.publish("task.shipped", {}, organization_id="org_old")
        task = store.create_task("t")
    conn = sqlite3.connect(path)  # make it look like a version-1 file: no such columns
    for table in ("events", "tasks"):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN organization_id")
    conn.commit()
    conn.close()
    with EventStore(path) as store:
        batch = store.read_after(0, organization_id="org_old")
        assert [json.loads(e.envelope)["organizationId"] for e in batch.events] == ["org_old"]
        assert store.get_task(task["id"], "org_local") is not None
        assert store.get_task(task["id"], "org_old") is None
