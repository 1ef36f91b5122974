"""The clients of ``bench/peers.py``: one measurement per process.

``bench/peers.py`` runs ``python bench/peer_clients.py '<job as JSON>'`` once
per measurement; this script imports only the standard library and the one
client library under test (so the peak RSS it reports is that client's), runs
the job, and prints one line of JSON with the result on stdout.

Every client is written the way its own README (or docstring, where the README
shows none) uses it, and hands each event to ``on_event``: the untyped peers as
the ``dict`` that ``json.loads(event.data)`` (or ``sse.json()``) makes of its
data, as an application would; agentstream's typed stream and Listener, and
AgentRail's SDK, as their validated pydantic models. ``on_event`` returns True
to stop. A client returns when it was told to stop or its stream ended.
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

STREAM_PATH = "/task-events/stream"
"""Appended to the base URL: what agentstream's and AgentRail's clients request."""
API_KEY = "bench-key"
"""The key of the clients that need one; the bench server ignores it."""
READ_CHUNK = 64 * 1024
"""Read size of sseclient-py's best case."""
RESUME_RETRY_S = 0.05
"""launchdarkly-eventsource ignores ``retry:`` (its sync reader drops it): told the same."""
LISTENER_WAIT = 300.0
"""Seconds a Listener client waits for its listener to end before giving up."""

OnEvent = Callable[[Any], bool]
"""Called with each delivered event (a dict or a model); returns True to stop."""
Run = Callable[[str, OnEvent, bool], None]
"""``run(base_url, on_event, resume)``: stream from ``base_url``; ``resume`` configures
the client to reconnect by itself after a cut, where it needs configuring."""

RETRY_DELAYS: list[float] = []
"""Reconnect delays (seconds) that an agentstream client reported while resuming."""
STORE_SAVES: list[int] = []
STORE_RENEWALS: list[int] = []
"""Lease renewals a durable-store Listener sent to its store."""
REDIS_URL_ENV = "AGENTSTREAM_BENCH_REDIS_URL"
"""Where ``as-listener-redis`` finds its Redis (``bench/durable.py`` starts one)."""
REDIS_LEASE_TTL_ENV = "AGENTSTREAM_BENCH_LEASE_TTL"
"""Overrides :data:`REDIS_LEASE_TTL` (``bench/durable.py --instructions`` sets it
longer: a client under callgrind runs about 50 times slower)."""
REDIS_LEASE_TTL = 2.0
"""``as-listener-redis``'s lease: renewed every 0.5 s, several times per flood
(the default 15 s renews every 3.75 s, perhaps not once in a flood)."""
"""Writes a durable-store Listener made to its cursor store (the last one on stop)."""


# -- the clients: each factory imports its library and returns the runner --------


def sseclient_readme() -> Run:
    import requests
    import sseclient

    def run(base: str, on_event: OnEvent, resume: bool) -> None:
        # As in sseclient-py's README: the Response is iterated (128-byte reads).
        response = requests.get(
            base + STREAM_PATH, stream=True, headers={"Accept": "text/event-stream"}
        )
        client = sseclient.SSEClient(response)  # type: ignore[arg-type]
        try:
            for event in client.events():
                if on_event(json.loads(event.data)):
                    return
        finally:
            client.close()

    return run


def sseclient_64k() -> Run:
    import requests
    import sseclient

    def run(base: str, on_event: OnEvent, resume: bool) -> None:
        response = requests.get(
            base + STREAM_PATH, stream=True, headers={"Accept": "text/event-stream"}
        )
        client = sseclient.SSEClient(response.iter_content(READ_CHUNK))
        try:
            for event in client.events():
                if on_event(json.loads(event.data)):
                    return
        finally:
            response.close()

    return run


def launchdarkly() -> Run:
    from ld_eventsource import SSEClient
    from ld_eventsource.config import ConnectStrategy, ErrorStrategy

    def run(base: str, on_event: OnEvent, resume: bool) -> None:
        # The form of SSEClient's docstring (the README shows no code).
        connect = ConnectStrategy.http(url=base + STREAM_PATH)
        if resume:
            # Keep reconnecting after an error (the default raises), start from
            # the server's 50 ms, and reset the backoff after each connection
            # (the default resets only after 60 s of connection).
            client = SSEClient(
                connect=connect,
                initial_retry_delay=RESUME_RETRY_S,
                retry_delay_reset_threshold=0.1,
                error_strategy=ErrorStrategy.always_continue(),
            )
        else:
            client = SSEClient(connect=connect)
        with client:
            for event in client.events:
                if on_event(json.loads(event.data)):
                    return

    return run


