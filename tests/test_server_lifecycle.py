"""Reference server lifecycle: restart on the same file, stop, drop, CLI, other WSGI servers."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import pytest
import requests

from agentstream.server import (
    ALL_SCOPES,
    EventStore,
    ReferenceServer,
    StoreLockedError,
    create_app,
    serve_main,
)
from agentstream.server._agent import script_event_types

from .server_fixtures import Api, Frame, ServerFactory, error_of

KEYS = {"key-1": sorted(ALL_SCOPES)}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "server.md"


# ---------------------------------------------------------------- restart


def test_restart_on_the_same_db_replays_from_the_same_cursor(servers: ServerFactory) -> None:
    first = servers.start("same.sqlite3", api_keys=KEYS)
    api = servers.api(first)
    published = [api.publish("message.chunk", f"e{i}") for i in range(10)]
    task = api.create_task("done before the restart")
    with api.stream(taskId=task["id"]) as reader:
        task_frames = reader.rest()
    first.stop()

    second = servers.start("same.sqlite3", api_keys=KEYS)
    api2 = servers.api(second)
    with api2.stream(cursor=published[3]["id"]) as reader:
        replayed = reader.events(6)
        assert [f.envelope for f in replayed] == published[4:]
        assert [f.id for f in reader.events(len(task_frames))] == [f.id for f in task_frames]
        fresh = api2.publish("task.shipped", {})
        assert reader.next_event().envelope == fresh
    assert fresh["sequence"] == task_frames[-1].sequence + 1
    assert api2.request("GET", f"/tasks/{task['id']}").json() == task_frames[-1].envelope["data"]
    # the finished task's stream is still over
    assert api2.stream_response(taskId=task["id"], cursor=task_frames[-1].id).status_code == 204


def test_restart_resumes_an_unfinished_run(servers: ServerFactory) -> None:
    first = servers.start("resume.sqlite3", api_keys=KEYS, agent_pace=0.02)
    api = servers.api(first)
    task = api.create_task("survive a restart", eventsStreaming=True)
    seen: list[Frame] = []
    with api.stream(taskId=task["id"]) as reader:
        while not seen or seen[-1].event != "message.chunk":
            seen.append(reader.next_event())
        first.stop()  # ends the open stream cleanly
        seen.extend(reader.rest())
    assert seen[-1].event != "task.finished"

    second = servers.start("resume.sqlite3", api_keys=KEYS, agent_pace=0.0)
    api2 = servers.api(second)
    with api2.stream(taskId=task["id"], cursor=seen[-1].id) as reader:
        rest = reader.rest()
    frames = seen + rest
    assert [f.event for f in frames] == script_event_types()
    sequences = [f.sequence for f in frames]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert frames[-1].envelope["data"]["status"] == "done"


def test_idempotency_survives_a_restart(servers: ServerFactory) -> None:
    first = servers.start("idem.sqlite3", api_keys=KEYS, agent_pace=30.0)
    body = {"prompt": "once only"}
    created = servers.api(first).request(
        "POST", "/tasks", json=body, headers={"Idempotency-Key": "k1"}
    )
    first.stop()
    second = servers.start("idem.sqlite3", api_keys=KEYS, agent_pace=30.0)
    again = servers.api(second).request(
        "POST", "/tasks", json=body, headers={"Idempotency-Key": "k1"}
    )
    assert again.status_code == 200
    assert again.json()["id"] == created.json()["id"]


def test_one_server_per_database_file(
    servers: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    servers.start("shared.sqlite3", api_keys=KEYS)
    with pytest.raises(StoreLockedError, match="in use"):
        servers.start("shared.sqlite3", api_keys=KEYS)
    db = str(tmp_path / "shared.sqlite3")
    assert serve_main(["--db", db, "--port", "0", "--log-level", "ERROR"]) == 1
    assert "in use by another agentstream server" in capsys.readouterr().err


# ---------------------------------------------------------------- stop and drop


def test_stop_ends_open_streams_promptly_and_joins_threads(
    no_thread_leak: None, servers: ServerFactory
) -> None:
    srv = servers.start(api_keys=KEYS, agent_pace=30.0)
    api = servers.api(srv)
    api.create_task("a run that is waiting")
    results: queue.Queue[Any] = queue.Queue()

    def follow() -> None:
        try:
            with Api(srv.url, "key-1").stream(timeout=10) as reader:
                results.put("open")
                results.put(reader.rest())
        except BaseException as exc:
            results.put(exc)

    readers = [threading.Thread(target=follow) for _ in range(3)]
    for t in readers:
        t.start()
    for _ in readers:
        assert results.get(timeout=5) == "open"
    assert srv.app.open_streams == 3
    began = time.monotonic()
    srv.stop()
    assert time.monotonic() - began < 3.0  # about 10 ms unloaded
    for t in readers:
        t.join(5)
    outcomes = [results.get(timeout=1) for _ in readers]
    assert outcomes == [[], [], []]  # each stream ended cleanly, with no event
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "/tasks/x", timeout=2).close()


def test_drop_streams_cuts_connections_and_clients_resume(servers: ServerFactory) -> None:
    srv = servers.start(api_keys=KEYS)
    api = servers.api(srv)
    with api.stream() as reader:
        env = api.publish("task.shipped", {})
        assert reader.next_event().envelope == env
        assert srv.drop_streams() == 1
        with pytest.raises(requests.RequestException):
            reader.rest()
    missed = api.publish("message.chunk", "while away")
    with api.stream(cursor=env["id"]) as reader:
        assert reader.next_event().envelope == missed
    assert srv.app.open_streams <= 1


def test_temporary_database_is_deleted(servers: ServerFactory) -> None:
    srv = servers.start(None)
    assert srv.db_path is not None
    path = Path(srv.db_path)
    assert path.exists()
    srv.store.publish("task.shipped", {})
    srv.stop()
    assert not path.exists()
    assert not path.parent.exists()


def test_reference_server_api(tmp_path: Path) -> None:
    server = ReferenceServer(tmp_path / "api.sqlite3")
    with pytest.raises(RuntimeError):
        _ = server.url
    with pytest.raises(RuntimeError):
        _ = server.store
    with server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        assert server.api_key.startswith("as_dev_")
        assert server.port > 0
        assert repr(server).startswith("<ReferenceServer running")
        with pytest.raises(RuntimeError):
            server.start()
    server.stop()  # idempotent
    assert server.store.closed
    limited = ReferenceServer(api_keys={"r": ["events:read"], "w": ALL_SCOPES})
    assert limited.api_key == "w"
    with pytest.raises(ValueError, match="at least one"):
        ReferenceServer(api_keys={})
    with pytest.raises(ValueError, match="unknown scopes"):
        ReferenceServer(tmp_path / "x.sqlite3", api_keys={"k": ["admin"]}).start()


def test_store_rejects_unknown_types_and_tasks(tmp_path: Path) -> None:
    from agentstream.server import TaskFinishedError, UnknownTaskError

    with EventStore(tmp_path / "s.sqlite3") as store:
        with pytest.raises(ValueError, match="nope"):
            store.publish("nope", {})
        with pytest.raises(UnknownTaskError):
            store.publish("message.chunk", "x", "task_missing")
        task = store.create_task("manual")
        envs = store.transition_task(task["id"], "failed", summary="boom", error="it broke")
        assert [e["type"] for e in envs] == ["task.finished"]  # no `failed` in task.updated
        assert envs[0]["data"]["error"] == "it broke"
        with pytest.raises(TaskFinishedError):
            store.append_task_event(task["id"], "message.chunk", "late")
    with pytest.raises(ValueError, match="retention"):
        EventStore(tmp_path / "r.sqlite3", retention=0)


def test_write_transaction_lends_the_stores_connection_and_commits_or_rolls_back(
    tmp_path: Path,
) -> None:
    from agentstream.server import StoreClosedError

    path = tmp_path / "w.sqlite3"
    with EventStore(path) as store:
        store.publish("message.chunk", "one")
        store.write_transaction(lambda conn, head: conn.execute("CREATE TABLE mine (v INTEGER)"))
        # ``head`` is the last sequence, read in the same transaction.
        assert store.write_transaction(
            lambda conn, head: conn.execute("INSERT INTO mine VALUES (?)", (head,)).rowcount
        )

        def fail(conn: Any, head: int) -> None:
            conn.execute("INSERT INTO mine VALUES (99)")
            raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError, match="rolled back"):
            store.write_transaction(fail)
        rows = store.write_transaction(
            lambda conn, head: conn.execute("SELECT v FROM mine").fetchall()
        )
        assert rows == [(1,)]
        store.publish("message.chunk", "two")  # the store goes on as before
    with pytest.raises(StoreClosedError):
        store.write_transaction(lambda conn, head: None)
    with EventStore(path) as reopened:  # committed to the file
        assert reopened.write_transaction(
            lambda conn, head: (head, conn.execute("SELECT v FROM mine").fetchall())
        ) == (2, [(1,)])


# ---------------------------------------------------------------- CLI


def _read_lines(stream: Any, out: queue.Queue[Optional[str]]) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def test_cli_serves_prints_the_key_once_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "cli.sqlite3"
    code = (
        "import sys; from agentstream.server import serve_main; sys.exit(serve_main(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--db", str(db), "--pace", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    lines: queue.Queue[Optional[str]] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        url = key = None
        output: list[str] = []
        while url is None or key is None:
            line = lines.get(timeout=15)
            assert line is not None, (output, proc.stderr.read() if proc.stderr else "")
            output.append(line)
            if m := re.search(r"listening on (http://\S+)", line):
                url = m.group(1)
            if m := re.search(r"AGENTSTREAM_API_KEY=(\S+)$", line.strip()):
                key = m.group(1)
        api = Api(url, key)
        try:
            task = api.create_task("from the CLI")
            with api.stream(taskId=task["id"]) as stream:
                assert stream.rest()[-1].event == "task.finished"
        finally:
            api.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        reader.join(5)
        rest = []
        while (line := lines.get(timeout=1)) is not None:
            rest.append(line)
        everything = "".join(output + rest)
        assert everything.count(key) == 1  # printed once
        assert "stopped" in everything
        assert "organization: org_local (every key acts for it)" in everything
        stderr = proc.stderr.read() if proc.stderr else ""
        assert key not in stderr  # logs never carry the key
        assert db.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_main(["--api-key", "k=events:read,bogus"]) == 2
    assert "bad scopes" in capsys.readouterr().err
    assert serve_main(["--pace", "-1"]) == 2
    assert serve_main(["--retention", "0"]) == 2
    assert serve_main(["--heartbeat", "0"]) == 2
    assert serve_main(["--max-connections", "0"]) == 2
    assert "max_connections must be positive" in capsys.readouterr().err
    assert serve_main(["--help"]) == 0
    assert "--api-key" in capsys.readouterr().out


def test_cli_limit_flags_make_the_server_config() -> None:
    from agentstream.server import ServerConfig
    from agentstream.server._cli import build_parser, config_from_args

    assert config_from_args(build_parser().parse_args([])) == ServerConfig()
    flags = "--header-timeout 2.5 --body-timeout 3 --keepalive-timeout 4 --write-timeout 5"
    flags += " --max-connections 6 --retry-after 7 --stream-backlog 8"
    args = build_parser().parse_args(flags.split())
    assert config_from_args(args) == ServerConfig(
        header_timeout=2.5,
        body_timeout=3,
        keepalive_timeout=4,
        write_timeout=5,
        max_connections=6,
        retry_after=7,
        stream_backlog=8,
    )


def test_cli_api_key_parsing() -> None:
    from agentstream.server import ApiKey
    from agentstream.server._cli import build_parser

    flags = "--api-key a=events:read b=tasks:read,tasks:write --api-key c"
    flags += " d=events:read@org_d e=*@org_e f=@org_f"
    args = build_parser().parse_args(flags.split())
    assert dict(args.api_keys) == {
        "a": ApiKey(frozenset({"events:read"})),
        "b": ApiKey(frozenset({"tasks:read", "tasks:write"})),
        "c": ApiKey(ALL_SCOPES),
        "d": ApiKey(frozenset({"events:read"}), "org_d"),
        "e": ApiKey(ALL_SCOPES, "org_e"),
        "f": ApiKey(ALL_SCOPES, "org_f"),
    }
    for bad in ("g=events:read@", "h=", "i=bogus@org"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--api-key", bad])


# ---------------------------------------------------------------- other WSGI servers


def _docs_example() -> str:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"<!-- tested-example: wsgiref -->\n```python\n(.*?)```", text, re.S)
    assert match, "the wsgiref example is missing from docs/server.md"
    return match.group(1)


def test_docs_wsgiref_example_serves_the_app(tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(_docs_example(), str(DOCS), "exec"), namespace)
    store = EventStore(tmp_path / "wsgiref.sqlite3")
    app = create_app(store, api_keys={"my-secret-key": ALL_SCOPES}, agent_pace=0.0)
    httpd = namespace["make_wsgiref_server"]("127.0.0.1", 0, app)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    api = Api(f"http://127.0.0.1:{httpd.server_address[1]}", "my-secret-key")
    try:
        # HTTP/1.0, no chunking: read byte by byte to see each event as it arrives
        with api.stream(chunk_size=1) as live:
            env = api.publish("task.shipped", {"n": 1})
            assert live.next_event().envelope == env
        task = api.create_task("under wsgiref")
        with api.stream(taskId=task["id"], chunk_size=1) as reader:
            assert [f.event for f in reader.rest()] == script_event_types()
        missing = api.request("GET", "/tasks/nope")
        assert missing.status_code == 404
        assert error_of(missing)["code"] == "task_not_found"
        with api.stream(chunk_size=1) as reader:
            app.close()  # a stream open when the server stops ends
            assert reader.rest() == []
        closing = api.request("GET", "/tasks/nope")
        assert closing.status_code == 503
        assert error_of(closing)["code"] == "shutting_down"
        assert closing.headers["Retry-After"] == "1"
    finally:
        api.close()
        httpd.shutdown()
        thread.join(5)
        httpd.server_close()
        app.close()
        store.close()
