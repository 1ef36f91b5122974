"""Webhook delivery of the reference server: subscriptions, pending deliveries, retries.

Everything lives in the server's SQLite database, in tables of its own
(``webhook_subscriptions``, ``webhook_deliveries``, ``webhook_state``,
``webhook_idempotency``), written through the event store's connection (the
store holds the file's lock, one server per file).

Two threads and a small pool:

- the *enqueuer* tails the event log like a stream does, from a position
  saved in ``webhook_state``; for each new event it inserts one pending
  delivery per matching subscription, and moves the position, in one
  transaction: an event is enqueued once, whatever crashes;
- the *sender* picks the deliveries that are due and hands them to the pool,
  which POSTs each one, signed twice (Standard Webhooks and AgentRail's
  headers), and records the answer: delivered on a 2xx; on a timeout, a
  refused connection, a 5xx, 408, 409, 425 or 429, again after a backoff
  with jitter (``retryPolicy``; ``Retry-After`` honoured); any other answer,
  or ``maxAttempts`` spent, fails the delivery. ``disable_after`` failed
  deliveries in a row (no success between) disable the subscription.

A delivery in flight when the server dies is sent again at the next start
(at-least-once; ``webhook-id`` is the event id, stable across attempts, so a
receiver de-duplicates).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import secrets as _random
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import urlsplit

import requests

from .. import __version__
from ..webhooks._signing import Signer, generate_secret
from ._errors import StoreClosedError
from ._events import StoredEvent, utc_now_iso
from ._store import EventStore

__all__ = [
    "DeliveryRecord",
    "RetryPolicy",
    "Subscription",
    "WebhookConfig",
    "WebhookDelivery",
    "backoff_delay",
    "host_allowed",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS webhook_subscriptions ("
    " id TEXT PRIMARY KEY, organization_id TEXT, url TEXT NOT NULL, event_types TEXT,"
    " task_ids TEXT, description TEXT, secret TEXT NOT NULL, secret_generated INTEGER NOT NULL,"
    " previous_secret TEXT, previous_secret_until REAL, status TEXT NOT NULL,"
    " max_attempts INTEGER NOT NULL, initial_backoff INTEGER NOT NULL,"
    " max_backoff INTEGER NOT NULL, start_after INTEGER NOT NULL,"
    " failed_in_a_row INTEGER NOT NULL DEFAULT 0, disabled_reason TEXT,"
    " created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS webhook_deliveries ("
    " id TEXT PRIMARY KEY, subscription_id TEXT NOT NULL, event_sequence INTEGER NOT NULL,"
    " event_id TEXT NOT NULL, event_type TEXT NOT NULL, body TEXT NOT NULL,"
    " status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL,"
    " last_status INTEGER, last_error TEXT, created_at TEXT NOT NULL, finished_at TEXT,"
    " UNIQUE (subscription_id, event_sequence))",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_due"
    " ON webhook_deliveries (status, next_attempt_at)",
    "CREATE TABLE IF NOT EXISTS webhook_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS webhook_idempotency ("
    " scoped_key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, subscription_id TEXT NOT NULL)",
)

PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"
ACTIVE, DISABLED = "active", "disabled"
_RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
_BATCH = 256
_FINISHED_KEPT_SECONDS = 7 * 24 * 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """AgentRail's ``retryPolicy``: attempts in all, first and largest backoff (seconds)."""

    max_attempts: int = 8
    initial_backoff_seconds: int = 5
    max_backoff_seconds: int = 3600

    def as_json(self) -> dict[str, int]:
        return {
            "maxAttempts": self.max_attempts,
            "initialBackoffSeconds": self.initial_backoff_seconds,
            "maxBackoffSeconds": self.max_backoff_seconds,
        }