def requests_sse() -> Run:
    from requests_sse import EventSource

    def run(base: str, on_event: OnEvent, resume: bool) -> None:
        # As in its README; it reconnects by itself, honouring ``retry:``.
        with EventSource(base + STREAM_PATH, timeout=30) as event_source:
            for event in event_source:
                if on_event(json.loads(event.data)):
                    return

    return run


def httpx_sse() -> Run:
    import httpx
    from httpx_sse import connect_sse

    def run(base: str, on_event: OnEvent, resume: bool) -> None:
        with httpx.Client() as client, connect_sse(client, "GET", base + STREAM_PATH) as source:
            for sse in source.iter_sse():
                if on_event(sse.json()):
                    return

    return run


def agentrail() -> Run:
    import asyncio

    from agentrail import AgentRailClient, StreamOptions

    async def stream(base: str, on_event: OnEvent) -> None:
        async with AgentRailClient(base_url=base, api_key=API_KEY) as client:
            events = client.stream_events(StreamOptions())
            try:
                async for event in events:
                    if on_event(event):
                        return
            finally:
                await events.aclose()

    def run(base: str, on_event: OnEvent, resume: bool) -> None:
        asyncio.run(stream(base, on_event))

    return run


def agentstream_sse() -> Run:
    from agentstream.sse import EventSource, Retrying

    def happened(happening: object) -> None:
        if isinstance(happening, Retrying):
            RETRY_DELAYS.append(happening.delay)

    def run(base: str, on_event: OnEvent, resume: bool) -> None:
        # Defaults: 64 KiB reads, RetryPolicy.default() (the server's retry: sets its base).
        on_happening = happened if resume else None
        with EventSource(base + STREAM_PATH, on_happening=on_happening) as source:
            for event in source:
                if on_event(json.loads(event.data)):
                    return

    return run


def agentstream_typed() -> Run:
    from agentstream import Client
    from agentstream.sse import Retrying

    def happened(happening: object) -> None:
        if isinstance(happening, Retrying):
            RETRY_DELAYS.append(happening.delay)

    def run(base: str, on_event: OnEvent, resume: bool) -> None:
        on_happening = happened if resume else None
        with (
            Client(base, API_KEY) as client,
            client.stream_events(on_happening=on_happening) as stream,
        ):
            for event in stream:
                if on_event(event):
                    return

    return run


def agentstream_listener(store: Optional[str] = None) -> Run:
    """The Listener with the client's in-memory cursor store, or with a durable
    one (``store``: ``"sqlite"`` or ``"file"``, in a fresh temporary directory,
    or ``"redis"``, under a fresh key prefix on the server at ``$AGENTSTREAM_BENCH_REDIS_URL``
    with a lease of :data:`REDIS_LEASE_TTL`; default ``save_interval``): the
    same flood, the same handler.

    A durable store is created here, before any timing, as the library is
    imported: creating an SQLite database (WAL, its table) takes tens of ms
    once per process, which is no part of the per-event cost measured. The
    runner is then good for one run (a second would resume from the cursor).
    """
    from agentstream import Client, Registry, signals

    scratch = Path(tempfile.mkdtemp(prefix="agentstream-bench-")) if store else None
    cursor_store = durable_store(store, scratch) if store and scratch else None
    import os

    ttl = float(os.environ.get(REDIS_LEASE_TTL_ENV, REDIS_LEASE_TTL))
    lease = {"lease_ttl": ttl} if store == "redis" else {}
    runs = 0

    def retrying(sender: object, delay: float, **_: object) -> None:
        RETRY_DELAYS.append(delay)

    def run(base: str, on_event: OnEvent, resume: bool) -> None:
        nonlocal runs
        runs += 1
        if runs > 1 and cursor_store is not None:
            raise RuntimeError("a durable-store Listener client runs once")
        registry = Registry()
        last: list[str] = []

        @registry.on("task.updated")
        def handle(event: Any) -> None:
            if on_event(event):
                last.append(event.id)
                listener.stop()  # from its own thread: no event after this one is handled

        if resume:
            signals.retrying.connect(retrying, weak=False)
        try:
            with Client(base, API_KEY) as client:
                listener = client.listen(registry=registry, cursor_store=cursor_store, **lease)
                listener.start()
                try:
                    # Ends when the handler stops it, or by itself when the server
                    # answers a resume with 204.
                    if not listener.join(LISTENER_WAIT):
                        raise RuntimeError(f"listener timed out: {listener!r}")
                finally:
                    stopped = listener.stop(timeout=10)
            if not stopped or listener.error is not None or listener.stats.invalid_events:
                raise RuntimeError(
                    f"listener: stopped={stopped} error={listener.error!r} stats={listener.stats}"
                )
            if cursor_store is not None:
                # The store really holds the last event handled: nothing was skipped.
                saved = cursor_store.load(listener.name)
                STORE_SAVES.append(cursor_store.saves)
                STORE_RENEWALS.append(cursor_store.renewals)
                close = getattr(cursor_store, "close", None)
                if close is not None:
                    close()
                if saved != listener.cursor or (last and saved != last[-1]):
                    raise RuntimeError(f"store holds {saved!r}, cursor {listener.cursor!r}")
        finally:
            if scratch is not None:
                shutil.rmtree(scratch)

    return run


