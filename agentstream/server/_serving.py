"""``ReferenceServer``: the reference app on werkzeug's threaded server, in a background thread."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Mapping
from typing import Optional, Union

from ._app import ReferenceApp, create_app
from ._auth import ALL_SCOPES, ApiKey, KeySpec
from ._config import ServerConfig
from ._http import HTTPServer
from ._store import DEFAULT_RETENTION, EventStore
from ._webhooks import WebhookConfig

__all__ = ["ReferenceServer", "generate_api_key"]

logger = logging.getLogger(__name__)

_CLOSE_GRACE = 1.0  # seconds connections get to finish by themselves at stop()
_IDLE_CHECK = 1.0  # seconds; stop() wakes the accept loop at once anyway


def generate_api_key() -> str:
    """A fresh random development API key."""
    return f"as_dev_{secrets.token_urlsafe(24)}"


class ReferenceServer:
    """The reference server on 127.0.0.1, served by werkzeug's threaded server.

    :param db_path: the SQLite event log; None uses a temporary file that
        :meth:`stop` deletes. A new server on the same file replays from the
        same cursors and resumes unfinished simulated runs.
    :param api_keys: ``{key: ApiKey(scopes, organization_id)}`` or ``{key:
        scopes}`` (a key of the default organization); None creates one key with every
        scope (:attr:`api_key`).
    :param host: interface to bind.
    :param port: TCP port; 0 picks a free one (see :attr:`url`).
    :param agent_pace: seconds between two events of a simulated run.
    :param retention: how many events the log keeps at most.
    :param heartbeat_default: heartbeat interval of streams that do not ask for one.
    :param config: timeouts, the connection cap and stream backlogs
        (:class:`ServerConfig`; its defaults when None).
    :param webhooks: how webhooks are delivered (see ``WebhookConfig``).

    :meth:`start` it (or use it as a context manager), then point clients at
    :attr:`url` with :attr:`api_key`. :attr:`store` publishes events from
    Python.
    """

    def __init__(
        self,
        db_path: Optional[Union[str, os.PathLike[str]]] = None,
        *,
        api_keys: Optional[Mapping[str, KeySpec]] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        agent_pace: float = 0.2,
        retention: int = DEFAULT_RETENTION,
        heartbeat_default: float = 15.0,
        config: Optional[ServerConfig] = None,
        webhooks: Optional[WebhookConfig] = None,
    ) -> None:
        if api_keys is None:
            key = generate_api_key()
            keys: dict[str, ApiKey] = {key: ApiKey(ALL_SCOPES)}
            self.api_key: str = key
        else:
            keys = {
                k: v if isinstance(v, ApiKey) else ApiKey(frozenset(v)) for k, v in api_keys.items()
            }
            if not keys:
                raise ValueError("api_keys must hold at least one key")
            full = [k for k, spec in keys.items() if spec.scopes >= ALL_SCOPES]
            self.api_key = full[0] if full else next(iter(keys))
        self._keys = keys
        self._db_path = None if db_path is None else os.fspath(db_path)
        self._host = host
        self._port = port
        self._agent_pace = agent_pace
        self._retention = retention
        self._heartbeat_default = heartbeat_default
        self.config: ServerConfig = config or ServerConfig()
        self._webhooks = webhooks
        self._store: Optional[EventStore] = None
        self._app: Optional[ReferenceApp] = None
        self._server: Optional[HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._tempdir: Optional[str] = None
        self._stopping = threading.Event()
        self._state = "new"
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ attributes

    @property
    def url(self) -> str:
        """Base URL, for example ``http://127.0.0.1:54321`` (after :meth:`start`)."""
        server = self._require_started()
        host = self._host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{server.port}"

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        return self._require_started().port

    @property
    def organizations(self) -> frozenset[str]:
        """The organizations the API keys act for (after :meth:`start`)."""
        return self.app.organizations

    @property
    def open_connections(self) -> int:
        """How many client connections are open right now (streams included)."""
        return self._require_started().connections.count()

    @property
    def store(self) -> EventStore:
        """The event store (after :meth:`start`)."""
        self._require_started()
        assert self._store is not None
        return self._store

    @property
    def app(self) -> ReferenceApp:
        """The WSGI application (after :meth:`start`)."""
        self._require_started()
        assert self._app is not None
        return self._app

    @property
    def db_path(self) -> Optional[str]:
        """The SQLite file (the temporary one once started without ``db_path``)."""
        return self._db_path

    def _require_started(self) -> HTTPServer:
        if self._server is None:
            raise RuntimeError("the server is not started: call start() first")
        return self._server

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ReferenceServer:
        """Open the store, bind the port and serve in a daemon thread. Returns self."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError("a ReferenceServer can be started once")
            self._state = "starting"
        try:
            if self._db_path is None:
                self._tempdir = tempfile.mkdtemp(prefix="agentstream-")
                self._db_path = os.path.join(self._tempdir, "events.sqlite3")
            self._store = EventStore(self._db_path, retention=self._retention)
            self._app = create_app(
                self._store,
                api_keys=self._keys,
                agent_pace=self._agent_pace,
                heartbeat_default=self._heartbeat_default,
                stream_backlog=self.config.stream_backlog,
                webhooks=self._webhooks,
                fanout_interval=self.config.fanout_interval,
            )
            self._server = HTTPServer(self._host, self._port, self._app, self.config)
        except BaseException:
            self._cleanup()
            self._state = "stopped"
            raise
        self._thread = threading.Thread(
            target=self._serve,
            args=(self._server,),
            name=f"agentstream-server-{self._server.port}",
            daemon=True,
        )
        self._thread.start()
        self._state = "running"
        logger.info("reference server listening on %s", self.url)
        return self

    def _serve(self, server: HTTPServer) -> None:
        # serve_forever() would poll a shutdown flag; this loop is woken by _wake() instead.
        server.timeout = _IDLE_CHECK
        while not self._stopping.is_set():
            try:
                server.handle_request()
            except Exception:  # pragma: no cover - socketserver handles per-request errors
                logger.exception("accept loop error")

    def _wake(self, server: HTTPServer) -> None:
        """Connect to our own port so that the accept loop returns and sees the stop flag."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        with contextlib.suppress(OSError), socket.create_connection((host, server.port), 1.0):
            pass

    def drop_streams(self) -> int:
        """Abruptly close every open stream connection (clients see a cut and reconnect)."""
        return self.app.drop_streams()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: end open streams, stop simulated runs, close the store.

        Nothing in the log is lost; unfinished runs stay unfinished and a
        server started later on the same file resumes them. Idempotent.
        """
        with self._lock:
            if self._state in ("new", "stopped"):
                self._state = "stopped"
                return
            self._state = "stopped"
        self._stopping.set()
        if self._server is not None:
            self._server.stopping.set()
        if self._server is not None and self._thread is not None:
            self._wake(self._server)
            self._thread.join(timeout)  # no new connections from here on
        if self._app is not None:
            self._app.close(timeout)  # ends streams, stops the agent
        if self._server is not None:
            self._server.connections.close_all(min(timeout, _CLOSE_GRACE), timeout)
        self._cleanup()
        logger.info("reference server stopped")

    def _cleanup(self) -> None:
        if self._server is not None:
            self._server.server_close()
        if self._store is not None:
            self._store.close()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)

    def __enter__(self) -> ReferenceServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None and self._state == "running" else "-"
        return f"<ReferenceServer {self._state} {where}>"
