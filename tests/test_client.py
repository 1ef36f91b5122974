"""Client configuration and plain API calls, against real servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any, Optional

import pytest
import requests

from agentstream import Client
from agentstream.client import DEFAULT_MAX_BODY_SIZE
from agentstream.errors import (
    ConfigurationError,
    ResponseBodyError,
    ResponseTooLargeError,
    ServerError,
)
from agentstream.server import ReferenceServer

from .scripted_server import ScriptedServer, endless_body, gzip_bomb, gzip_bomb_body, never_answers

KEY = "as_test_0123456789abcdef"


# -- the API key --------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_key", "what"),
    [
        (KEY + "\r\n", "CR"),  # a .env file with CRLF endings
        (KEY + "\n", "LF"),
        (KEY[:5] + "\r\n" + KEY[5:], "CR"),
        (KEY + "\x00", "control"),
        (KEY + "\x7f", "control"),
        (KEY + "\u2019", "non-ASCII"),
        (" " + KEY, "white space"),
        (KEY + " ", "white space"),
    ],
)
def test_a_key_that_no_header_can_carry_fails_at_construction_without_repeating_it(
    bad_key: str, what: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match=what) as raised:
        Client("http://127.0.0.1:9", api_key=bad_key)
    assert KEY[:5] not in str(raised.value)
    assert KEY[5:] not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None
    if "\x00" in bad_key:
        return  # no environment variable can hold a NUL
    # The same from the environment.
    monkeypatch.setenv("AGENTSTREAM_API_KEY", bad_key)
    with pytest.raises(ConfigurationError, match="AGENTSTREAM_API_KEY") as raised:
        Client("http://127.0.0.1:9")
    assert KEY[5:] not in str(raised.value)


def test_a_key_of_printable_ascii_is_accepted() -> None:
    key = "as_" + "".join(chr(c) for c in range(0x20, 0x7F))
    assert "hidden" in repr(Client("http://127.0.0.1:9", api_key=key))


# -- every body is read with a bound ------------------------------------------

MiB = 1024 * 1024


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Yields a list that holds, after the block, the peak of Python memory
    allocated during it (bytes)."""
    result: list[int] = []
    tracemalloc.start()
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def api_client(server: ScriptedServer, **kwargs: Any) -> Client:
    return Client(server.url(""), KEY, timeout=10, **kwargs)


TASK = {
    "id": "task_1",
    "identifier": "AS-1",
    "prompt": "p",
    "status": "todo",
    "eventsStreaming": False,
    "metadata": {},
    "version": 1,
    "createdAt": "2026-11-20T10:00:00Z",
    "updatedAt": "2026-11-20T10:00:00Z",
}


def test_a_gzip_bomb_is_refused_with_memory_bounded(server: ScriptedServer) -> None:
    bomb = 256 * MiB  # inflates from ~250 KB
    gzip_bomb_body(bomb)  # built before measuring
    server.script("/tasks/t", gzip_bomb(200, bomb))
    with peak_memory() as peak, pytest.raises(ResponseTooLargeError) as raised:
        api_client(server).get_task("t")
    assert raised.value.limit == DEFAULT_MAX_BODY_SIZE
    assert raised.value.size > DEFAULT_MAX_BODY_SIZE
    assert raised.value.status == 200
    assert "max_body_size" in str(raised.value)
    assert peak[0] < DEFAULT_MAX_BODY_SIZE + 32 * MiB


@pytest.mark.parametrize("content_length", [1024 * MiB, None], ids=["1 GiB announced", "chunked"])
def test_an_endless_body_is_refused_with_memory_bounded(
    server: ScriptedServer, content_length: Optional[int]
) -> None:
    server.script("/tasks/t", endless_body(content_length=content_length))
    client = api_client(server, max_body_size=1 * MiB)
    started = time.monotonic()
    with peak_memory() as peak, pytest.raises(ResponseTooLargeError) as raised:
        client.get_task("t")
    assert time.monotonic() - started < 5
    assert raised.value.limit == 1 * MiB
    assert raised.value.size > 1 * MiB
    assert peak[0] < 12 * MiB
    if content_length is not None:
        assert raised.value.size == content_length  # refused before reading