def durable_store(kind: str, directory: Path) -> Any:
    """A fresh store of ``kind`` in ``directory``, its writes counted (``saves``)."""
    from agentstream import FileCursorStore, RedisCursorStore, SQLiteCursorStore

    if kind == "sqlite":
        return counting(SQLiteCursorStore)(directory / "cursors.sqlite3")
    if kind == "file":
        return counting(FileCursorStore)(directory / "cursors.json")
    if kind == "redis":
        import os

        prefix = f"bench-{directory.name}:"  # fresh: no cursor, no lease
        store = counting(RedisCursorStore)(os.environ[REDIS_URL_ENV], prefix=prefix)
        store.load("warm-up")  # the connection is made here, before any timing
        return store
    raise ValueError(f"unknown cursor store {kind!r}")


def counting(base: type) -> type:
    """``base`` with its writes counted: a subclass, so that it is still the same
    kind of store to the Listener (a ``LeaseStore`` keeps its lease and its
    fenced saves), one method call more per write."""

    class Counting(base):  # type: ignore[valid-type,misc]
        saves = 0
        renewals = 0

        def save(self, name: str, cursor: str) -> None:
            self.saves += 1
            super().save(name, cursor)

        if hasattr(base, "save_fenced"):

            def save_fenced(self, name: str, cursor: str, token: int) -> None:
                self.saves += 1
                super().save_fenced(name, cursor, token)

        if hasattr(base, "renew"):

            def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
                self.renewals += 1
                renewed: bool = super().renew(name, holder, token, ttl)
                return renewed

    return Counting


@dataclass(frozen=True)
class Spec:
    """One client: how it is labelled, what it delivers, how it is built."""

    key: str
    label: str
    make: Callable[[], Run]
    typed: bool
    """Delivers validated models (``event.sequence``), not dicts (``event["sequence"]``)."""
    reconnects: bool
    """Reconnects and resumes by itself after a cut (simply enough to be in the resume test)."""
    distribution: str
    """The package to check for and report the version of."""


