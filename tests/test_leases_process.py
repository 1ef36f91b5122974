"""One consumer per name across processes: listeners in child processes sharing
one lease store (SQLite, Redis), a publisher at a steady rate, and real signals.

Every claim is checked from the children's own records (tests/lease_child.py):
each handled event with its process and fencing token and when its handler
ran, each fenced save the store confirmed or refused, and the times at which
each process was granted or lost its lease. ``time.monotonic()`` is one clock
for all the processes of the host, so those records can be ordered.

What the history must show, whatever happened (:func:`check_history`):

- one consumer at a time: the handling of two terms (a term is one grant: one
  process, one fencing token) never overlaps beyond the one handler that was
  running when the older term ended, and terms follow each other in token order;
- nothing lost: every published event was handled;
- redeliveries only in the documented window: an event handled twice was first
  handled by a term that did not end cleanly (killed, paused, cut off from its
  store) *after that term's last confirmed save*; within a term nothing twice;
- the store's cursor never moves backwards (saves in token order only advance).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

from agentstream.server import ReferenceServer

from .redis_server import RedisServer, RedisServers

CHILD = Path(__file__).with_name("lease_child.py")
TTL = 1.5
RENEW_PERIOD = TTL / 4
SAVE_INTERVAL = 0.1
PUBLISH_EVERY = 0.01  # 100 events a second
WAIT = 20.0  # the bound of every wait on a child (a slow start on a busy machine)

HOLDS = re.compile(r"holds the lease \(fencing token (\d+)\)")


# -- the children -------------------------------------------------------------------


@dataclass
class Line:
    at: Optional[float]  # the child's time.monotonic() when it said it, if it says
    text: str


class Child:
    """One lease_child.py process; its stdout lines are collected by a thread and
    announced on the fleet's condition."""

    def __init__(self, fleet: Fleet, number: int, *extra: str) -> None:
        self.number = number
        self.records_path = fleet.tmp / f"records{number}"
        self.stderr_path = fleet.tmp / f"stderr{number}"
        self.lines: list[Line] = []
        self._fleet = fleet
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(CHILD),
                    fleet.server.url,
                    fleet.server.api_key,
                    fleet.store,
                    str(self.records_path),
                    "--name",
                    fleet.name,
                    "--ttl",
                    str(TTL),
                    "--save-interval",
                    str(SAVE_INTERVAL),
                    *extra,
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            first, _, rest = raw.strip().partition(" ")
            try:
                line = Line(float(first), rest)
            except ValueError:
                line = Line(None, raw.strip())
            with self._fleet.changed:
                self.lines.append(line)
                self._fleet.changed.notify_all()
        with self._fleet.changed:
            self._fleet.changed.notify_all()

    @property
    def pid(self) -> int:
        return self.process.pid

    def said(self, text: str) -> list[Line]:
        return [line for line in self.lines if text in line.text]

    def tokens(self) -> list[tuple[int, float]]:
        """(token, when) of each grant, in order."""
        found = []
        for line in self.lines:
            match = HOLDS.search(line.text)
            if match and line.at is not None:
                found.append((int(match.group(1)), line.at))
        return found

    def holding(self) -> Optional[int]:
        """The token of the lease this child says it holds now, or None."""
        for line in reversed(self.lines):
            match = HOLDS.search(line.text)
            if match:
                return int(match.group(1)) if self.process.poll() is None else None
            if "lost its lease" in line.text or line.text.startswith("stopped"):
                return None
        return None

    def handled_count(self) -> int:
        return len(self.said("handled "))

    def signal(self, signum: int) -> float:
        at = time.monotonic()
        os.kill(self.pid, signum)
        return at

    def exit_code(self, timeout: float = WAIT) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        if self.process.stdout is not None and not self._reader.is_alive():
            self.process.stdout.close()
        return code

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def records(self) -> list[list[str]]:
        if not self.records_path.exists():
            return []
        return [line.split() for line in self.records_path.read_text().splitlines()]


