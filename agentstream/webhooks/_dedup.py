"""Handled once: claims on event ids, and a registry that dispatches through them.

An event may arrive twice: by the stream and by a webhook, or by a webhook
retried after its 2xx was lost, or replayed. Before its handlers run, the
event id is *claimed* in a store the deployment already has; a claim is
``in_progress`` for ``claim_ttl`` seconds (so a receiver that died while
handling does not block the event forever), then ``handled`` for
``retention`` seconds once the handlers succeeded, or released when one
failed (so the sender's retry runs them again).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, Protocol, runtime_checkable

from blinker import Signal

from ..dispatch import DispatchResult, Handler, Registry, default_registry
from ..models import TaskEvent

__all__ = [
    "DEFAULT_CLAIM_TTL",
    "DEFAULT_RETENTION",
    "Claim",
    "DedupStore",
    "DeduplicatingRegistry",
    "MemoryDedupStore",
    "OnceResult",
    "Outcome",
]

logger = logging.getLogger(__name__)

DEFAULT_CLAIM_TTL = 300.0
"""Seconds an event stays ``in_progress`` after its claim: longer than any handler runs."""
DEFAULT_RETENTION = 7 * 24 * 3600.0
"""Seconds a handled event id is remembered (7 days): longer than the server's
whole retry schedule and than any stream replay after a restart."""


class Claim(str, enum.Enum):
    """What :meth:`DedupStore.claim` found."""

    CLAIMED = "claimed"
    """Nobody had it: the caller now holds it and must run the handlers."""
    IN_PROGRESS = "in_progress"
    """Someone else claimed it and has not finished (nor released) it yet."""
    HANDLED = "handled"
    """Its handlers already succeeded, within the retention window."""


@runtime_checkable
class DedupStore(Protocol):
    """Where event ids are claimed. Every operation is atomic across the
    processes that share the store."""

    def claim(self, event_id: str, ttl: float) -> Claim:
        """Claim ``event_id`` for ``ttl`` seconds unless it is claimed or handled."""
        ...

    def complete(self, event_id: str, retention: float) -> None:
        """Record ``event_id`` as handled, for ``retention`` seconds."""
        ...

    def release(self, event_id: str) -> None:
        """Drop an unfinished claim (its handlers failed): it may be claimed again."""
        ...


class MemoryDedupStore:
    """Claims in this process's memory (one process; lost when it ends)."""

    def __init__(self, *, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Claim, float]] = {}
        self._next_sweep = 0.0

    def __repr__(self) -> str:
        return f"MemoryDedupStore(<{len(self._entries)} id(s)>)"

    def claim(self, event_id: str, ttl: float) -> Claim:
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:  # drop expired ids at most once a minute
                self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
                self._next_sweep = now + 60.0
            entry = self._entries.get(event_id)
            if entry is not None and entry[1] > now:
                return entry[0]
            self._entries[event_id] = (Claim.IN_PROGRESS, now + ttl)
            return Claim.CLAIMED

    def complete(self, event_id: str, retention: float) -> None:
        with self._lock:
            self._entries[event_id] = (Claim.HANDLED, self._clock() + retention)

    def release(self, event_id: str) -> None:
        with self._lock:
            entry = self._entries.get(event_id)
            if entry is not None and entry[0] is Claim.IN_PROGRESS:
                del self._entries[event_id]


class Outcome(str, enum.Enum):
    """What :meth:`DeduplicatingRegistry.dispatch_once` did with an event."""

    HANDLED = "handled"
    """The handlers ran and none raised."""
    FAILED = "failed"
    """The handlers ran and one raised: the claim was released."""
    DUPLICATE = "duplicate"
    """Already handled: nothing ran."""
    IN_PROGRESS = "in_progress"
    """Being handled elsewhere right now: nothing ran."""


@dataclass(frozen=True)
class OnceResult:
    """The outcome and, when handlers ran, the :class:`DispatchResult`."""

    outcome: Outcome
    result: DispatchResult


_NOTHING_RAN = DispatchResult(0, ())