PEERS = (
    Spec(
        "sseclient-readme",
        "sseclient-py, README form (128-byte reads)",
        sseclient_readme,
        typed=False,
        reconnects=False,
        distribution="sseclient-py",
    ),
    Spec(
        "sseclient-64k",
        "sseclient-py over iter_content(65536)",
        sseclient_64k,
        typed=False,
        reconnects=False,
        distribution="sseclient-py",
    ),
    Spec(
        "launchdarkly",
        "launchdarkly-eventsource SSEClient",
        launchdarkly,
        typed=False,
        reconnects=True,
        distribution="launchdarkly-eventsource",
    ),
    Spec(
        "requests-sse",
        "requests-sse EventSource",
        requests_sse,
        typed=False,
        reconnects=True,
        distribution="requests-sse",
    ),
    Spec(
        "httpx-sse",
        "httpx-sse connect_sse + iter_sse (sync)",
        httpx_sse,
        typed=False,
        reconnects=False,
        distribution="httpx-sse",
    ),
    Spec(
        "agentrail",
        "AgentRail SDK stream_events (async, typed)",
        agentrail,
        typed=True,
        reconnects=False,
        distribution="agentrail",
    ),
)
AGENTSTREAM = (
    Spec(
        "as-sse",
        "agentstream.sse.EventSource + json.loads",
        agentstream_sse,
        typed=False,
        reconnects=True,
        distribution="agentstream",
    ),
    Spec(
        "as-typed",
        "agentstream client.stream_events() (typed)",
        agentstream_typed,
        typed=True,
        reconnects=True,
        distribution="agentstream",
    ),
    Spec(
        "as-listener",
        "agentstream Listener + 1 handler (typed)",
        agentstream_listener,
        typed=True,
        reconnects=True,
        distribution="agentstream",
    ),
)
DURABLE = (
    Spec(
        "as-listener-sqlite",
        "agentstream Listener + 1 handler, SQLiteCursorStore",
        lambda: agentstream_listener("sqlite"),
        typed=True,
        reconnects=True,
        distribution="agentstream",
    ),
    Spec(
        "as-listener-file",
        "agentstream Listener + 1 handler, FileCursorStore",
        lambda: agentstream_listener("file"),
        typed=True,
        reconnects=True,
        distribution="agentstream",
    ),
    Spec(
        "as-listener-redis",
        "agentstream Listener + 1 handler, RedisCursorStore (lease renewed every 0.5 s)",
        lambda: agentstream_listener("redis"),
        typed=True,
        reconnects=True,
        distribution="agentstream",
    ),
)
"""The Listener with a durable cursor store (``bench/durable.py``; not in ``peers.py``'s run)."""
PARSERS = PEERS + AGENTSTREAM
BY_KEY = {spec.key: spec for spec in (*PARSERS, *DURABLE)}
FLOORS = {
    "socket-floor": "raw socket floor (read to EOF)",
    "requests-floor": "requests iter_content(65536) floor (counts blank lines)",
}


# -- the jobs -----------------------------------------------------------------------


def sequence_of(event: Any, typed: bool) -> int:
    return int(event.sequence if typed else event["sequence"])


def summary_of(event: Any, typed: bool) -> str:
    return str(event.data.summary if typed else event["data"]["summary"])


def peak_rss_kib() -> int:
    """The peak resident set size of this process so far, in KiB (Linux).

    ``ru_maxrss`` survives ``exec``: it also holds the peak of the process that
    was exec'ed, which is why :func:`launcher` (small) starts the clients,
    not ``bench/peers.py`` (large).
    """
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def high_water_kib() -> int:
    """``VmHWM``: the peak RSS of this process's own memory since ``exec`` (a cross-check)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def flood(spec: Spec, run: Run, base: str, n: int) -> dict[str, Any]:
    """Count the first ``n`` events; time from before connecting to the ``n``-th delivery
    (wall clock, and the CPU time of the process's threads: what load elsewhere on
    the machine disturbs less)."""
    count = 0
    last: Any = None
    reached = 0.0
    cpu_reached = 0.0

    def on_event(event: Any) -> bool:
        nonlocal count, last, reached, cpu_reached
        count += 1
        last = event
        if count == n:
            reached = time.perf_counter()
            cpu_reached = time.process_time()
            return True
        return False

    rss_start = peak_rss_kib()
    cpu_start = time.process_time()
    start = time.perf_counter()
    run(base, on_event, False)
    if count != n:
        raise RuntimeError(f"{count} events, not {n}")
    last_sequence = sequence_of(last, spec.typed)
    if last_sequence != n:
        raise RuntimeError(f"last sequence {last_sequence}, not {n}")
    return {
        "events": count,
        "seconds": reached - start,
        "cpu_seconds": cpu_reached - cpu_start,
        "rss_start_kib": rss_start,
        "rss_peak_kib": peak_rss_kib(),
        "hwm_kib": high_water_kib(),
    }


def delay(spec: Spec, run: Run, base: str) -> dict[str, Any]:
    """Milliseconds from the server's send (in ``data.summary``) to the first delivery."""
    delays: list[float] = []

    def on_event(event: Any) -> bool:
        if not delays:
            delays.append((time.time() - float(summary_of(event, spec.typed))) * 1000)
        return True

    run(base, on_event, False)
    if not delays:
        raise RuntimeError("no event")
    return {"ms": delays[0]}