class Fleet:
    """The children of one test, all on one store and one listener name."""

    def __init__(self, tmp: Path, server: ReferenceServer, store: str) -> None:
        self.tmp = tmp
        self.server = server
        self.store = store
        self.name = f"orders-{uuid.uuid4().hex[:8]}"
        self.children: list[Child] = []
        self.changed = threading.Condition()

    def start(self, count: int, *extra: str, wait: bool = True) -> list[Child]:
        started = [Child(self, len(self.children) + n, *extra) for n in range(count)]
        self.children += started
        if wait:
            for child in started:
                self.wait_ready(child)
        return started

    def wait_ready(self, child: Child) -> None:
        self.wait(lambda: bool(child.said("ready")), f"child {child.number} ready")

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        with self.changed:
            if not self.changed.wait_for(condition, timeout):
                raise AssertionError(f"waited {timeout}s for {what}\n{self.describe()}")

    def holder(self, other_than: Optional[Child] = None) -> tuple[Child, int, float]:
        """Wait for a child (not ``other_than``) to say it holds the lease; it, its
        token and when it was granted."""
        found: list[tuple[Child, int, float]] = []

        def someone_holds() -> bool:
            for child in self.children:
                token = child.holding()
                if child is not other_than and token is not None:
                    found.append((child, token, dict(child.tokens())[token]))
                    return True
            return False

        self.wait(someone_holds, "a holder")
        return found[0]

    def wait_handled(self, child: Child, count: int) -> None:
        target = child.handled_count() + count
        self.wait(lambda: child.handled_count() >= target, f"child {child.number} to handle")

    def stop_all(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                os.kill(child.pid, signal.SIGCONT)
                os.kill(child.pid, signal.SIGTERM)
        for child in self.children:
            try:
                child.exit_code()
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.exit_code()

    def describe(self) -> str:
        parts = []
        for child in self.children:
            tail = [line.text for line in child.lines[-5:]]
            parts.append(f"child {child.number} (exit {child.process.poll()}): {tail}")
            parts.append("  stderr: " + child.stderr()[-600:].replace("\n", "\n  "))
        return "\n".join(parts)


@pytest.fixture
def fleets(tmp_path: Path) -> Iterator[Callable[[ReferenceServer, str], Fleet]]:
    made: list[Fleet] = []

    def make(server: ReferenceServer, store: str) -> Fleet:
        fleet = Fleet(tmp_path, server, store)
        made.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for fleet in made:
            fleet.stop_all()


# -- the publisher ------------------------------------------------------------------


class Publisher:
    """Publishes ``message.chunk`` events into one task at a steady rate."""

    def __init__(self, server: ReferenceServer) -> None:
        self.server = server
        self.task_id = str(server.store.create_task("t", events_streaming=True)["id"])
        self.start_id = str(server.store.publish("message.chunk", "start", self.task_id)["id"])
        self.published: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(PUBLISH_EVERY):  # the rate, not a wait for anything
            envelope = self.server.store.publish(
                "message.chunk", f"part {len(self.published)}", self.task_id
            )
            self.published.append(str(envelope["id"]))

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def stop(self) -> list[str]:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(5)
        return list(self.published)

    @property
    def last_data(self) -> str:
        return f"part {len(self.published) - 1}"


@pytest.fixture
def publisher(agentstream_server: ReferenceServer) -> Iterator[Publisher]:
    """A publisher into a new task of the reference server; stopped after the test."""
    made = Publisher(agentstream_server)
    try:
        yield made
    finally:
        made.stop()


def finish(fleet: Fleet, publisher: Publisher) -> list[str]:
    """Stop publishing, wait until someone handled the last event, stop everyone."""
    published = publisher.stop()
    last = f"handled part {len(published) - 1}"
    fleet.wait(lambda: any(c.said(last) for c in fleet.children), "the last event handled")
    fleet.stop_all()
    return published


# -- the history --------------------------------------------------------------------


@dataclass
class Term:
    """One grant of the lease: one child, from one "holds the lease" to the next
    grant (a holder that lost its lease and gets it back before anyone else was
    granted it keeps its token, but starts a new term)."""

    child: int
    token: int
    granted_at: float
    handled: list[tuple[str, float, float]] = field(default_factory=list)  # id, start, end
    saved: list[str] = field(default_factory=list)  # confirmed fenced saves, in order


def terms_of(fleet: Fleet) -> list[Term]:
    """Every term of every child that handled something, in the order granted."""
    terms: list[Term] = []
    for child in fleet.children:
        grants = [Term(child.number, token, at) for token, at in child.tokens()]
        for record in child.records():
            kind, token, at = record[0], record[2], float(record[3])
            if kind == "refused":
                continue
            earlier = [grant for grant in grants if grant.granted_at <= at]
            assert earlier, f"child {child.number} handled before it held the lease: {record}"
            term = earlier[-1]
            # "None": the lease was being lost as the handler began (it was
            # dispatched under the term's token, checked before the event).
            assert token in (str(term.token), "None"), f"child {child.number}: {record}"
            if kind == "handled":
                term.handled.append((record[1], at, float(record[4])))
            elif kind == "saved":
                term.saved.append(record[1])
        terms += [grant for grant in grants if grant.handled or grant.saved]
    return sorted(terms, key=lambda term: term.granted_at)


def check_history(
    fleet: Fleet, publisher: Publisher, published: list[str], clean: set[int]
) -> list[Term]:
    """The checks of the module docstring; ``clean``: the tokens whose term ended
    with a clean stop (no redelivery allowed after them). Returns the terms."""
    order = {event_id: index for index, event_id in enumerate(published)}
    order[publisher.start_id] = -1
    terms = terms_of(fleet)
    # One consumer at a time, and tokens only grow.
    for older, newer in zip(terms, terms[1:]):
        assert newer.token > older.token or newer.child == older.child, (older, newer)
        if older.handled and newer.handled:
            last_start, first_start = older.handled[-1][1], newer.handled[0][1]
            assert first_start >= last_start, (
                f"child {newer.child} (token {newer.token}) started handling at "
                f"{first_start} while child {older.child} (token {older.token}) still "
                f"started one at {last_start}"
            )
    # Nothing lost.
    handled = [event_id for term in terms for event_id, _, _ in term.handled]
    missing = set(published) - set(handled)
    assert not missing, f"{len(missing)} events lost"
    # Nothing twice within a term; twice across terms only in the window: an
    # event handled again was handled first after its term's last confirmed save,
    # by a term that did not end with a clean stop.
    handlings: dict[str, list[Term]] = {}
    for term in terms:
        ids = [event_id for event_id, _, _ in term.handled]
        assert len(ids) == len(set(ids)), f"term {term} handled an event twice"
        for event_id in ids:
            handlings.setdefault(event_id, []).append(term)
    for event_id, handled_by in handlings.items():
        for term in handled_by[:-1]:
            assert term.token not in clean, f"{event_id} redelivered after a clean stop"
            last_saved = order[term.saved[-1]] if term.saved else -1
            assert order[event_id] > last_saved, (
                f"{event_id} was redelivered although token {term.token} had saved past it"
            )
    # The cursor never moves backwards.
    saves = [order[cursor] for term in terms for cursor in term.saved]
    assert saves == sorted(saves), "the store's cursor moved backwards"
    return terms


# -- the stores ---------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'cursors.sqlite3'}"
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    return f"redis:{redis_server.url}"


# -- the proofs ---------------------------------------------------------------------


def test_one_consumer_through_a_kill_a_clean_stop_and_a_pause(
    tmp_path: Path,
    agentstream_server: ReferenceServer,
    store_spec: str,
    fleets: Callable[[ReferenceServer, str], Fleet],
    publisher: Publisher,
) -> None:
    fleet = fleets(agentstream_server, store_spec)
    fleet.start(3, "--start", publisher.start_id, "--stale-save")
    publisher.start()
    holder, token, _ = fleet.holder()
    standing_by = [c for c in fleet.children if c is not holder]
    fleet.wait(lambda: all(c.said("standing by") for c in standing_by), "two standing by")
    fleet.wait_handled(holder, 20)

    # SIGKILL mid-stream: another takes over within the TTL and one renew period.
    killed_at = holder.signal(signal.SIGKILL)
    assert holder.exit_code() == -signal.SIGKILL
    second, second_token, granted_at = fleet.holder(other_than=holder)
    assert second_token > token
    assert granted_at - killed_at <= TTL + RENEW_PERIOD, granted_at - killed_at
    (fourth_child,) = fleet.start(1, "--start", publisher.start_id, "--stale-save", wait=False)
    fleet.wait_handled(second, 20)

    # A clean stop (SIGTERM) releases the lease: takeover in under a second.
    stopped_at = second.signal(signal.SIGTERM)
    third, third_token, granted_at = fleet.holder(other_than=second)
    assert granted_at - stopped_at < 1.0, granted_at - stopped_at
    assert second.exit_code() == 0
    fleet.wait_handled(third, 20)

    # SIGSTOP past the TTL: another takes over; once woken, the paused one
    # handles nothing more, its stale save is refused, and it stands by.
    fleet.wait_ready(fourth_child)  # three processes again: the paused one has a successor
    paused_at = third.signal(signal.SIGSTOP)
    fourth, fourth_token, takeover_at = fleet.holder(other_than=third)
    assert takeover_at - paused_at <= TTL + RENEW_PERIOD
    fleet.wait_handled(fourth, 20)
    third.signal(signal.SIGCONT)
    fleet.wait(lambda: bool(third.said("lost its lease")), "the woken holder to see it lost")
    fleet.wait(lambda: bool(third.said("stale save refused")), "its stale save refused")
    assert not third.said("stale save ACCEPTED")
    # Standing by after the loss (it may or may not have stood by before its
    # first grant, depending on whether the lease was free when it started).
    lost_at = third.lines.index(third.said("lost its lease")[0])
    fleet.wait(
        lambda: any("standing by" in line.text for line in third.lines[lost_at + 1 :]),
        "the woken holder standing by",
    )
    fleet.wait_handled(fourth, 10)

    published = finish(fleet, publisher)
    terms = check_history(fleet, publisher, published, clean={second_token})
    holders = [(term.child, term.token) for term in terms]
    assert holders[:4] == [
        (holder.number, token),
        (second.number, second_token),
        (third.number, third_token),
        (fourth.number, fourth_token),
    ]
    late = [h for t in terms if t.token == third_token for h in t.handled if h[1] > takeover_at]
    assert not late, f"the paused holder handled {len(late)} events after the takeover"
    assert any(r[0] == "refused" for r in third.records())  # the store said no
    assert all(c.exit_code() == 0 for c in fleet.children if c is not holder)


def test_redis_stopped_and_restarted_with_persistence_the_holder_pauses_and_resumes(
    tmp_path: Path,
    agentstream_server: ReferenceServer,
    redis_servers: RedisServers,
    fleets: Callable[[ReferenceServer, str], Fleet],
    publisher: Publisher,
) -> None:
    redis = redis_servers.start(appendonly=True)
    fleet = fleets(agentstream_server, f"redis:{redis.url}")
    fleet.start(2, "--start", publisher.start_id)
    publisher.start()
    holder, _, _ = fleet.holder()
    fleet.wait_handled(holder, 20)

    down_at = time.monotonic()
    redis.stop()
    fleet.wait(lambda: bool(holder.said("lost its lease")), "the holder to stop dispatching")
    lost = holder.said("lost its lease")[0]
    assert lost.at is not None
    assert lost.at - down_at < TTL
    last_start = max(h[1] for t in terms_of(fleet) for h in t.handled)
    assert last_start < down_at + TTL  # nothing handled on a lease that may be gone

    redis.start()
    fleet.wait(
        lambda: any(at > lost.at for c in fleet.children for _, at in c.tokens()),  # type: ignore[operator]
        "a grant once Redis is back",
    )
    resumed, _, _ = fleet.holder()
    fleet.wait_handled(resumed, 20)
    published = finish(fleet, publisher)
    check_history(fleet, publisher, published, clean=set())


# -- a store that comes back empty ----------------------------------------------------


@pytest.mark.parametrize("how", ["restarted without persistence", "flushed"])
def test_a_redis_that_comes_back_empty_fails_the_holder_and_a_new_one_refuses_to_start(
    tmp_path: Path,
    agentstream_server: ReferenceServer,
    redis_servers: RedisServers,
    fleets: Callable[[ReferenceServer, str], Fleet],
    publisher: Publisher,
    how: str,
) -> None:
    redis = redis_servers.start(appendonly=False)
    fleet = fleets(agentstream_server, f"redis:{redis.url}")
    (holder,) = fleet.start(1, "--start", publisher.start_id)
    publisher.start()
    fleet.holder()
    fleet.wait_handled(holder, 20)
    fleet.wait(lambda: any(r[0] == "saved" for r in holder.records()), "a first save")

    if how == "flushed":
        with redis.client() as client:
            client.flushall()
    else:
        redis.restart()
    # The holder fails (run_forever exits non-zero): it never resumes at the live end.
    assert holder.exit_code() != 0
    assert "StoreResetError" in holder.stderr() or "lost its data" in holder.stderr()
    assert holder.said("lost its lease")
    assert f"listener {fleet.name!r} failed" in holder.stderr()
    handled = [r[1] for r in holder.records() if r[0] == "handled"]
    assert handled == publisher.published[: len(handled)], "it skipped events"
    assert len(publisher.published) > len(handled)  # what it did not handle, it did not skip
    with redis.client() as client:
        assert client.get(f"leases:cursor:{fleet.name}") is None  # it moved nothing

    # A new process on the empty store with on_missing_cursor="error" refuses to
    # start instead of skipping to the live end.
    (newcomer,) = fleet.start(1, "--on-missing-cursor", "error")
    assert newcomer.exit_code() != 0
    assert "CursorMissingError" in newcomer.stderr() or "refusing to start" in newcomer.stderr()
    assert not [r for r in newcomer.records() if r[0] == "handled"]
