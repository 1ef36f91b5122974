"""agentstream._compat: each private access, checked on the installed versions.

``make test-compat`` runs these (with the whole suite) on the lowest versions
pyproject.toml allows, urllib3 1.26 included.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from typing import Optional

import pytest
import requests
import urllib3
import urllib3.exceptions
from pydantic import BaseModel

from agentstream._compat import (
    URLLIB3_READ1,
    body_reader,
    model_private,
    reporting_connection_class,
    set_model_private,
    socket_of,
)
from agentstream.models import parse_event

from .scripted_server import Conn, FullBacklog, ScriptedServer


def held(framing: str):
    def script(conn: Conn) -> None:
        conn.start(framing=framing)
        conn.send(b"data: x\n\n")
        conn.wait_closed_by_client(10)

    return script


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_body_reader_is_http_clients_response_and_its_buffered_reader(
    server: ScriptedServer, session: requests.Session, framing: str
) -> None:
    server.script("/events", held(framing))
    with session.get(server.url(), stream=True, timeout=5) as response:
        http_response, chunked, reader = body_reader(response.raw)
        assert isinstance(http_response, http.client.HTTPResponse)
        assert chunked is (framing == "chunked")
        block = reader.read1(65536)
        assert block.endswith(b"data: x\n\n\r\n") if chunked else block == b"data: x\n\n"


def test_socket_of_is_the_connected_socket_until_released(
    server: ScriptedServer, session: requests.Session
) -> None:
    server.script("/events", held("chunked"))
    response = session.get(server.url(), stream=True, timeout=5)
    sock = socket_of(response.raw)
    assert isinstance(sock, socket.socket)
    assert sock.getpeername()[1] == server.port
    response.close()
    after = socket_of(response.raw)
    assert after is None or after.fileno() == -1


def reporting_connection(port: int, seen: list[socket.socket], timeout: float = 5.0):
    cls = reporting_connection_class(urllib3.connection.HTTPConnection, seen.append)
    return cls("127.0.0.1", port, timeout=timeout)


def test_the_reporting_connection_reports_its_socket_before_connecting(
    server: ScriptedServer,
) -> None:
    server.script("/x", lambda conn: conn.respond(200, b"{}"))
    states: list[str] = []

    def report(sock: socket.socket) -> None:
        try:
            sock.getpeername()
            states.append("connected")
        except OSError:
            states.append("not connected yet")

    cls = reporting_connection_class(urllib3.connection.HTTPConnection, report)
    connection = cls("127.0.0.1", server.port, timeout=5)
    connection.request("GET", "/x")
    assert connection.getresponse().status == 200
    connection.close()
    assert states == ["not connected yet"]


def test_the_reporting_connection_raises_urllib3s_errors() -> None:
    seen: list[socket.socket] = []
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        port = closed_port.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(urllib3.exceptions.NewConnectionError):
            reporting_connection(port, seen).connect()
    backlog = FullBacklog()
    try:
        with pytest.raises(urllib3.exceptions.ConnectTimeoutError):
            reporting_connection(backlog.port, seen, timeout=0.2).connect()
    finally:
        backlog.close()
    assert len(seen) == 2


def test_a_reported_socket_shut_down_aborts_the_connect() -> None:
    backlog = FullBacklog()
    try:

        def shut(sock: socket.socket) -> None:
            threading.Timer(0.1, sock.shutdown, (socket.SHUT_RDWR,)).start()

        cls = reporting_connection_class(urllib3.connection.HTTPConnection, shut)
        with pytest.raises(urllib3.exceptions.NewConnectionError):
            cls("127.0.0.1", backlog.port, timeout=30).connect()
    finally:
        backlog.close()


def test_urllib3_read1_follows_the_version() -> None:
    major, minor = (int(part) for part in urllib3.__version__.split(".")[:2])
    assert URLLIB3_READ1 is ((major, minor) >= (2, 3))


def test_model_private_storage_round_trips() -> None:
    class Model(BaseModel):
        x: int

    model = Model(x=1)
    assert model_private(model) is None
    set_model_private(model, {"raw": 1})
    assert model_private(model) == {"raw": 1}
    assert model.x == 1
    assert model.model_dump() == {"x": 1}  # private storage is not a field
    event = parse_event(
        '{"id": "evt_1", "type": "message.chunk", "sequence": 1, "taskVersion": 1,'
        ' "occurredAt": "2026-11-20T10:00:00Z", "taskId": "t", "organizationId": "o",'
        ' "data": "hi"}'
    )
    private = model_private(event)
    assert private is not None
    assert "source" in private  # what parse_event stores: the JSON text
    assert event.raw == "hi"  # parsed from it on first access
    assert model_private(event) == {"source": private["source"], "raw": "hi"}


@pytest.mark.parametrize("timeout", [None, 2.5])
def test_the_reporting_connection_applies_urllib3s_timeout_or_none(
    server: ScriptedServer, timeout: Optional[float]
) -> None:
    server.script("/x", lambda conn: conn.respond(200, b"{}"))
    seen: list[socket.socket] = []
    cls = reporting_connection_class(urllib3.connection.HTTPConnection, seen.append)
    # No timeout given: urllib3's "default" sentinel (2.x and 1.26 differ), no settimeout.
    connection = (
        cls("127.0.0.1", server.port)
        if timeout is None
        else cls("127.0.0.1", server.port, timeout=timeout)
    )
    connection.connect()
    assert seen[0].gettimeout() == (socket.getdefaulttimeout() if timeout is None else timeout)
    connection.close()


# -- Django migrations across django-stubs ----------------------------------------------


def test_migrations_keep_djangos_unannotated_class_attributes() -> None:
    # django-stubs 4.2.7 (make test-compat's, for Django 4.2) declares a Migration's
    # initial, dependencies and operations as instance variables and 6.x as ClassVar:
    # mypy accepts both only when they are assigned without an annotation, as Django
    # writes them (docs/decisions.md).
    import ast
    from pathlib import Path

    import agentstream.contrib

    folder = Path(agentstream.contrib.__file__).parent / "django" / "migrations"
    migrations = sorted(folder.glob("0*.py"))
    assert migrations
    for path in migrations:
        (migration,) = [
            node
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.ClassDef) and node.name == "Migration"
        ]
        annotated = [
            node.target.id
            for node in migration.body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        ]
        assert annotated == [], f"{path.name}: {annotated} annotated"


def test_the_tests_take_pytest_djangos_settings_type_from_one_module() -> None:
    # pytest-django 4.11.1, the last release for Python 3.9 (make test-compat), has no
    # pytest_django.Settings: a test module importing it stops the whole collection
    # there, the unpacked sdist's included. tests/django_settings_type.py has both names.
    import re
    from pathlib import Path

    tests = Path(__file__).parent
    direct = [
        path.name
        for path in sorted(tests.rglob("*.py"))
        if path.name != "django_settings_type.py"
        and re.search(r"from pytest_django import [^\n]*\bSettings\b", path.read_text())
    ]
    assert direct == []