def trickle(spec: Spec, run: Run, base: str, n: int) -> dict[str, Any]:
    """Receive − send (``data.summary``) of each of ``n`` paced events, in ms."""
    latencies: list[float] = []
    last = 0

    def on_event(event: Any) -> bool:
        nonlocal last
        latencies.append((time.time() - float(summary_of(event, spec.typed))) * 1000)
        last = sequence_of(event, spec.typed)
        return len(latencies) >= n

    run(base, on_event, False)
    if len(latencies) != n or last != n:
        raise RuntimeError(f"{len(latencies)} events, last sequence {last}; expected {n}")
    return {"latencies_ms": latencies}


def big(spec: Spec, run: Run, base: str, size: int) -> dict[str, Any]:
    """Seconds from before connecting to the delivery of one event of ``size`` summary chars."""
    got: list[int] = []
    reached = 0.0

    def on_event(event: Any) -> bool:
        nonlocal reached
        reached = time.perf_counter()
        got.append(len(summary_of(event, spec.typed)))
        return True

    start = time.perf_counter()
    run(base, on_event, False)
    if got != [size]:
        raise RuntimeError(f"summary lengths {got}, expected [{size}]")
    return {"seconds": reached - start}


def resume(spec: Spec, run: Run, base: str, n: int) -> dict[str, Any]:
    """Events 1 to ``n`` through cuts: gaps from each cut to the next event, lost, duplicated.

    The first event of a connection that resumes after a cut has
    ``data.summary`` = ``"cut-at <server time>"``.
    """
    seen = [0] * (n + 1)
    gaps: list[float] = []

    def on_event(event: Any) -> bool:
        now = time.time()
        summary = summary_of(event, spec.typed)
        if summary.startswith("cut-at "):
            gaps.append((now - float(summary[7:])) * 1000)
        sequence = sequence_of(event, spec.typed)
        seen[sequence] += 1
        return sequence == n

    run(base, on_event, True)
    lost = sum(1 for count in seen[1:] if count == 0)
    duplicated = sum(count - 1 for count in seen[1:] if count > 1)
    return {
        "gaps_ms": gaps,
        "lost": lost,
        "duplicated": duplicated,
        "retry_delays_ms": [delay * 1000 for delay in RETRY_DELAYS],
    }


def floor(key: str, base: str, n: int) -> dict[str, Any]:
    """A floor (``bench/wire.py``'s): bytes only, or blank lines counted; must count ``n``."""
    from wire import requests_floor, socket_floor

    function = socket_floor if key == "socket-floor" else requests_floor
    start = time.perf_counter()
    count = function(base + STREAM_PATH, n)
    seconds = time.perf_counter() - start
    if count != n:
        raise RuntimeError(f"{key}: {count} events, not {n}")
    return {"events": count, "seconds": seconds}


def main(job: dict[str, Any]) -> dict[str, Any]:
    key, test, base = job["client"], job["test"], job["base"]
    if key in FLOORS:
        return floor(key, base, job.get("n", 1))
    spec = BY_KEY[key]
    run = spec.make()  # imports the library: before any timing
    if test == "flood":
        result = flood(spec, run, base, job["n"])
    elif test == "delay":
        result = delay(spec, run, base)
    elif test == "trickle":
        result = trickle(spec, run, base, job["n"])
    elif test == "big":
        result = big(spec, run, base, job["size"])
    elif test == "resume":
        result = resume(spec, run, base, job["n"])
    else:
        raise ValueError(f"unknown test {test!r}")
    if STORE_SAVES:
        result["store_saves"] = sum(STORE_SAVES)
        result["store_renewals"] = sum(STORE_RENEWALS)
    return result


def launcher() -> None:
    """Run the jobs read from stdin (a JSON line each), each in a fresh process.

    ``bench/peers.py`` starts this small process once and hands it every job,
    so that the clients are started from a process of about 10 MiB: Linux
    carries the peak RSS of the process that calls ``exec`` into the new
    program's ``ru_maxrss``, and the harness itself holds 80 MiB. Replies one
    JSON line per job: the client's exit status and output, or a timeout.
    """
    import subprocess

    for line in sys.stdin:
        request = json.loads(line)
        command = [sys.executable, __file__, json.dumps(request["job"])]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=request["deadline"]
            )
        except subprocess.TimeoutExpired:
            reply: dict[str, Any] = {"timeout": True}
        else:
            reply = {"status": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--launcher"]:
        launcher()
    else:
        result: Optional[dict[str, Any]] = main(json.loads(sys.argv[1]))
        print(json.dumps(result))