class DeduplicatingRegistry(Registry):
    """A view of a :class:`Registry` whose dispatch runs each event id once.

    Give the same object (or two over the same ``store``) to a Listener
    (``client.listen(registry=...)``) and to a
    :class:`~agentstream.webhooks.WebhookReceiver`: an event that arrives by
    both paths is handled by whichever claims it first. Registering on it
    (``@dedup.on(...)``, :meth:`add`, ...) registers on the wrapped registry.

    :param store: where event ids are claimed (memory, SQLite, Redis, ...).
    :param registry: the handlers; default the module-level decorators' one.
    :param claim_ttl: seconds a claim holds while its handlers run.
    :param retention: seconds a handled id is remembered.

    When the store fails (a Redis that is down), the stream path still runs
    the handlers (an event is never dropped for want of a store: it may then
    be handled twice) and logs the error; the webhook receiver answers 503
    instead, so the sender retries.
    """

    def __init__(
        self,
        store: DedupStore,
        registry: Optional[Registry] = None,
        *,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        retention: float = DEFAULT_RETENTION,
    ) -> None:
        super().__init__()
        if not claim_ttl > 0 or not retention > 0:
            raise ValueError("claim_ttl and retention must be more than 0 seconds")
        self.store = store
        self.registry: Registry = registry if registry is not None else default_registry
        self.claim_ttl: float = float(claim_ttl)
        self.retention: float = float(retention)

    def __repr__(self) -> str:
        return f"DeduplicatingRegistry({self.store!r}, {len(self)} handler(s))"

    # Registering goes to the wrapped registry.
    def add(
        self,
        handler: Handler,
        event_types: tuple[Any, ...] = ("*",),
        *,
        task_id: Optional[str] = None,
    ) -> None:
        self.registry.add(handler, event_types, task_id=task_id)

    def remove(self, handler: Handler) -> bool:
        return self.registry.remove(handler)

    def clear(self) -> None:
        self.registry.clear()

    def __len__(self) -> int:
        return len(self.registry)

    def handlers_for(self, event: TaskEvent) -> tuple[Handler, ...]:
        return self.registry.handlers_for(event)

    def dispatch_once(
        self, event: TaskEvent, *, sender: Any = None, signal: Optional[Signal] = None
    ) -> OnceResult:
        """Claim ``event.id``; run the handlers only if this call got the claim.

        Errors of the store propagate (nothing ran); handler errors do not
        (they are in the result, as with :meth:`Registry.dispatch`).
        """
        claim = self.store.claim(event.id, self.claim_ttl)
        if claim is Claim.HANDLED:
            return OnceResult(Outcome.DUPLICATE, _NOTHING_RAN)
        if claim is Claim.IN_PROGRESS:
            return OnceResult(Outcome.IN_PROGRESS, _NOTHING_RAN)
        try:
            result = self.registry.dispatch(event, sender=sender, signal=signal)
        except BaseException:
            self._settle(event.id, failed=True)
            raise
        self._settle(event.id, failed=bool(result.errors))
        return OnceResult(Outcome.FAILED if result.errors else Outcome.HANDLED, result)

    def _settle(self, event_id: str, *, failed: bool) -> None:
        try:
            if failed:
                self.store.release(event_id)
            else:
                self.store.complete(event_id, self.retention)
        except Exception:
            # The claim then simply expires after claim_ttl.
            logger.exception("could not record event %s in the dedup store", event_id)

    def dispatch(
        self, event: TaskEvent, *, sender: Any = None, signal: Optional[Signal] = None
    ) -> DispatchResult:
        """:meth:`dispatch_once` for callers that expect a :class:`DispatchResult`
        (a Listener): a duplicate, or an event being handled elsewhere, runs nothing."""
        try:
            return self.dispatch_once(event, sender=sender, signal=signal).result
        except Exception:
            logger.exception(
                "dedup store failed on event %s: handling it anyway (it may be handled twice)",
                event.id,
            )
            return self.registry.dispatch(event, sender=sender, signal=signal)
