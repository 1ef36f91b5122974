"""blinker signals sent by listeners.

All signals live in a private :class:`blinker.Namespace`. Connect with
``weak=False`` for a closure or a lambda: blinker holds receivers weakly by
default, so a function defined inside another one silently disappears once
its scope ends. (Handlers registered with :func:`agentstream.on` and friends
are held strongly; they do not have this problem.)

Receivers run on the listener's threads. An exception in a receiver is
logged (and, for :data:`event_received`, reported on :data:`handler_failed`);
it never stops the listener and never keeps the other receivers from running
(blinker's own ``send()`` would stop at the first receiver that raises;
agentstream sends with :func:`send_each`, which calls them one by one).
"""

from __future__ import annotations

from inspect import iscoroutinefunction
from typing import Any, Callable

from blinker import NamedSignal, Namespace, Signal

__all__ = [
    "connected",
    "disconnected",
    "event_received",
    "failed",
    "handler_failed",
    "heartbeat",
    "invalid_event",
    "retrying",
    "send_each",
    "sequence_reset",
]

_signals: Namespace = Namespace()


def send_each(
    signal: Signal, sender: Any, **kwargs: Any
) -> list[tuple[Callable[..., Any], Exception]]:
    """Call each receiver of ``signal`` for ``sender`` in turn, as blinker's
    ``send()`` does, except that one that raises does not keep the others from
    running. Returns ``(receiver, exception)`` for each that raised.

    Like ``send()``: a muted signal (``with signal.muted():``) calls nobody,
    and a coroutine function is not called but refused with the
    ``RuntimeError`` blinker raises (reported here among the failures).
    """
    if signal.is_muted:
        return []
    failures: list[tuple[Callable[..., Any], Exception]] = []
    for receiver in signal.receivers_for(sender):
        if iscoroutinefunction(receiver):  # the test blinker's send() applies
            failures.append((receiver, RuntimeError("Cannot send to a coroutine function.")))
            continue
        try:
            receiver(sender, **kwargs)
        except Exception as exc:
            failures.append((receiver, exc))
    return failures


event_received: NamedSignal = _signals.signal(
    "event-received",
    doc="""Sent for every event a listener handles, after its decorator handlers.

    Sender: the event type as a string (``"task.shipped"``), so
    ``event_received.connect(fn, sender="task.shipped", weak=False)`` receives
    only that type. Keyword arguments: ``event`` (the
    :class:`~agentstream.models.TaskEvent`), ``listener``.
    """,
)

connected: NamedSignal = _signals.signal(
    "connected",
    doc="""Sent when a listener's stream is connected.

    Sender: the :class:`~agentstream.listener.Listener`. Keyword arguments:
    ``url``, ``cursor`` (the id it resumed from, or None).
    """,
)

disconnected: NamedSignal = _signals.signal(
    "disconnected",
    doc="""Sent when a listener's connection ends.

    Sender: the listener. Keyword arguments: ``reason`` (str), ``error`` (the
    exception, or None for a clean end).
    """,
)

retrying: NamedSignal = _signals.signal(
    "retrying",
    doc="""Sent before a listener waits to reconnect.

    Sender: the listener. Keyword arguments: ``delay`` (seconds), ``attempt``
    (1 for the first retry), ``error``.
    """,
)

failed: NamedSignal = _signals.signal(
    "failed",
    doc="""Sent when a listener gives up (retry budget spent, or an error that is
    not retried such as 401 or 403); the listener then stops.

    Sender: the listener. Keyword arguments: ``error``.
    """,
)

heartbeat: NamedSignal = _signals.signal(
    "heartbeat",
    doc="""Sent for each heartbeat comment the server sends on a quiet stream.

    Sender: the listener. Keyword arguments: ``comment`` (its text).
    """,
)

handler_failed: NamedSignal = _signals.signal(
    "handler-failed",
    doc="""Sent when a handler or a signal receiver raises.

    Sender: the listener (or the registry, when dispatching outside a
    listener). Keyword arguments: ``event``, ``handler``, ``error``. The
    other handlers of the event still run and the stream goes on.
    """,
)

sequence_reset: NamedSignal = _signals.signal(
    "sequence-reset",
    doc="""Sent when an event's sequence went back with an id not delivered
    before: the server's event log was reset. The event is delivered (never
    dropped as a duplicate); look at the server.

    Sender: the listener. Keyword arguments: ``event``, ``previous_sequence``.
    """,
)

invalid_event: NamedSignal = _signals.signal(
    "invalid-event",
    doc="""Sent when an event cannot be parsed (not JSON, no ``id`` or ``type``).

    Sender: the listener. Keyword arguments: ``error``
    (:class:`~agentstream.errors.InvalidEventError`, with ``raw``).
    """,
)
