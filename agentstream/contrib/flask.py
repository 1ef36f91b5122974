"""agentstream for Flask: the ``AgentStream`` extension and ``flask agentstream``.

::

    from agentstream import on
    from agentstream.contrib.flask import AgentStream

    agentstream = AgentStream()

    def create_app():
        app = Flask(__name__)
        app.config["AGENTSTREAM_CURSOR_STORE"] = "sqlite:///instance/agentstream.sqlite3"
        agentstream.init_app(app)
        return app

    @on("task.shipped")
    def shipped(event):
        current_app.logger.info("shipped %s", event.task_id)   # inside the app context

Run the listener as its own process (the recommended deployment)::

    flask --app myapp agentstream listen

Configuration keys (``app.config``; each falls back as said):

- ``AGENTSTREAM_BASE_URL``: the server; default the ``AGENTSTREAM_BASE_URL``
  environment variable, else ``http://127.0.0.1:8787``.
- ``AGENTSTREAM_API_KEY``: default the ``AGENTSTREAM_API_KEY`` environment
  variable. Not needed to start the app; needed to connect.
- ``AGENTSTREAM_LISTENER_NAME``: the listener's name, its cursor and lease
  (``"default"``).
- ``AGENTSTREAM_CURSOR_STORE``: ``"sqlite:///relative/path"``,
  ``"sqlite:////absolute/path"``, ``"redis://..."``, ``"memory"`` or a store
  object; default ``sqlite:///<app.instance_path>/agentstream.sqlite3``.
- ``AGENTSTREAM_EVENT_TYPES``: a list of event types to follow (all).
- ``AGENTSTREAM_HEARTBEAT_SECONDS`` (15), ``AGENTSTREAM_WORKERS`` (1),
  ``AGENTSTREAM_QUEUE_SIZE`` (1000), ``AGENTSTREAM_SAVE_INTERVAL``,
  ``AGENTSTREAM_LEASE_TTL``, ``AGENTSTREAM_STOP_TIMEOUT`` (the Listener's
  defaults), ``AGENTSTREAM_TIMEOUT`` (30 s for connecting and API calls).
- ``AGENTSTREAM_START_LISTENER`` (False): opt in to starting the listener
  inside the web process, at its first request, guarded by a lease (see
  ``docs/flask.md``).

Receiving webhooks (``docs/webhooks.md``): with ``AGENTSTREAM_WEBHOOK_SECRETS``
set (a secret, or a list of them during a rotation), ``init_app`` registers
the blueprint ``agentstream`` with one route, ``POST
AGENTSTREAM_WEBHOOK_PATH`` (``"/agentstream/webhooks"``; endpoint
``agentstream.webhook``), which verifies each delivery and runs the same
handlers, each event once across the webhooks and the stream:

- ``AGENTSTREAM_WEBHOOK_DEDUP``: where event ids are claimed, spelled as
  the cursor store is (``"sqlite:///..."``, ``"redis://..."``, ``"memory"``,
  or a store object); default the cursor store's URL when it is a string,
  else ``sqlite:///<app.instance_path>/agentstream.sqlite3``.
- ``AGENTSTREAM_WEBHOOK_TOLERANCE`` (300 s), ``AGENTSTREAM_WEBHOOK_ACCEPT_AGENTRAIL``
  (False).

A live task page: a view that returns :meth:`AgentStream.live_response`
answers the browser's ``EventSource`` with the task's events as they happen
(``docs/live-pages.md``)::

    @app.get("/tasks/<task_id>/events")
    def task_events(task_id):
        check_the_user_may_see(task_id)  # the helper streams any task it is given
        return agentstream.live_response(task_id)
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional, Union, cast

import click
from flask import Blueprint, Flask, Response, current_app, request
from flask.cli import AppGroup

from .. import signals
from ..client import Client
from ..cursors import CursorStore
from ..dispatch import Registry, default_registry
from ..errors import AgentStreamError, ConfigurationError
from ..event_types import EventType
from ..listener import Listener
from ..models import TaskEvent
from ..webhooks import DeduplicatingRegistry, DedupStore, WebhookReceiver
from . import _common
from ._live import DEFAULT_PAGE_HEARTBEAT_SECONDS, LiveStreamRefused, open_live_stream
from ._settings import KEYS, WEBHOOK_KEYS, ListenerSettings, WebhookSettings

__all__ = ["AgentStream"]

logger: logging.Logger = logging.getLogger(__name__)

EXTENSION = "agentstream"
DEFAULT_WEBHOOK_PATH = "/agentstream/webhooks"
FLASK_KEYS = (*KEYS, *WEBHOOK_KEYS, "WEBHOOK_PATH")
"""Every ``AGENTSTREAM_*`` key the extension reads (without the prefix)."""
LISTEN_COMMAND = "flask agentstream listen"
MISSING_KEY_HINT = (
    "set app.config['AGENTSTREAM_API_KEY'] or the AGENTSTREAM_API_KEY environment "
    "variable (`agentstream serve` prints a development key)"
)


def _label(key: str) -> str:
    return f"AGENTSTREAM_{key}"


@dataclass
class _AppState:
    """What the extension keeps for one app, in ``app.extensions["agentstream"]``."""

    extension: AgentStream
    settings: ListenerSettings
    webhooks: WebhookSettings
    client: Optional[Client] = None
    listener: Optional[Listener] = None
    once: Optional[DeduplicatingRegistry] = None  # over the app's one dedup store
    receiver: Optional[WebhookReceiver] = None
    start_checked: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class AgentStream:
    """The Flask extension: configuration from ``app.config``, a client per
    app, handlers run inside the app context, and the ``flask agentstream``
    commands.

    :param app: the app, or None to call :meth:`init_app` later (app factories).
    :param registry: the handlers; default the one the module-level
        decorators (:func:`agentstream.on`) fill.
    """

    def __init__(self, app: Optional[Flask] = None, *, registry: Optional[Registry] = None) -> None:
        self.registry: Registry = registry if registry is not None else default_registry
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app``: read and check its ``AGENTSTREAM_*`` keys, add
        the ``flask agentstream`` commands. Starts nothing and connects to
        nothing (the opt-in in-process start waits for the first request).

        A wrong value raises :class:`~agentstream.errors.ConfigurationError`;
        a missing key does not (the app starts; connecting needs it).
        """
        if EXTENSION in app.extensions:
            raise RuntimeError(
                "An 'AgentStream' instance is already registered on this Flask app. "
                "Import and use that instance instead."
            )
        for key in FLASK_KEYS:
            app.config.setdefault(_label(key), None)
        settings = ListenerSettings.read(lambda key: app.config.get(_label(key)), _label)
        webhooks = WebhookSettings.read(lambda key: app.config.get(_label(key)), _label)
        path = app.config[_label("WEBHOOK_PATH")] or DEFAULT_WEBHOOK_PATH
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(
                f"{_label('WEBHOOK_PATH')} must be a URL path that starts with '/', got {path!r}"
            )
        app.extensions[EXTENSION] = _AppState(self, settings, webhooks)
        app.cli.add_command(_cli)
        if webhooks.enabled:
            app.register_blueprint(_blueprint, url_prefix=path)
        if settings.start_listener:
            app.before_request(lambda: self._start_in_process(app))

    # -- per app ------------------------------------------------------------------

    def _state(self, app: Optional[Flask] = None) -> _AppState:
        if app is None:
            try:
                app = current_app._get_current_object()  # type: ignore[attr-defined]
            except RuntimeError:
                raise RuntimeError(
                    "Working outside of application context: use `with app.app_context():` "
                    "or pass the app"
                ) from None
        state = app.extensions.get(EXTENSION)
        if state is None or state.extension is not self:
            raise RuntimeError(
                "The current Flask app is not registered with this 'AgentStream' instance. "
                "Did you forget to call 'init_app', or did you create multiple "
                "'AgentStream' instances?"
            )
        assert isinstance(state, _AppState)
        return state

    @property
    def client(self) -> Client:
        """The current app's :class:`~agentstream.Client` (made on first use;
        a missing API key is a ConfigurationError here)."""
        return self._client_for(self._state())

    @property
    def listener(self) -> Optional[Listener]:
        """The current app's in-process listener, if one was started."""
        return self._state().listener

    def settings(self, app: Optional[Flask] = None) -> ListenerSettings:
        """The checked ``AGENTSTREAM_*`` configuration of ``app`` (default: the current app)."""
        return self._state(app).settings

    def cursor_store(self, app: Optional[Flask] = None) -> CursorStore:
        """A new store as ``AGENTSTREAM_CURSOR_STORE`` names it (default: SQLite in
        the app's instance folder)."""
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        configured = self._state(app).settings.cursor_store
        if configured is None:
            configured = self._default_store(app)
        return _common.cursor_store_from_url(configured)

    def dedup_store(self, app: Optional[Flask] = None) -> DedupStore:
        """The app's one webhook dedup store, as ``AGENTSTREAM_WEBHOOK_DEDUP``
        names it (default: the cursor store's URL when it is a string, else
        SQLite in the app's instance folder). The webhook route and the
        listeners of this process share it."""
        return self._once(self._app(app)).store

    def webhook_receiver(self, app: Optional[Flask] = None) -> WebhookReceiver:
        """The app's :class:`~agentstream.webhooks.WebhookReceiver` (made on
        first use): ``AGENTSTREAM_WEBHOOK_SECRETS`` and the extension's
        handlers behind :meth:`dedup_store`. Without a secret configured, a
        ConfigurationError."""
        app = self._app(app)
        state = self._state(app)
        if not state.webhooks.enabled:
            raise ConfigurationError(
                f"no webhook secret: set app.config[{_label('WEBHOOK_SECRETS')!r}]"
            )
        once = self._once(app)
        with state.lock:
            if state.receiver is None:
                state.receiver = state.webhooks.receiver(once)
            return state.receiver

    @staticmethod
    def _app(app: Optional[Flask]) -> Flask:
        found: Flask = app or current_app._get_current_object()  # type: ignore[attr-defined]
        return found

    def _once(self, app: Flask) -> DeduplicatingRegistry:
        """The extension's handlers behind the app's one dedup store."""
        state = self._state(app)
        with state.lock:
            if state.once is None:
                configured = state.webhooks.dedup
                if configured is None:
                    cursors = state.settings.cursor_store
                    configured = cursors if isinstance(cursors, str) else self._default_store(app)
                store = _common.dedup_store_from_url(configured)
                state.once = WebhookSettings.once(store, self.registry)
            return state.once

    @staticmethod
    def _default_store(app: Flask) -> str:
        return "sqlite:///" + os.path.join(app.instance_path, "agentstream.sqlite3")

    def create_listener(
        self,
        app: Optional[Flask] = None,
        *,
        name: Optional[str] = None,
        workers: Optional[int] = None,
        heartbeat_seconds: Optional[int] = None,
        event_types: Optional[list[str]] = None,
        cursor_store: Optional[CursorStore] = None,
    ) -> Listener:
        """A listener (not started) for ``app``'s configuration, whose handlers
        run inside ``app``'s application context, one context per event
        (``current_app``, ``g`` and extensions work; teardown functions, as
        Flask-SQLAlchemy's session cleanup, run after each event). The
        arguments override the configuration; ``cursor_store`` defaults to a
        new :meth:`cursor_store`. With webhooks on (``AGENTSTREAM_WEBHOOK_SECRETS``),
        the listener dispatches through :meth:`dedup_store`'s claims too, so an
        event that also arrives by webhook is handled once."""
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        state = self._state(app)
        settings = state.settings
        kwargs = settings.listen_kwargs()
        if name is not None:
            kwargs["name"] = name
        if workers is not None:
            kwargs["workers"] = workers
        options = settings.stream_options(
            heartbeat_seconds=heartbeat_seconds, event_types=event_types or None
        )
        client = self._client_for(state)

        @contextmanager
        def app_context(event: TaskEvent) -> Iterator[None]:
            with app.app_context():
                yield

        return _common.listen(
            client,
            options,
            handler_context=app_context,
            registry=self._once(app) if state.webhooks.enabled else self.registry,
            cursor_store=cursor_store if cursor_store is not None else self.cursor_store(app),
            **kwargs,
        )

    def live_response(
        self,
        task_id: Optional[str] = None,
        *,
        event_types: Optional[Sequence[Union[str, EventType]]] = None,
        heartbeat_seconds: float = DEFAULT_PAGE_HEARTBEAT_SECONDS,
        retry_ms: Optional[int] = None,
    ) -> Response:
        """A ``text/event-stream`` response for the current request: a live
        task page's ``EventSource`` reads it (``docs/live-pages.md``).

        With ``task_id``, the task's events from its first one to its
        ``task.finished`` (then the response ends), over the current app's
        client's shared task streams: one upstream connection however many
        pages are open. Without it, the events of ``event_types`` (all when
        None) from the live end, on a stream of their own. Each event is one
        SSE frame (``id``: the event id, ``event``: its type, ``data``: its JSON
        envelope); a comment follows every ``heartbeat_seconds`` without one.

        The request's ``Last-Event-ID`` header (what the browser sends when it
        reconnects) resumes after that event: nothing missed, nothing twice.
        A browser that goes away is noticed at the next write (within two
        heartbeats) and its upstream and thread are freed. The API key never
        leaves the server.

        Each open page holds one worker thread of the web server for as long
        as it is open (size gunicorn's ``--threads`` for it). The view must
        check that the user may see the task: this streams any task it is given.

        Answers 404 for an unknown task or one not created with
        ``events_streaming=True``, 400 or 410 for a ``Last-Event-ID`` the
        server refuses, and 204 for a finished task resumed after its last
        event (``EventSource`` does not retry those).
        """
        state = self._state()
        last_event_id = request.headers.get("Last-Event-ID") or None
        try:
            live = open_live_stream(
                self._client_for(state),
                task_id=task_id,
                event_types=event_types,
                last_event_id=last_event_id,
                heartbeat_seconds=heartbeat_seconds,
                retry_ms=retry_ms,
                upstream_heartbeat_seconds=state.settings.heartbeat_seconds,
            )
        except LiveStreamRefused as refused:
            return Response(refused.message, status=refused.status, mimetype="text/plain")
        return Response(live, status=live.status, headers=live.headers)

    def _client_for(self, state: _AppState) -> Client:
        with state.lock:
            if state.client is None:
                state.client = state.settings.client(MISSING_KEY_HINT)
            return state.client

    # -- the opt-in in-process start -------------------------------------------------

    def _start_in_process(self, app: Flask) -> None:
        """At a request, once per process: start the listener if it is safe."""
        state = self._state(app)
        with state.lock:
            first = not state.start_checked
            state.start_checked = True
        if not first or app.testing:
            return
        try:
            store = self.cursor_store(app)
            reason = _common.in_process_refusal(store, LISTEN_COMMAND)
            if reason is not None:
                logger.error(
                    "AGENTSTREAM_START_LISTENER is set, but no listener was started in "
                    "process %d: %s",
                    os.getpid(),
                    reason,
                )
                close = getattr(store, "close", None)
                if callable(close):
                    close()
                return
            listener = self.create_listener(app, cursor_store=store)
        except AgentStreamError as exc:
            logger.error("AGENTSTREAM_START_LISTENER: no listener started: %s", exc)
            return
        state.listener = listener.start()
        atexit.register(listener.stop, 5.0)
        logger.info("agentstream: in-process listener started in process %d", os.getpid())