def test_a_500_with_a_gzip_bomb_is_a_server_error_with_memory_bounded(
    server: ScriptedServer,
) -> None:
    bomb = 256 * MiB
    gzip_bomb_body(bomb)
    server.script("/tasks/t", gzip_bomb(500, bomb))
    with peak_memory() as peak, pytest.raises(ServerError) as raised:
        api_client(server).get_task("t")
    assert raised.value.status == 500
    assert peak[0] < 32 * MiB


@pytest.mark.parametrize("encoding", ["br", "gzip, gzip", "zstd"])
def test_an_encoding_not_asked_for_is_refused(server: ScriptedServer, encoding: str) -> None:
    server.script("/tasks/t", gzip_bomb(200, 1 * MiB, encoding=encoding))
    with pytest.raises(ResponseBodyError, match="not asked for") as raised:
        api_client(server).get_task("t")
    assert raised.value.code == "bad_content_encoding"
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


def test_a_body_at_the_limit_is_read_and_one_byte_more_is_refused(server: ScriptedServer) -> None:
    body = json.dumps(TASK).encode()
    server.script("/tasks/t", lambda conn: conn.respond(200, body))
    assert api_client(server, max_body_size=len(body)).get_task("t").id == "task_1"
    with pytest.raises(ResponseTooLargeError):
        api_client(server, max_body_size=len(body) - 1).get_task("t")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_body_size_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_body_size"):
        Client("http://127.0.0.1:9", api_key=KEY, max_body_size=bad)


# -- threads ------------------------------------------------------------------

THREADS = 8
CALLS = 25


def call_from_threads(client: Client, task_ids: list[str]) -> list[list[str]]:
    """Each of THREADS threads fetches its own task CALLS times, all at once;
    returns the ids each thread got back."""
    start = threading.Barrier(THREADS)
    got: list[list[str]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait(5)
            for _ in range(CALLS):
                got[n].append(client.get_task(task_ids[n]).id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return got


def test_worker_threads_each_use_their_own_session(agentstream_server: ReferenceServer) -> None:
    tasks = [agentstream_server.store.create_task(f"t{n}")["id"] for n in range(THREADS)]
    client = Client(agentstream_server.url, agentstream_server.api_key)
    sessions: dict[int, set[int]] = {}
    thread_session = client._thread_session

    def recording() -> requests.Session:
        session = thread_session()
        sessions.setdefault(threading.get_ident(), set()).add(id(session))
        return session

    client._thread_session = recording  # type: ignore[method-assign]
    got = call_from_threads(client, tasks)
    assert got == [[task] * CALLS for task in tasks]  # no answer crossed to another thread
    assert len(sessions) == THREADS
    assert all(len(ids) == 1 for ids in sessions.values())  # one session per thread, reused
    assert len({next(iter(ids)) for ids in sessions.values()}) == THREADS  # none shared
    client.close()
    assert not list(client._sessions)


def test_a_given_session_is_shared_by_every_thread(agentstream_server: ReferenceServer) -> None:
    tasks = [agentstream_server.store.create_task(f"t{n}")["id"] for n in range(THREADS)]
    session = requests.Session()
    client = Client(agentstream_server.url, agentstream_server.api_key, session=session)
    got = call_from_threads(client, tasks)
    assert got == [[task] * CALLS for task in tasks]
    client.close()  # not the caller's session: it still works
    auth = {"Authorization": f"Bearer {agentstream_server.api_key}"}
    answer = session.get(f"{agentstream_server.url}/tasks/{tasks[0]}", headers=auth, timeout=5)
    assert answer.status_code == 200


def test_a_stream_of_a_client_with_a_given_session_closes_while_waiting_for_headers(
    server: ScriptedServer,
) -> None:
    server.script("/task-events/stream", never_answers)
    client = Client(server.url(""), KEY, timeout=30, session=requests.Session())
    stream = client.stream_events()  # read timeout 60 s
    done = threading.Event()
    thread = threading.Thread(target=lambda: (list(stream), done.set()), daemon=True)
    thread.start()
    server.wait_for_requests(1)
    started = time.monotonic()
    stream.close()
    assert done.wait(1.0), "close() did not interrupt the wait for response headers"
    assert time.monotonic() - started < 1.0
    thread.join(1)