@dataclass(frozen=True)
class WebhookConfig:
    """How the reference server delivers webhooks.

    :param allowed_hosts: the only hosts a subscription's URL may name
        (exact names or addresses, any port); ``"*"`` allows every host.
        Default: loopback only, so that the server cannot be used to reach
        other machines (SSRF).
    :param retry_scale: multiplies every backoff (tests use 0.001 so that a
        5 s backoff takes 5 ms).
    :param disable_after: failed deliveries in a row that disable a subscription.
    :param timeout: seconds one attempt may take (connect and answer).
    :param senders: attempts in flight at most.
    :param rotation_overlap: seconds the previous secret stays valid after a
        rotation (deliveries are signed with both meanwhile).
    :param retry_policy: the ``retryPolicy`` of subscriptions that give none.
    """

    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
    retry_scale: float = 1.0
    disable_after: int = 5
    timeout: float = 10.0
    senders: int = 4
    rotation_overlap: float = 24 * 3600.0
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not self.retry_scale > 0 or not self.timeout > 0 or self.rotation_overlap < 0:
            raise ValueError("retry_scale and timeout must be positive, rotation_overlap >= 0")
        if self.disable_after < 1 or self.senders < 1:
            raise ValueError("disable_after and senders must be at least 1")


def host_allowed(url: str, allowed_hosts: Iterable[str]) -> bool:
    """True if ``url`` is http(s) and names one of ``allowed_hosts`` (or they hold ``*``)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        return False
    allowed = {h.lower().strip("[]") for h in allowed_hosts}
    return "*" in allowed or host in allowed


def backoff_delay(
    attempt: int, policy: RetryPolicy, scale: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds before attempt ``attempt + 1``: exponential from the initial backoff,
    capped at the largest, with jitter (between half and all of it), times ``scale``."""
    base = min(
        float(policy.max_backoff_seconds),
        policy.initial_backoff_seconds * 2.0 ** min(attempt - 1, 30),
    )
    return base * (0.5 + 0.5 * rng()) * scale


@dataclass(frozen=True)
class Subscription:
    """One row of ``webhook_subscriptions``."""

    id: str
    organization_id: Optional[str]
    url: str
    event_types: Optional[tuple[str, ...]]
    task_ids: Optional[tuple[str, ...]]
    description: Optional[str]
    secret: str
    secret_generated: bool
    previous_secret: Optional[str]
    previous_secret_until: Optional[float]
    status: str
    retry_policy: RetryPolicy
    start_after: int
    failed_in_a_row: int
    disabled_reason: Optional[str]
    created_at: str

    def __repr__(self) -> str:  # never the secrets
        return f"Subscription({self.id!r}, {self.url!r}, status={self.status!r})"

    def secrets(self, now: float) -> list[str]:
        """The secrets deliveries are signed with now: the current one, then the
        previous one while its overlap lasts."""
        found = [self.secret]
        if self.previous_secret and (self.previous_secret_until or 0) > now:
            found.append(self.previous_secret)
        return found

    def matches(self, event: StoredEvent, organization_id: Optional[str]) -> bool:
        if self.status != ACTIVE or event.sequence <= self.start_after:
            return False
        if self.event_types is not None and event.type not in self.event_types:
            return False
        if self.task_ids is not None and event.task_id not in self.task_ids:
            return False
        return self.organization_id is None or self.organization_id == organization_id


_SUBSCRIPTION_COLUMNS = (
    "id, organization_id, url, event_types, task_ids, description, secret, secret_generated,"
    " previous_secret, previous_secret_until, status, max_attempts, initial_backoff,"
    " max_backoff, start_after, failed_in_a_row, disabled_reason, created_at"
)


def _subscription(row: Sequence[Any]) -> Subscription:
    return Subscription(
        id=row[0],
        organization_id=row[1],
        url=row[2],
        event_types=None if row[3] is None else tuple(json.loads(row[3])),
        task_ids=None if row[4] is None else tuple(json.loads(row[4])),
        description=row[5],
        secret=row[6],
        secret_generated=bool(row[7]),
        previous_secret=row[8],
        previous_secret_until=row[9],
        status=row[10],
        retry_policy=RetryPolicy(int(row[11]), int(row[12]), int(row[13])),
        start_after=int(row[14]),
        failed_in_a_row=int(row[15]),
        disabled_reason=row[16],
        created_at=row[17],
    )