# -- the webhook route ---------------------------------------------------------------

_blueprint = Blueprint("agentstream", __name__)


@_blueprint.post("", endpoint="webhook", strict_slashes=False)
def _webhook() -> Response:
    """``POST AGENTSTREAM_WEBHOOK_PATH``: one delivery, verified, de-duplicated and
    handled in this request's app context; answered with the status
    :class:`~agentstream.webhooks.WebhookReceiver` decides."""
    receiver = _extension_of_app().webhook_receiver()
    length = request.content_length
    if length is not None and length > receiver.max_body_bytes:
        answer = receiver.too_large()  # refused before the body is read
    else:
        answer = receiver.handle(request.get_data(cache=False), dict(request.headers.items()))
    return Response(answer.body, status=answer.status, headers=answer.headers)


def _extension_of_app() -> AgentStream:
    state = current_app.extensions[EXTENSION]
    assert isinstance(state, _AppState)
    return state.extension


# -- the commands ------------------------------------------------------------------

_cli = AppGroup("agentstream", help="Follow the agentstream event stream with this app's handlers.")

# AppGroup.command is unannotated before Flask 3.0 (`make test-compat` type-checks
# on Flask 2.3): one typed view of it for both.
_command = cast("Callable[[str], Callable[[Callable[..., Any]], click.Command]]", _cli.command)


