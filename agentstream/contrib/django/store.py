"""``DjangoCursorStore``: cursors and leases in the project's own database;
``DjangoDedupStore``: the event ids claimed for handling each event once.

Implements the lease protocol of :mod:`agentstream.cursors` through the ORM,
one row of :class:`~agentstream.contrib.django.models.ListenerCursor` per
listener name. Every lease operation and every fenced save is one
transaction that first locks that row: ``SELECT ... FOR UPDATE`` where the
database has it (PostgreSQL, MySQL, Oracle), and on SQLite, which has no row
locks, a write first, which takes the database's write lock before anything
is read (so two transactions never both read and then both write).

Expiry is judged by ``time.time()`` of the host that calls: hosts sharing one
database must keep their clocks synchronised (NTP); a skew of ``s`` seconds
lets a lease be taken over ``s`` seconds early or late, so keep the skew well
under the lease TTL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

from django.db import IntegrityError, connections, transaction
from django.db.models import F

from ...errors import LeaseLostError, StoreResetError
from ...webhooks import Claim

__all__ = ["DjangoCursorStore", "DjangoDedupStore"]

_SWEEP_INTERVAL = 60.0  # seconds between two deletions of expired ids


@contextmanager
def _tidy_connection(using: str) -> Iterator[None]:
    """Outside the caller's transaction, drop the thread's connection when it is
    broken or past ``CONN_MAX_AGE``, before and after (as Django's request
    cycle does around a view): a listener thread lives for months."""
    connection = connections[using]
    tidy = not connection.in_atomic_block
    if tidy:
        connection.close_if_unusable_or_obsolete()
    try:
        yield
    finally:
        if tidy:
            connection.close_if_unusable_or_obsolete()


class DjangoCursorStore:
    """Cursors and leases in a Django database (``AGENTSTREAM["CURSOR_STORE"] = "django"``).

    Needs the ``agentstream.contrib.django`` app installed and migrated.
    Safe from several threads and processes, on one host or many (see the
    module's note on clocks). Each call uses the calling thread's connection
    and, outside a transaction of the caller's, closes it when it is broken
    or past ``CONN_MAX_AGE``, as Django's request cycle does.

    :param using: the database alias (default ``"default"``).
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._lock = threading.Lock()
        self._highest: dict[str, int] = {}  # name -> highest token this object returned
        # One lease transaction at a time from this object's threads: they queue
        # here instead of in SQLite's busy handler, which sleeps (4.2 s against
        # 0.05 s for tests/test_cursor_stores.py's 4-thread contention test).
        self._transactions = threading.Lock()

    def __repr__(self) -> str:
        return f"DjangoCursorStore(using={self.using!r})"

    # -- CursorStore -----------------------------------------------------------

    def load(self, name: str) -> Optional[str]:
        """The saved cursor of ``name``, or None."""
        with self._connection():
            cursor = self._rows().filter(name=name).values_list("cursor", flat=True).first()
        return cursor or None

    def save(self, name: str, cursor: str) -> None:
        """Save ``cursor`` for ``name`` (unfenced: for a listener without a lease)."""
        with self._connection():
            self._ensure(name)
            self._rows().filter(name=name).update(cursor=cursor)

    # -- LeaseStore ------------------------------------------------------------

    def acquire(self, name: str, holder: str, ttl: float) -> Optional[int]:
        """The lease on ``name`` for ``holder`` (a new fencing token), its
        token unchanged if ``holder`` already holds it, or None while another
        holder's lease is unexpired."""
        with self._connection(), self._locked(name) as row:
            now = time.time()
            held = bool(row.holder) and row.expires_at > now
            extended = held and row.holder == holder
            if held and not extended:
                return None
            if not extended:
                row.token += 1
                row.holder = holder
            row.expires_at = now + ttl
            row.save(update_fields=["token", "holder", "expires_at", "updated_at"])
            token = int(row.token)
        with self._lock:
            highest = self._highest.get(name, 0)
            if token < highest or (not extended and token == highest and highest):
                raise StoreResetError(name, token, highest)
            self._highest[name] = token
        return token

    def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        """Extend the lease if ``holder`` still holds it with ``token``."""
        with self._connection(), self._locked(name) as row:
            if row.holder != holder or row.token != token:
                return False
            row.expires_at = time.time() + ttl
            row.save(update_fields=["expires_at", "updated_at"])
            return True

    def release(self, name: str, holder: str, token: int) -> None:
        """Give the lease up if ``holder`` holds it with ``token``; the token counter stays."""
        with self._connection(), self._locked(name) as row:
            if row.holder == holder and row.token == token:
                row.holder = ""
                row.expires_at = 0.0
                row.save(update_fields=["holder", "expires_at", "updated_at"])

    def save_fenced(self, name: str, cursor: str, token: int) -> None:
        """Save ``cursor`` if ``token`` is the newest granted on ``name``;
        else raise ``LeaseLostError`` and change nothing."""
        with self._connection(), self._locked(name) as row:
            if row.token != token:
                raise LeaseLostError(name, token, row.token or None)
            row.cursor = cursor
            row.save(update_fields=["cursor", "updated_at"])

    def lease_holder(self, name: str) -> Optional[tuple[str, int, float]]:
        """``(holder, token, seconds left)`` of the unexpired lease on ``name``, or None."""
        with self._connection():
            found = (
                self._rows().filter(name=name).values_list("holder", "token", "expires_at").first()
            )
        if found is None:
            return None
        holder, token, expires_at = found
        left = expires_at - time.time()
        if not holder or left <= 0:
            return None
        return (holder, int(token), left)

    # -- rows --------------------------------------------------------------------

    def _rows(self) -> Any:
        from .models import ListenerCursor

        return ListenerCursor.objects.using(self.using)

    def _ensure(self, name: str) -> None:
        from .models import ListenerCursor

        ListenerCursor.objects.using(self.using).bulk_create(
            [ListenerCursor(name=name)], ignore_conflicts=True
        )

    @contextmanager
    def _locked(self, name: str) -> Iterator[Any]:
        """The row of ``name`` (created if missing), locked until the transaction ends."""
        locking = connections[self.using].features.has_select_for_update
        with self._transactions:
            for _ in range(2):
                with transaction.atomic(using=self.using):
                    rows = self._rows().filter(name=name)
                    if locking:
                        row = rows.select_for_update().first()
                    else:
                        rows.update(token=F("token"))  # takes SQLite's write lock first
                        row = rows.first()
                    if row is not None:
                        yield row
                        return
                self._ensure(name)  # a first use of the name: create its row, then lock it
        raise RuntimeError(f"the row of {name!r} vanished twice")  # pragma: no cover

    def _connection(self) -> Any:
        return _tidy_connection(self.using)


class DjangoDedupStore:
    """Event ids claimed in a Django database
    (``AGENTSTREAM["WEBHOOK_DEDUP"] = "django"``, the default): the webhook
    view and ``agentstream_listen`` handle each event once, on one host or many.

    One row of :class:`~agentstream.contrib.django.models.WebhookDedup` per
    id, created by ``migrate``. A claim is one ``transaction.atomic()`` that
    writes first: it inserts the id (the primary key makes a second insert
    fail, on every database), else takes over an expired row with one
    conditional ``UPDATE``, else reads the live row's state; on SQLite the
    first write takes the database's write lock before anything is read.
    Expired ids are deleted at most once a minute. Expiry is judged by
    ``time.time()`` of the calling host (keep the hosts' clocks in sync).
    Each call uses the calling thread's connection, tidied as
    :class:`DjangoCursorStore`'s are. Call it outside a transaction of your
    own (the webhook view is ``non_atomic_requests``): a claim inside one is
    seen by other processes only once that transaction commits.

    :param using: the database alias (default ``"default"``).
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._next_sweep = 0.0
        # One claim at a time from this object's threads: they queue here
        # instead of in SQLite's busy handler, which sleeps (as DjangoCursorStore).
        self._transactions = threading.Lock()

    def __repr__(self) -> str:
        return f"DjangoDedupStore(using={self.using!r})"

    def _rows(self) -> Any:
        from .models import WebhookDedup

        return WebhookDedup.objects.using(self.using)

    def claim(self, event_id: str, ttl: float) -> Claim:
        """Claim ``event_id`` for ``ttl`` seconds unless it is claimed or handled."""
        from .models import WebhookDedup

        with _tidy_connection(self.using), self._transactions:
            now = time.time()
            if now >= self._next_sweep:
                self._next_sweep = now + _SWEEP_INTERVAL
                self._rows().filter(expires_at__lte=now).delete()
            for _ in range(3):
                with transaction.atomic(using=self.using):
                    try:
                        with transaction.atomic(using=self.using):  # a savepoint
                            WebhookDedup.objects.using(self.using).create(
                                event_id=event_id,
                                state=Claim.IN_PROGRESS.value,
                                expires_at=now + ttl,
                            )
                        return Claim.CLAIMED
                    except IntegrityError:
                        pass  # the id has a row: live, or expired
                    rows = self._rows().filter(event_id=event_id)
                    if rows.filter(expires_at__lte=now).update(
                        state=Claim.IN_PROGRESS.value, expires_at=now + ttl
                    ):
                        return Claim.CLAIMED
                    state = rows.values_list("state", flat=True).first()
                    if state is not None:
                        return Claim(state)
                # Released by another process in between: claim again.
        raise RuntimeError(f"could not claim {event_id!r}: its row kept vanishing")

    def complete(self, event_id: str, retention: float) -> None:
        """Record ``event_id`` as handled, for ``retention`` seconds."""
        handled = {"state": Claim.HANDLED.value, "expires_at": time.time() + retention}
        with _tidy_connection(self.using), self._transactions:
            self._write_handled(event_id, handled)

    def _write_handled(self, event_id: str, handled: dict[str, Any]) -> None:
        from .models import WebhookDedup

        with transaction.atomic(using=self.using):
            rows = self._rows().filter(event_id=event_id)
            if rows.update(**handled):  # a write first, as in claim()
                return
            try:
                with transaction.atomic(using=self.using):
                    WebhookDedup.objects.using(self.using).create(event_id=event_id, **handled)
            except IntegrityError:  # created meanwhile by another process's claim
                rows.update(**handled)

    def release(self, event_id: str) -> None:
        """Drop an unfinished claim (its handlers failed): it may be claimed again."""
        with _tidy_connection(self.using), self._transactions:
            self._rows().filter(event_id=event_id, state=Claim.IN_PROGRESS.value).delete()
