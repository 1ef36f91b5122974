"""A listener's state and health: :class:`ListenerState`, :class:`ListenerHealth`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

__all__ = ["ListenerHealth", "ListenerState"]


class ListenerState(str, enum.Enum):
    """Where a :class:`~agentstream.Listener` is in its life.

    ``new`` -> ``connecting`` -> ``connected``, and ``retrying`` while it waits
    to reconnect (a listener retries forever by default); ``standby`` while
    another process holds the lease on its name; ``stopping`` once
    :meth:`~agentstream.Listener.stop` was called; then ``stopped`` (stopped,
    or its stream ended) or ``failed`` (an error that is not retried, or a
    thread that died: :attr:`ListenerHealth.last_error` says why).
    """

    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RETRYING = "retrying"
    STANDBY = "standby"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        """True for ``stopped`` and ``failed``: the listener will do nothing more."""
        return self in (ListenerState.STOPPED, ListenerState.FAILED)


@dataclass(frozen=True)
class ListenerHealth:
    """A snapshot of a listener's health (:meth:`Listener.health
    <agentstream.Listener.health>`), for logs, metrics and liveness probes."""

    name: str
    """The listener's name (its key in the cursor store)."""
    state: ListenerState
    """The state (see :class:`ListenerState`)."""
    since: float
    """``time.time()`` when it entered this state."""
    last_error: Optional[str]
    """The last connection error or the reason it failed, as text (no secrets), or None."""
    lag: Optional[float]
    """Seconds between now and the ``occurred_at`` of the last event handled, or None."""
    events_handled: int
    """Events whose handlers have all returned (or raised)."""
    handler_failures: int
    """Handler calls that raised."""
    connection_failures: int
    """Failed connection attempts since the listener started."""
    reconnects: int
    """Connections made after the first one."""
    invalid_events: int
    """Events skipped because they could not be parsed."""
    pending: int
    """Events read and not yet passed by the cursor (at most ``queue_size``
    with several workers; 0 with one, between events)."""
    cursor: Optional[str]
    """The id of the last event handled (in memory)."""
    cursor_saved: Optional[str]
    """The cursor as last written to the cursor store."""
    saved_at: Optional[float]
    """``time.time()`` of that write, or None."""
    lease_token: Optional[int] = None
    """The fencing token of the lease this listener holds, or None."""

    @property
    def ok(self) -> bool:
        """False once the listener has failed or stopped: for a liveness probe.

        A listener that is ``retrying`` is still ok: it will resume by itself,
        and restarting the process would not bring the server back.
        """
        return not self.state.is_final