@dataclass(frozen=True)
class DeliveryRecord:
    """One row of ``webhook_deliveries``."""

    id: str
    subscription_id: str
    event_sequence: int
    event_id: str
    event_type: str
    body: str
    status: str
    attempts: int
    next_attempt_at: Optional[float]
    last_status: Optional[int]
    last_error: Optional[str]
    created_at: str
    finished_at: Optional[str]


_DELIVERY_COLUMNS = (
    "id, subscription_id, event_sequence, event_id, event_type, body, status, attempts,"
    " next_attempt_at, last_status, last_error, created_at, finished_at"
)


def _delivery(row: Sequence[Any]) -> DeliveryRecord:
    return DeliveryRecord(*row)


class WebhookDelivery:
    """The subscriptions and the delivery worker of one server (see the module doc).

    :meth:`start` it once the store is open; :meth:`stop` it before the store
    closes. The subscription API (``_webhook_api``) calls its ``create``,
    ``get``, ``subscriptions``, ``deactivate``, ``rotate`` and ``deliveries``.
    """

    def __init__(
        self,
        store: EventStore,
        config: Optional[WebhookConfig] = None,
        *,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.store = store
        self.config: WebhookConfig = config or WebhookConfig()
        self._session = session or requests.Session()
        self._session.trust_env = False  # no proxy from the environment: hosts are checked
        self._stopping = threading.Event()
        self._subscriptions_changed = threading.Event()  # created, deactivated, disabled
        self._wake = threading.Condition()
        self._woken = False
        self._in_flight: set[str] = set()  # delivery ids handed to the pool
        self._in_flight_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pool: Optional[ThreadPoolExecutor] = None
        self._attempted = threading.Condition()
        self.attempts_made: int = 0
        self._write(self._create_tables)

    # ---------------------------------------------------------------- storage

    def _write(self, fn: Callable[[Any], _T]) -> _T:
        # The store's own write transaction, on its connection: the file is locked
        # by the store (one server per file), so no second connection can open it.
        # ``fn`` runs under the store's lock: it must not call the store.
        return self.store.write_transaction(lambda conn, head: fn(conn))

    @staticmethod
    def _create_tables(conn: Any) -> None:
        for statement in _SCHEMA:
            conn.execute(statement)

    def _position(self, conn: Any) -> Optional[int]:
        row = conn.execute("SELECT value FROM webhook_state WHERE key = 'position'").fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _set_position(conn: Any, position: int) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO webhook_state (key, value) VALUES ('position', ?)",
            (str(position),),
        )

    # ---------------------------------------------------------------- subscriptions

    def create(
        self,
        *,
        url: str,
        event_types: Optional[Sequence[str]],
        secret: Optional[str],
        description: Optional[str],
        task_ids: Optional[Sequence[str]],
        retry_policy: Optional[RetryPolicy],
        organization_id: Optional[str],
        idempotency: Optional[tuple[str, str]] = None,
    ) -> tuple[Subscription, bool]:
        """Insert a subscription (or find the one an idempotency key made): (it, created).

        Raises :class:`KeyError` when the idempotency key was used with another body.
        """
        policy = retry_policy or self.config.retry_policy
        new_id = "whsub_" + _random.token_hex(12)
        generated = secret is None
        chosen = generate_secret() if secret is None else secret

        def create(conn: Any, head: int) -> tuple[Subscription, bool]:
            if idempotency is not None:
                row = conn.execute(
                    "SELECT fingerprint, subscription_id FROM webhook_idempotency"
                    " WHERE scoped_key = ?",
                    (idempotency[0],),
                ).fetchone()
                if row is not None:
                    if row[0] != idempotency[1]:
                        raise KeyError("idempotency conflict")
                    found = self._get(conn, row[1])
                    assert found is not None
                    return found, False
            conn.execute(
                f"INSERT INTO webhook_subscriptions ({_SUBSCRIPTION_COLUMNS}) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, 0, NULL, ?)",
                (
                    new_id,
                    organization_id,
                    url,
                    None if event_types is None else json.dumps(list(event_types)),
                    None if task_ids is None else json.dumps(list(task_ids)),
                    description,
                    chosen,
                    int(generated),
                    ACTIVE,
                    policy.max_attempts,
                    policy.initial_backoff_seconds,
                    policy.max_backoff_seconds,
                    head,  # only the events from now on
                    utc_now_iso(),
                ),
            )
            if idempotency is not None:
                conn.execute(
                    "INSERT INTO webhook_idempotency (scoped_key, fingerprint, subscription_id)"
                    " VALUES (?, ?, ?)",
                    (idempotency[0], idempotency[1], new_id),
                )
            created = self._get(conn, new_id)
            assert created is not None
            return created, True

        result = self.store.write_transaction(create)
        self._subscriptions_did_change()
        logger.info("webhook subscription %s created for %s", result[0].id, url)
        return result

    @staticmethod
    def _get(conn: Any, subscription_id: str) -> Optional[Subscription]:
        row = conn.execute(
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = ?",
            (subscription_id,),
        ).fetchone()
        return None if row is None else _subscription(row)

    def get(self, subscription_id: str) -> Optional[Subscription]:
        """One subscription, or None."""
        return self._write(lambda conn: self._get(conn, subscription_id))

    def subscriptions(self, organization_id: Optional[str] = None) -> list[Subscription]:
        """Every subscription (of one organization), oldest first."""

        def select(conn: Any) -> list[Subscription]:
            rows = conn.execute(
                f"SELECT {_SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY rowid"
            ).fetchall()
            found = [_subscription(row) for row in rows]
            if organization_id is None:
                return found
            return [s for s in found if s.organization_id in (None, organization_id)]

        return self._write(select)

    def deactivate(
        self, subscription_id: str, reason: str = "deactivated"
    ) -> Optional[Subscription]:
        """Disable a subscription and cancel its pending deliveries; None if unknown."""

        def disable(conn: Any) -> Optional[Subscription]:
            if self._get(conn, subscription_id) is None:
                return None
            self._disable(conn, subscription_id, reason)
            return self._get(conn, subscription_id)

        found = self._write(disable)
        self._subscriptions_did_change()
        return found

    @staticmethod
    def _disable(conn: Any, subscription_id: str, reason: str) -> None:
        conn.execute(
            "UPDATE webhook_subscriptions SET status = ?, disabled_reason = ?"
            " WHERE id = ? AND status = ?",
            (DISABLED, reason, subscription_id, ACTIVE),
        )
        conn.execute(
            "UPDATE webhook_deliveries SET status = ?, next_attempt_at = NULL, finished_at = ?,"
            " last_error = COALESCE(last_error, ?) WHERE subscription_id = ? AND status = ?",
            (CANCELLED, utc_now_iso(), "subscription disabled", subscription_id, PENDING),
        )

    def rotate(
        self, subscription_id: str, secret: Optional[str], overlap: Optional[float]
    ) -> Optional[tuple[Subscription, str]]:
        """Make ``secret`` (or a generated one) current; the old one stays valid for
        ``overlap`` seconds (default the config's). (subscription, new secret), or None."""
        chosen = generate_secret() if secret is None else secret
        until = time.time() + (self.config.rotation_overlap if overlap is None else overlap)

        def rotate(conn: Any) -> Optional[tuple[Subscription, str]]:
            current = self._get(conn, subscription_id)
            if current is None:
                return None
            conn.execute(
                "UPDATE webhook_subscriptions SET previous_secret = secret,"
                " previous_secret_until = ?, secret = ?, secret_generated = ? WHERE id = ?",
                (until, chosen, int(secret is None), subscription_id),
            )
            rotated = self._get(conn, subscription_id)
            assert rotated is not None
            return rotated, chosen

        return self._write(rotate)

    def deliveries(self, subscription_id: str, limit: int = 100) -> list[DeliveryRecord]:
        """The subscription's latest deliveries, newest first."""

        def select(conn: Any) -> list[DeliveryRecord]:
            rows = conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = ?"
                " ORDER BY event_sequence DESC LIMIT ?",
                (subscription_id, limit),
            ).fetchall()
            return [_delivery(row) for row in rows]

        return self._write(select)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> WebhookDelivery:
        """Start the enqueuer, the sender and the pool (pending deliveries resume)."""
        if self._threads:
            raise RuntimeError("the webhook delivery was already started")
        self._pool = ThreadPoolExecutor(self.config.senders, thread_name_prefix="webhook-send")
        for target, name in ((self._enqueue_loop, "enqueuer"), (self._send_loop, "sender")):
            thread = threading.Thread(target=target, name=f"webhook-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads; attempts in flight finish (each bounded by ``timeout``)."""
        self._stopping.set()
        self._subscriptions_changed.set()
        self.store.wake_waiters()
        self._notify()
        for thread in self._threads:
            thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._session.close()

    def _notify(self) -> None:
        with self._wake:
            self._woken = True
            self._wake.notify_all()

    def wait_attempts(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` attempts were made in all. For tests."""
        with self._attempted:
            return self._attempted.wait_for(lambda: self.attempts_made >= count, timeout)

    # ---------------------------------------------------------------- enqueuer

    def _enqueue_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._enqueue_until_stopped()
            except StoreClosedError:
                return
            except Exception:
                if self._stopping.is_set():
                    return
                logger.exception("the webhook enqueuer failed; starting again in 1 s")
                self._stopping.wait(1.0)

    def _enqueue_until_stopped(self) -> None:
        store = self.store
        position = self._write(self._position)
        if position is None:  # first start: deliver what comes from now on
            position = store.head_sequence
            start = position
            self._write(lambda conn: self._set_position(conn, start))
        stopping, changed = self._stopping, self._subscriptions_changed
        floor: Optional[int] = None
        changed.set()
        while not stopping.is_set():
            if changed.is_set():
                changed.clear()
                floor = self._write(self._active_floor)
            if floor is None:
                # No active subscription: nothing to enqueue, and no reads of the log
                # at all (a server without webhooks pays nothing). A subscription
                # made later starts at the head of its time, so skipping is exact.
                changed.wait()
                continue
            if floor > position:
                position = floor
            batch = store.read_after(position, limit=_BATCH)
            if batch.gap:
                oldest = store.oldest_sequence
                logger.error(
                    "webhook deliveries fell behind retention: events %d..%d were deleted "
                    "before they were enqueued",
                    position + 1,
                    oldest - 1,
                )
                position = oldest - 1
                continue
            if batch.events:
                position = self._write(functools.partial(self._enqueue, events=batch.events))
                self._notify()
                continue
            store.wait_for_events(position, 5.0, lambda: stopping.is_set() or changed.is_set())

    @staticmethod
    def _active_floor(conn: Any) -> Optional[int]:
        """Where the oldest active subscription starts (None: there is none)."""
        row = conn.execute(
            "SELECT MIN(start_after) FROM webhook_subscriptions WHERE status = ?", (ACTIVE,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _subscriptions_did_change(self) -> None:
        self._subscriptions_changed.set()
        self.store.wake_waiters()

    def _enqueue(self, conn: Any, events: list[StoredEvent]) -> int:
        rows = conn.execute(
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE status = ?",
            (ACTIVE,),
        ).fetchall()
        subscriptions = [_subscription(row) for row in rows]
        now_iso = utc_now_iso()
        now = time.time()
        for event in events:
            if not subscriptions:
                break
            for subscription in subscriptions:
                if subscription.matches(event, event.organization_id):
                    conn.execute(
                        f"INSERT OR IGNORE INTO webhook_deliveries ({_DELIVERY_COLUMNS}) VALUES"
                        " (?, ?, ?, ?, ?, ?, ?, 0, ?, NULL, NULL, ?, NULL)",
                        (
                            "whdel_" + _random.token_hex(12),
                            subscription.id,
                            event.sequence,
                            event.id,
                            event.type,
                            event.envelope,
                            PENDING,
                            now,
                            now_iso,
                        ),
                    )
        position = events[-1].sequence
        self._set_position(conn, position)
        return position

    # ---------------------------------------------------------------- sender

    def _send_loop(self) -> None:
        next_sweep = 0.0
        while not self._stopping.is_set():
            try:
                now = time.time()
                if now >= next_sweep:
                    self._write(functools.partial(self._sweep, now=now))
                    next_sweep = now + 3600.0
                wait = self._dispatch_due(now)
            except Exception:
                if self._stopping.is_set():
                    return
                logger.exception("the webhook sender failed; trying again in 1 s")
                wait = 1.0
            with self._wake:
                if not self._woken:
                    self._wake.wait(wait)
                self._woken = False

    @staticmethod
    def _sweep(conn: Any, now: float) -> None:
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - _FINISHED_KEPT_SECONDS))
        conn.execute(
            "DELETE FROM webhook_deliveries WHERE status != ? AND finished_at < ?",
            (PENDING, cutoff),
        )

    def _dispatch_due(self, now: float) -> float:
        """Hand the due deliveries to the pool; seconds until the next one is due (<= 1)."""
        most = self.config.senders * 2
        with self._in_flight_lock:
            in_flight = tuple(self._in_flight)
        room = most - len(in_flight)
        if room <= 0:
            return 1.0

        def select(conn: Any) -> tuple[list[DeliveryRecord], Optional[float]]:
            rows = conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries"
                " WHERE status = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                (PENDING, now, room + len(in_flight)),
            ).fetchall()
            upcoming = conn.execute(
                "SELECT MIN(next_attempt_at) FROM webhook_deliveries"
                " WHERE status = ? AND next_attempt_at > ?",
                (PENDING, now),
            ).fetchone()
            return [_delivery(r) for r in rows], None if upcoming is None else upcoming[0]

        due, upcoming = self._write(select)
        pool = self._pool
        assert pool is not None
        for delivery in due:
            with self._in_flight_lock:
                if delivery.id in self._in_flight or len(self._in_flight) >= most:
                    continue
                self._in_flight.add(delivery.id)
            pool.submit(self._attempt, delivery)
        if upcoming is None:
            return 1.0
        return max(0.0, min(1.0, upcoming - time.time()))

    def _attempt(self, delivery: DeliveryRecord) -> None:
        try:
            self._attempt_once(delivery)
        except Exception:
            if self._stopping.is_set():
                return
            logger.exception("webhook delivery %s failed unexpectedly; again in 1 s", delivery.id)
            with contextlib.suppress(Exception):  # not a hot loop, whatever broke
                self._write(
                    lambda conn: conn.execute(
                        "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?",
                        (time.time() + 1.0, delivery.id),
                    )
                )
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(delivery.id)
            with self._attempted:
                self.attempts_made += 1
                self._attempted.notify_all()
            self._notify()

    def _attempt_once(self, delivery: DeliveryRecord) -> None:
        subscription = self.get(delivery.subscription_id)
        if subscription is None or subscription.status != ACTIVE:
            self._write(
                lambda conn: self._finish(conn, delivery, CANCELLED, None, "subscription disabled")
            )
            return
        attempt = delivery.attempts + 1
        if not host_allowed(subscription.url, self.config.allowed_hosts):
            self._record(delivery, subscription, attempt, None, "host not allowed", False, None)
            return
        body = delivery.body.encode("utf-8")
        headers = self._headers(delivery, subscription, attempt, body)
        status: Optional[int] = None
        retry_after: Optional[float] = None
        try:
            response = self._session.post(
                subscription.url,
                data=body,
                headers=headers,
                timeout=self.config.timeout,
                allow_redirects=False,
            )
            response.close()
            status = response.status_code
            error = None if 200 <= status < 300 else f"HTTP {status}"
            retryable = status >= 500 or status in _RETRYABLE_STATUSES
            retry_after = _retry_after(response.headers.get("Retry-After"))
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: could not deliver"
            retryable = True
        self._record(delivery, subscription, attempt, status, error, retryable, retry_after)

    def _headers(
        self, delivery: DeliveryRecord, subscription: Subscription, attempt: int, body: bytes
    ) -> dict[str, str]:
        now = int(time.time())
        signer = Signer(subscription.secrets(now))
        return {
            "Content-Type": "application/json",
            "User-Agent": f"agentstream-reference-server/{__version__}",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(now),
            "webhook-signature": signer.header(delivery.event_id, now, delivery.body),
            "X-AgentRail-Webhook-Id": subscription.id,
            "X-AgentRail-Event-Id": delivery.event_id,
            "X-AgentRail-Event-Type": delivery.event_type,
            "X-AgentRail-Delivery-Id": delivery.id,
            "X-AgentRail-Delivery-Attempt": str(attempt),
            # AgentRail's SDK compares one value: the current secret's.
            "X-AgentRail-Signature": signer.agentrail_signatures(body)[0],
        }

    def _record(
        self,
        delivery: DeliveryRecord,
        subscription: Subscription,
        attempt: int,
        status: Optional[int],
        error: Optional[str],
        retryable: bool,
        retry_after: Optional[float],
    ) -> None:
        policy = subscription.retry_policy

        def record(conn: Any) -> None:
            if error is None:
                self._finish(conn, delivery, DELIVERED, status, None, attempt)
                conn.execute(
                    "UPDATE webhook_subscriptions SET failed_in_a_row = 0 WHERE id = ?",
                    (subscription.id,),
                )
                return
            if retryable and attempt < policy.max_attempts:
                delay = backoff_delay(attempt, policy, self.config.retry_scale)
                if retry_after is not None:
                    wanted = min(retry_after, float(policy.max_backoff_seconds))
                    delay = max(delay, wanted * self.config.retry_scale)
                conn.execute(
                    "UPDATE webhook_deliveries SET attempts = ?, next_attempt_at = ?,"
                    " last_status = ?, last_error = ? WHERE id = ? AND status = ?",
                    (attempt, time.time() + delay, status, error, delivery.id, PENDING),
                )
                return
            self._finish(conn, delivery, FAILED, status, error, attempt)
            conn.execute(
                "UPDATE webhook_subscriptions SET failed_in_a_row = failed_in_a_row + 1"
                " WHERE id = ?",
                (subscription.id,),
            )
            row = conn.execute(
                "SELECT failed_in_a_row FROM webhook_subscriptions WHERE id = ?",
                (subscription.id,),
            ).fetchone()
            if row is not None and int(row[0]) >= self.config.disable_after:
                reason = f"{int(row[0])} deliveries in a row failed"
                logger.warning(
                    "webhook subscription %s disabled: %s (last: %s)",
                    subscription.id,
                    reason,
                    error,
                )
                self._disable(conn, subscription.id, reason)
                self._subscriptions_changed.set()  # the enqueuer re-reads; no wake needed

        self._write(record)

    @staticmethod
    def _finish(
        conn: Any,
        delivery: DeliveryRecord,
        status: str,
        http_status: Optional[int],
        error: Optional[str],
        attempts: Optional[int] = None,
    ) -> None:
        conn.execute(
            "UPDATE webhook_deliveries SET status = ?, attempts = COALESCE(?, attempts),"
            " next_attempt_at = NULL, last_status = COALESCE(?, last_status), last_error = ?,"
            " finished_at = ? WHERE id = ? AND status = ?",
            (status, attempts, http_status, error, utc_now_iso(), delivery.id, PENDING),
        )


def _retry_after(value: Optional[str]) -> Optional[float]:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())
