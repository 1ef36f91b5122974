"""Helpers for testing your own handlers against a real reference server.

Installed as a pytest plugin (entry point ``pytest11``), so with
``agentstream[server]`` installed these fixtures are available in any test:

``agentstream_server``
    a :class:`~agentstream.server.ReferenceServer` on a free port of
    127.0.0.1, its simulated agent running at full speed; stopped after the
    test.
``agentstream_client``
    a :class:`~agentstream.Client` for it, with a fast retry policy.
``agentstream_registry``
    an empty :class:`~agentstream.Registry` to register the handlers under
    test on (so the default registry is left alone).

And, usable with or without pytest: :class:`EventRecorder` (a handler that
records events and lets a test wait for them) and :func:`listening` (a
started listener, connected before it is handed over). Nothing here sleeps:
waits are on conditions, with a bound. See ``examples/test_my_handlers.py``.

The server needs the ``server`` extra (werkzeug); it is imported only when a
fixture that needs it is used.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import pytest

from . import signals
from .client import Client
from .dispatch import Registry
from .event_types import EventType
from .listener import Listener
from .models import TaskEvent
from .sse import RetryPolicy
from .stream import StreamOptions

if TYPE_CHECKING:
    from .server import ReferenceServer

__all__ = [
    "FAST_RETRY",
    "EventRecorder",
    "agentstream_client",
    "agentstream_registry",
    "agentstream_server",
    "listening",
]

FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.1, max_elapsed=10.0)
"""A retry policy for tests: reconnect within milliseconds, give up after 10 s."""


class EventRecorder:
    """A handler that records every event it is called with; tests wait on it.

    ::

        recorder = EventRecorder()
        registry.on("task.shipped")(recorder)
        ...
        (shipped,) = recorder.wait_for(count=1)
    """

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: TaskEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    @property
    def types(self) -> list[str]:
        """The wire types of the recorded events, in order."""
        with self._cond:
            return [str(e.type) for e in self.events]

    def wait_for(
        self,
        predicate: Optional[Callable[[TaskEvent], bool]] = None,
        *,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[TaskEvent]:
        """Wait until ``count`` recorded events match ``predicate``; return them.

        Raises ``AssertionError`` (with what was recorded) after ``timeout``.
        """

        def matching() -> list[TaskEvent]:
            return [e for e in self.events if predicate is None or predicate(e)]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout):
                raise AssertionError(
                    f"waited {timeout}s for {count} matching event(s); recorded: {self.types}"
                )
            return matching()

    def wait_for_type(
        self, event_type: Union[str, EventType], *, count: int = 1, timeout: float = 10.0
    ) -> list[TaskEvent]:
        """Wait for ``count`` events of ``event_type``."""
        wanted = str(event_type)
        return self.wait_for(lambda e: str(e.type) == wanted, count=count, timeout=timeout)


@contextmanager
def listening(
    client: Client,
    registry: Optional[Registry] = None,
    options: Optional[StreamOptions] = None,
    *,
    timeout: float = 10.0,
    **listen_kwargs: Any,
) -> Iterator[Listener]:
    """A started listener whose stream is connected; stopped on exit.

    An unscoped stream starts at the live end, so events published after the
    ``with`` line are certain to reach it.
    """
    connected = threading.Event()
    listener = client.listen(options, registry=registry, **listen_kwargs)

    def on_connected(sender: Any, **kwargs: Any) -> None:
        connected.set()

    on_connect = signals.connected.connected_to(on_connected, sender=listener)
    on_failure = signals.failed.connected_to(on_connected, sender=listener)
    try:
        with on_connect, on_failure:
            listener.start()
            if not connected.wait(timeout):
                raise AssertionError(f"listener did not connect within {timeout}s")
            if listener.error is not None:
                raise listener.error
            yield listener
    finally:
        listener.stop(timeout)


@pytest.fixture
def agentstream_server() -> Iterator[ReferenceServer]:
    """A reference server on a free port of 127.0.0.1 (needs ``agentstream[server]``)."""
    from .server import ReferenceServer

    with ReferenceServer(agent_pace=0.0) as server:
        yield server


@pytest.fixture
def agentstream_client(agentstream_server: ReferenceServer) -> Iterator[Client]:
    """A client for :func:`agentstream_server`, with :data:`FAST_RETRY`."""
    with Client(agentstream_server.url, agentstream_server.api_key, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture
def agentstream_registry() -> Registry:
    """An empty registry for the handlers under test."""
    return Registry()