def _extension() -> AgentStream:
    state = current_app.extensions.get(EXTENSION)
    if not isinstance(state, _AppState):
        raise click.UsageError("this app has no AgentStream extension: call init_app(app)")
    return state.extension


@_command("listen")
@click.option("--name", help="Listener name: its cursor and lease (AGENTSTREAM_LISTENER_NAME).")
@click.option("--workers", type=int, help="Handler threads (AGENTSTREAM_WORKERS).")
@click.option("--heartbeat", type=int, help="Heartbeat seconds, 1..300.")
@click.option(
    "--event-type", "event_types", multiple=True, help="Only this event type (repeatable)."
)
@click.option("--stop-timeout", type=float, help="Seconds a stop waits for a running handler.")
@click.option("-v", "--verbose", is_flag=True, help="Log connections and retries (INFO).")
def _listen(
    name: Optional[str],
    workers: Optional[int],
    heartbeat: Optional[int],
    event_types: tuple[str, ...],
    stop_timeout: Optional[float],
    verbose: bool,
) -> None:
    """Run the listener in this process until SIGINT or SIGTERM (exit 0); a
    listener that fails exits non-zero with the reason."""
    _common.log_to_stderr(verbose)
    extension = _extension()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        listener = extension.create_listener(
            app,
            name=name,
            workers=workers,
            heartbeat_seconds=heartbeat,
            event_types=list(event_types),
        )
        settings = extension.settings(app)
    except (ConfigurationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    client = extension._client_for(extension._state(app))
    click.echo(
        f"agentstream: listening as {listener.name!r} on {client.base_url} "
        f"({len(listener.registry)} handlers, cursor store "
        f"{type(listener.cursor_store).__name__}); Ctrl-C or SIGTERM stops"
    )

    def connected(sender: object, *, cursor: object = None, **kwargs: object) -> None:
        click.echo(f"agentstream: connected, resuming after {cursor or '(live end)'}")

    try:
        with signals.connected.connected_to(connected, sender=listener):
            _common.run_forever(
                listener, stop_timeout if stop_timeout is not None else settings.stop_timeout
            )
    finally:
        client.close()
    click.echo(f"agentstream: stopped, cursor {listener.cursor}")


@_command("tail")
@click.option("--type", "types", multiple=True, help="Only this event type (repeatable).")
@click.option("--task", help="Only this task's events (ends after it finishes).")
@click.option("--cursor", help="Resume after this event id.")
@click.option("--heartbeat", type=int, help="Heartbeat seconds (1..300).")
@click.option("--json", "as_json", is_flag=True, help="One JSON envelope per line.")
def _tail(
    types: tuple[str, ...],
    task: Optional[str],
    cursor: Optional[str],
    heartbeat: Optional[int],
    as_json: bool,
) -> None:
    """Print this app's server's events as they arrive (handlers do not run)."""
    extension = _extension()
    try:
        options = extension.settings().stream_options(
            event_types=list(types) or None,
            task_id=task,
            cursor=cursor,
            heartbeat_seconds=heartbeat,
        )
        client = extension.client
    except (ConfigurationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        with client.stream_events(options) as stream:
            for event in stream:
                click.echo(_common.format_event(event, as_json=as_json))
    except KeyboardInterrupt:
        return
    except AgentStreamError as exc:
        raise click.ClickException(str(exc)) from None
