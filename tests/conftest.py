from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .redis_server import RedisServer, RedisServers
from .scripted_server import ScriptedServer
from .server_fixtures import ServerFactory


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A scripted HTTP server on 127.0.0.1 (see tests/scripted_server.py)."""
    srv = ScriptedServer()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def no_thread_leak() -> Iterator[None]:
    """Fail if the test leaves a thread running."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in leaked:
        thread.join(2)
    leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerFactory]:
    """Starts reference servers on tmp_path databases; stops them all afterwards."""
    factory = ServerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real Redis server (AOF on) for the session; tests keep apart by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[RedisServers]:
    """Redis servers of the test's own (to restart, flush, or run without AOF)."""
    servers = RedisServers(tmp_path)
    try:
        yield servers
    finally:
        servers.close()
