"""RedisCursorStore on a real Redis server: persistence, data loss, secrets, clocks.

The behaviours every store shares are in tests/test_cursor_stores.py.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
import redis

from agentstream.cursors import RedisCursorStore
from agentstream.errors import LeaseLostError, StoreResetError

from .redis_server import RedisServer, RedisServers, free_port

TTL = 30.0
PASSWORD = "s3cret-Pa55word"


def test_keys_are_namespaced_by_prefix(redis_server: RedisServer) -> None:
    store = RedisCursorStore(redis_server.url, prefix="ns1:")
    other = RedisCursorStore(redis_server.url, prefix="ns2:")
    try:
        token = store.acquire("orders", "a", TTL)
        assert token is not None
        store.save_fenced("orders", "evt_1", token)
        with redis_server.client() as client:
            assert client.get("ns1:cursor:orders") == b"evt_1"
            assert client.get("ns1:token:orders") == str(token).encode()
            assert client.hget("ns1:lease:orders", "holder") == b"a"
        assert other.load("orders") is None
        assert other.acquire("orders", "b", TTL) is not None
    finally:
        store.close()
        other.close()


def test_restart_with_aof_keeps_cursor_and_token(redis_servers: RedisServers) -> None:
    server = redis_servers.start(appendonly=True)
    store = RedisCursorStore(server.url)
    try:
        token = store.acquire("orders", "a", TTL)
        assert token is not None
        store.save_fenced("orders", "evt_42", token)
        server.restart()  # SIGTERM: a clean shutdown flushes the AOF
        assert store.load("orders") == "evt_42"
        # The lease survived too, with its expiry on the server's clock.
        holder = store.lease_holder("orders")
        assert holder is not None
        assert holder[:2] == ("a", token)
        assert store.renew("orders", "a", token, TTL)
        store.release("orders", "a", token)
        again = store.acquire("orders", "b", TTL)  # no StoreResetError: nothing was lost
        assert again == token + 1
    finally:
        store.close()


def test_a_crash_of_redis_with_aof_keeps_what_it_acknowledged(
    redis_servers: RedisServers,
) -> None:
    """SIGKILL of redis-server right after the replies: Redis wrote the AOF before
    answering, so the cursor and the token are there after the restart."""
    server = redis_servers.start(appendonly=True)
    store = RedisCursorStore(server.url)
    try:
        token = store.acquire("orders", "a", TTL)
        assert token is not None
        store.save_fenced("orders", "evt_7", token)
        server.stop(signal.SIGKILL)
        server.start()
        assert store.load("orders") == "evt_7"
        assert store.acquire("orders", "a", TTL) == token
        store.release("orders", "a", token)
        assert store.acquire("orders", "b", TTL) == token + 1
    finally:
        store.close()


def test_flushed_server_raises_store_reset_on_the_next_acquire(
    redis_servers: RedisServers,
) -> None:
    server = redis_servers.start(appendonly=True)
    store = RedisCursorStore(server.url)
    try:
        first = store.acquire("orders", "a", TTL)
        assert first is not None
        store.release("orders", "a", first)
        second = store.acquire("orders", "a", TTL)
        assert second == first + 1
        store.save_fenced("orders", "evt_3", second)
        with server.client() as client:
            client.flushall()
        # The holder's renewal fails: it must stop dispatching...
        assert not store.renew("orders", "a", second, TTL)
        # ...and taking the lease again does not silently start over from nothing.
        with pytest.raises(StoreResetError) as caught:
            store.acquire("orders", "a", TTL)
        assert caught.value.name == "orders"
        assert "lost its data" in str(caught.value)
        assert (caught.value.token, caught.value.highest_seen) == (1, second)
        # Nor does the old token move a cursor in the emptied store.
        with pytest.raises(LeaseLostError):
            store.save_fenced("orders", "evt_4", second)
    finally:
        store.close()


def test_restart_without_persistence_raises_store_reset(redis_servers: RedisServers) -> None:
    server = redis_servers.start(appendonly=False)
    store = RedisCursorStore(server.url)
    try:
        token = store.acquire("orders", "a", TTL)
        assert token == 1
        store.save_fenced("orders", "evt_3", token)
        server.restart()
        assert store.load("orders") is None  # the data is gone...
        with pytest.raises(StoreResetError):  # ...and the store says so
            store.acquire("orders", "b", TTL)
    finally:
        store.close()


def test_scripts_are_reloaded_when_the_server_forgot_them(redis_server: RedisServer) -> None:
    store = RedisCursorStore(redis_server.url, prefix="scripts:")
    try:
        token = store.acquire("orders", "a", TTL)
        assert token is not None
        with redis_server.client() as client:
            client.script_flush()
        assert store.renew("orders", "a", token, TTL)
        store.save_fenced("orders", "evt_1", token)
        assert store.load("orders") == "evt_1"
    finally:
        store.close()


def test_expiry_uses_the_servers_clock_not_the_clients(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisCursorStore(redis_server.url, prefix="clock:")
    try:
        token = store.acquire("orders", "a", TTL)
        assert token is not None
        # A client whose clock jumps a day ahead changes nothing.
        real_time, real_monotonic = time.time, time.monotonic
        monkeypatch.setattr(time, "time", lambda: real_time() + 86400)
        monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + 86400)
        assert store.acquire("orders", "b", TTL) is None
        holder = store.lease_holder("orders")
        assert holder is not None
        assert TTL - 5 < holder[2] <= TTL
    finally:
        store.close()


def test_concurrent_fenced_saves_and_grants_are_atomic(redis_server: RedisServer) -> None:
    """Savers race fenced saves, with current and stale tokens, against a thread
    granting new leases: a save that started after a newer grant had returned
    never lands (the check and the write are one step on the server)."""
    store = RedisCursorStore(redis_server.url, prefix="atomic:")
    try:
        first = store.acquire("orders", "h0", TTL)
        assert first is not None
        granted = [first]  # appended only after acquire() returned
        stop = threading.Event()
        outcomes: list[tuple[int, int, bool]] = []  # (token, newest granted at start, landed)
        lock = threading.Lock()

        def saver(index: int) -> None:
            count = 0
            while not stop.is_set():
                with lock:
                    newest = granted[-1]
                    token = granted[-1 - (count + index) % min(3, len(granted))]
                count += 1
                try:
                    store.save_fenced("orders", f"{token}:{index}:{count}", token)
                    landed = True
                except LeaseLostError:
                    landed = False
                with lock:
                    outcomes.append((token, newest, landed))

        savers = [threading.Thread(target=saver, args=(i,)) for i in range(4)]
        for thread in savers:
            thread.start()
        for round_ in range(1, 30):
            store.release("orders", f"h{round_ - 1}", granted[-1])
            token = store.acquire("orders", f"h{round_}", TTL)
            assert token == granted[-1] + 1
            with lock:
                granted.append(token)
        stop.set()
        for thread in savers:
            thread.join(10)
        assert any(landed for _, _, landed in outcomes)
        assert any(not landed for _, _, landed in outcomes)
        stale_landed = [o for o in outcomes if o[2] and o[0] < o[1]]
        assert not stale_landed
        final = store.load("orders")
        assert final is not None
        assert int(final.split(":")[0]) <= granted[-1]
    finally:
        store.close()


# ---------------------------------------------------------------- secrets, TLS


def test_password_from_the_url_works_and_is_never_shown(redis_servers: RedisServers) -> None:
    server = redis_servers.start(appendonly=False, password=PASSWORD)
    store = RedisCursorStore(server.url)
    try:
        token = store.acquire("orders", "a", TTL)
        assert token is not None
        assert PASSWORD not in repr(store)
        assert "127.0.0.1" in repr(store)
        wrong = RedisCursorStore(f"redis://:not-the-{PASSWORD}@127.0.0.1:{server.port}/0")
        with pytest.raises(redis.AuthenticationError) as caught:
            wrong.load("orders")
        assert_no_secret(caught.value, PASSWORD)
        assert PASSWORD not in repr(wrong)
        wrong.close()
    finally:
        store.close()


def assert_no_secret(exc: BaseException, secret: str) -> None:
    seen: list[Any] = []
    current: Any = exc
    while current is not None and len(seen) < 10:
        seen.append(current)
        assert secret not in str(current)
        assert secret not in repr(current)
        current = current.__cause__ or current.__context__


def test_password_never_in_a_connection_error(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nobody listens there
    url = f"redis://user:{PASSWORD}@127.0.0.1:{port}/0?password={PASSWORD}"
    store = RedisCursorStore(url)
    try:
        with pytest.raises(redis.ConnectionError) as caught:
            store.acquire("orders", "a", TTL)
        assert_no_secret(caught.value, PASSWORD)
        assert PASSWORD not in repr(store)
        assert "<redacted>" in repr(store)
        assert PASSWORD not in caplog.text
    finally:
        store.close()


def test_an_error_that_echoes_the_password_is_redacted(redis_server: RedisServer) -> None:
    """Errors whose text holds the password (redis-py puts connection details in
    some) reach the caller with it replaced."""

    class Echoing(redis.Redis):
        def get(self, name: Any) -> Any:
            raise redis.ConnectionError(f"cannot reach redis://:{PASSWORD}@127.0.0.1")

    client = Echoing(host="127.0.0.1", port=redis_server.port, password=PASSWORD)
    store = RedisCursorStore(client)
    with pytest.raises(redis.ConnectionError) as caught:
        store.load("orders")
    assert_no_secret(caught.value, PASSWORD)
    assert "<redacted>" in str(caught.value)
    assert PASSWORD not in repr(store)
    store.close()


def test_rediss_url_means_tls_with_verification() -> None:
    store = RedisCursorStore(f"rediss://:{PASSWORD}@127.0.0.1:6380/2")
    pool: Any = store._redis.connection_pool
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert pool.connection_kwargs.get("ssl_cert_reqs", "required") == "required"
    assert pool.connection_kwargs["password"] == PASSWORD
    assert pool.connection_kwargs["db"] == 2
    assert PASSWORD not in repr(store)
    store.close()
