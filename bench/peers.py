"""Side-by-side peer benchmark: agentstream beside the Python SSE clients, every figure of issue 5.

Run from the repository root::

    .venv/bin/pip install -r bench/requirements.txt   # the peers, pinned
    .venv/bin/python bench/peers.py                   # the full run (7.5 to 9 min on 2 cores)
    .venv/bin/python bench/peers.py --quick           # a smoke run (about 1.5 min)

The report (Markdown) goes to stdout and to ``bench/results/peers.md``;
progress goes to stderr. ``bench/README.md`` explains each figure.

What runs:

* One server process (raw sockets, the payload and framings of
  ``bench/wire.py``: valid ``task.updated`` envelopes of about 610 bytes with a
  strictly increasing ``sequence``; chunked with 64 KiB chunks, one chunk per
  event, or close-delimited). Every route ends in ``/task-events/stream``, so
  the same URL serves the raw peers and, as a base URL, agentstream's
  ``Client`` and AgentRail's SDK.
* Every measurement in a fresh process (``bench/peer_clients.py``) that imports
  only its own client library: 2 floors, 6 peer forms, agentstream's 3 forms.
* Figures: events/s on a 200,000-event flood (and its ratio to requests'
  ``iter_content`` floor of the same round), peak RSS on that flood (and on a
  1,000,000-event flood for agentstream), trickle latency (an event every
  5 ms), small-event delay (one event, then 2 s of silence), a 7 MB event, and
  resume after abrupt cuts (``Last-Event-ID``, ``retry: 50``).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import platform
import secrets
import socket
import socketserver
import statistics
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Optional

import wire
from peer_clients import AGENTSTREAM, FLOORS, PARSERS, PEERS, STREAM_PATH, Spec
from wire import (
    CHUNK_SIZE,
    FRAMINGS,
    LAST_CHUNK,
    SILENCE,
    StreamHandler,
    build_event,
    check_envelopes,
    chunk,
    data_of,
    envelope_data,
    event_id,
    frame,
    progress,
    response_head,
    serve_until_stopped,
    server_process,
    version,
)

HERE = Path(__file__).resolve().parent
CLIENT_SCRIPT = HERE / "peer_clients.py"
RESULTS = HERE / "results" / "peers.md"
TRICKLE_INTERVAL = 0.005
"""Seconds between two trickle events."""
TRICKLE_WARMUP = 10
"""Trickle events left out of the percentiles (the first connection's warm-up)."""
BIG_BYTES = 7_000_000
"""Size of the big event's ``data`` field (one JSON line), in bytes."""
RETRY_MS = 50
"""The ``retry:`` the resume route sends at the start of each connection."""
SETTLE = 0.2
"""Seconds the resume route waits, once the client has acknowledged every byte
of a connection, before it cuts: the client has delivered what it had, and the
time from the cut to the next event is the reconnect alone."""
ABORT = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 s: ``close()`` sends a RST (an abrupt cut, not an end of stream)."""
FLAT_MIB = 3.0
"""Most the peak RSS may grow from the 200,000 to the 1,000,000-event flood: "flat"."""
DISTRIBUTIONS = (
    *wire.DISTRIBUTIONS,
    "launchdarkly-eventsource",
    "requests-sse",
    "httpx",
    "httpx-sse",
    "agentrail",
)
TARGET_RATIO = 1.0
AIM_RATIO = 1.5
TARGET_DELAY_MS = 5.0
TARGET_P99_MS = 1.0
TARGET_RSS_MIB = 45.0
TARGET_BIG_S = 0.5
TARGET_RESUME_SLACK_MS = 20.0


# -- the payload ------------------------------------------------------------------


def timed_event(seq: int) -> bytes:
    """Event ``seq`` carrying the server's ``time.time()`` (now) in ``data.summary``."""
    return build_event(seq, f"{time.time():.6f}")


def big_summary_length(size: int) -> int:
    """The ``data.summary`` length that makes the big event's ``data`` line ``size`` bytes
    (the summary is ASCII with nothing to escape: one byte per character)."""
    return size - len(envelope_data(1, ""))


def big_event(size: int) -> bytes:
    """One event whose ``data`` line holds ``size`` bytes of JSON (a long summary)."""
    length = big_summary_length(size)
    text = "The agent's full transcript, line after line. " * (length // 46 + 1)
    return build_event(1, text[:length])


def event_template() -> bytes:
    """``build_event`` as a bytes ``%`` template: ``template % (seq, seq, seq)``."""
    marker = 0x0123456789AB
    text = build_event(marker).decode().replace("%", "%%")
    text = text.replace(event_id(marker), "evt_%016x_3f9c1e")
    text = text.replace(f'"sequence":{marker},', '"sequence":%d,')
    template = text.encode()
    for seq in (1, 2, 255, 1_000_000):
        if template % (seq, seq, seq) != build_event(seq):
            raise RuntimeError("the flood template does not reproduce build_event")
    return template


def generated_flood(framing: str, n: int, batch: int = 2000) -> Iterator[bytes]:
    """The ``n``-event flood in ``framing``, generated batch by batch (for floods too
    large to hold: the 1,000,000-event one)."""
    template = event_template()
    pending = b""
    for first in range(1, n + 1, batch):
        events = [template % (s, s, s) for s in range(first, min(n, first + batch - 1) + 1)]
        if framing == "per-event":
            yield b"".join([chunk(event) for event in events])
        elif framing == "close":
            yield b"".join(events)
        else:
            pending += b"".join(events)
            cut = len(pending) - len(pending) % CHUNK_SIZE
            yield b"".join(chunk(pending[i : i + CHUNK_SIZE]) for i in range(0, cut, CHUNK_SIZE))
            pending = pending[cut:]
    if framing == "chunked" and pending:
        yield chunk(pending)
    if framing != "close":
        yield LAST_CHUNK


def check_payloads(settings: Settings) -> None:
    """Fail early unless agentstream and AgentRail both type what the server sends."""
    samples = [
        build_event(1),
        build_event(settings.events),
        timed_event(3),
        build_event(4, "cut-at 1.5"),
        big_event(10_000),
    ]
    check_envelopes(samples)  # bench/wire.py's: with agentstream
    try:
        from agentrail.client import _event_adapter
        from agentrail.models import TaskUpdatedEvent as RailUpdated
    except ImportError:
        pass  # Python 3.9: no AgentRail SDK, so no AgentRail rows either
    else:
        for sample in samples:
            data = data_of(sample)
            rail = _event_adapter.validate_json(data)  # raises if AgentRail's models reject it
            if not isinstance(rail, RailUpdated) or rail.sequence != json.loads(data)["sequence"]:
                raise RuntimeError(f"AgentRail typed the bench envelope as {rail!r}")
    if settings.big_bytes and big_summary_length(settings.big_bytes) <= 0:
        raise RuntimeError("--big-bytes is too small for an envelope")


# -- the server -------------------------------------------------------------------


@dataclass
class ServerConfig:
    framings: list[str]
    events: int
    resume_events: int
    big_bytes: int


class PeerServer(socketserver.ThreadingTCPServer):
    """Serves every route; see :class:`PeerHandler`."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(("127.0.0.1", 0), PeerHandler)
        events = [build_event(seq) for seq in range(1, config.events + 1)]
        self.bodies = {(f, config.events): frame(events, f) for f in config.framings}
        self.resume_events = events[: config.resume_events] + [
            build_event(seq) for seq in range(len(events) + 1, config.resume_events + 2)
        ]
        del events
        self.big = {}
        if config.big_bytes:
            event = big_event(config.big_bytes)
            self.big = {f: frame([event], f) for f in config.framings}
        self.cuts: dict[str, float] = {}
        """Per resume run (token): the time of the last cut."""


class PeerHandler(StreamHandler):
    """Routes, all ``GET /<test>/<framing>/<arguments>/task-events/stream``:

    - ``/flood/<framing>/<n>``: N events (pre-built, else generated);
    - ``/delay/<framing>``: one timed event, 2 s of silence, a second one;
    - ``/trickle/<framing>/<n>``: N timed events, one every 5 ms;
    - ``/big/<framing>``: one event with a 7 MB ``data`` line;
    - ``/resume/<framing>/<n>/<k>/<token>``: events after ``Last-Event-ID``
      (or ``cursor``), ``retry: 50`` first, cut abruptly after K of them.

    Outside ``/resume``, a request that resumes (a client reconnecting after
    the end of the body) gets 204, which ends agentstream's streams.
    """

    server: PeerServer
    request: socket.socket

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> None:
        resume_from = headers.get("last-event-id") or query.get("cursor", [""])[0]
        if not path.endswith(STREAM_PATH):
            self.send_status("404 Not Found")
            return
        test, framing, *args = path[: -len(STREAM_PATH)].strip("/").split("/")
        if framing not in FRAMINGS:
            self.send_status("404 Not Found")
        elif test == "resume":
            n, every, token = int(args[0]), int(args[1]), args[2]
            after = int(resume_from.split("_")[1], 16) if resume_from else 0
            self.send_resume(framing, n, every, token, after)
        elif resume_from:
            self.send_status("204 No Content")
        elif test == "flood":
            self.send_flood(framing, int(args[0]))
        elif test == "delay":
            self.send_delayed(framing, timed_event)
        elif test == "trickle":
            self.send_trickle(framing, int(args[0]))
        elif test == "big" and framing in self.server.big:
            self.send_body(framing, self.server.big[framing])
        else:
            self.send_status("404 Not Found")

    def send_flood(self, framing: str, n: int) -> None:
        body = self.server.bodies.get((framing, n))
        if body is not None:
            self.send_body(framing, body)
            return
        self.request.sendall(response_head(framing))
        for piece in generated_flood(framing, n):
            self.request.sendall(piece)

    def send_trickle(self, framing: str, n: int) -> None:
        self.send_paced(framing, [i * TRICKLE_INTERVAL for i in range(n)], timed_event)

    def send_resume(self, framing: str, n: int, every: int, token: str, after: int) -> None:
        """Events ``after + 1`` to ``after + every`` (or ``n``); then a cut."""
        if after >= n:
            self.send_status("204 No Content")
            return
        end = min(n, after + every)
        events = self.server.resume_events[after:end]
        cut_at = self.server.cuts.get(token) if after else None
        if cut_at is not None:
            events[0] = build_event(after + 1, f"cut-at {cut_at:.6f}")
        body = frame([f"retry: {RETRY_MS}\n\n".encode(), *events], framing)
        sock = self.request
        sock.sendall(response_head(framing))
        if end == n:
            sock.sendall(body)
            return
        # Half of the next event, then a RST: the client has to drop it and resume.
        following = self.server.resume_events[end]
        half = following[: len(following) // 2]
        if framing != "close":
            body = body[: -len(LAST_CHUNK)] + b"%x\r\n" % len(following)
        sock.sendall(body + half)
        wait_acknowledged(sock)
        time.sleep(SETTLE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, ABORT)
        self.server.cuts[token] = time.time()
        sock.close()


def wait_acknowledged(sock: socket.socket, timeout: float = 10.0) -> None:
    """Wait until the peer has acknowledged every byte sent (``SIOCOUTQ`` is 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        unacked = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        if unacked == 0:
            return
        time.sleep(0.001)


def serve(conn: Connection, config: ServerConfig) -> None:
    """Server process: build the bodies, send back the port, serve until told to stop."""
    with PeerServer(config) as server:
        serve_until_stopped(server, conn)


# -- running the clients ------------------------------------------------------------


class JobFailed(Exception):
    """A client process failed, or went past its deadline."""


class Launcher:
    """``bench/peer_clients.py --launcher``: starts each measurement in a fresh process.

    A small process, so that the peak RSS the clients report is theirs (see
    ``peer_clients.launcher``).
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CLIENT_SCRIPT), "--launcher"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, job: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Run one measurement; its result, or :class:`JobFailed`."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps({"job": job, "deadline": deadline}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the launcher ended (status {self.process.poll()})")
        reply = json.loads(line)
        if reply.get("timeout"):
            raise JobFailed(f"more than {deadline:.0f} s (stopped)")
        if reply["status"] != 0:
            lines = reply["stderr"].strip().splitlines() or [f"exit status {reply['status']}"]
            raise JobFailed(lines[-1][:300])
        result: dict[str, Any] = json.loads(reply["stdout"].strip().splitlines()[-1])
        return result

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


@dataclass
class Settings:
    """The run, as the command line asked for it."""

    events: int
    rounds: int
    framings: list[str]
    big_flood: int
    trickle_events: int
    trickle_rounds: int
    big_bytes: int
    resume_events: int
    resume_every: int
    resume_rounds: int
    command: str


@dataclass
class Cell:
    """One client, one test, one framing: a result per round, or the failures."""

    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def values(self, name: str) -> list[float]:
        return [float(result[name]) for result in self.results]

    def median(self, name: str) -> float:
        return statistics.median(self.values(name))

    def pooled(self, name: str, skip: int = 0) -> list[float]:
        """The lists under ``name`` of every round, each past its first ``skip``, joined."""
        return [value for result in self.results for value in result[name][skip:]]

    def total(self, name: str) -> int:
        """The counts under ``name``, summed over the rounds."""
        return sum(int(result[name]) for result in self.results)


Key = tuple[str, str, str]
"""(test, framing, client key)."""


class Run:
    """Every measurement of one invocation, with the server's base URL."""

    def __init__(
        self, settings: Settings, base: str, skip: dict[str, str], launcher: Launcher
    ) -> None:
        self.settings = settings
        self.base = base
        self.launcher = launcher
        self.fingerprint = source_fingerprint()
        """agentstream's source at the start (other work may change it meanwhile)."""
        self.skip = skip
        """Clients that cannot run (not installed), with the reason."""
        self.cells: dict[Key, Cell] = {}
        self.floor_rates: dict[tuple[str, int], float] = {}
        """(framing, round) -> requests floor events/s, for same-round ratios."""

    def cell(self, test: str, framing: str, key: str) -> Cell:
        return self.cells.setdefault((test, framing, key), Cell())

    def measure(
        self, test: str, framing: str, key: str, job: dict[str, Any], deadline: float
    ) -> Optional[dict[str, Any]]:
        cell = self.cell(test, framing, key)
        started = time.perf_counter()
        try:
            result = self.launcher.run({"client": key, "test": test, **job}, deadline)
        except JobFailed as exc:
            cell.errors.append(str(exc))
            progress(f"{test:8} {framing:9} {key:16} FAILED: {exc}")
            return None
        cell.results.append(result)
        progress(
            f"{test:8} {framing:9} {key:16} {summary_line(result)} "
            f"[{time.perf_counter() - started:.1f} s]"
        )
        return result

    def url(self, test: str, framing: str, *args: object) -> str:
        return "/".join([self.base, test, framing, *(str(arg) for arg in args)])

    def runnable(self, specs: Sequence[Spec]) -> list[Spec]:
        return [spec for spec in specs if spec.key not in self.skip]


def summary_line(result: dict[str, Any]) -> str:
    if "events" in result and "seconds" in result:
        rate = result["events"] / result["seconds"]
        rss = result.get("rss_peak_kib")
        extra = f", peak RSS {rss / 1024:.1f} MiB" if rss else ""
        return f"{result['events']:>9,} events {result['seconds']:7.3f} s {rate:>11,.0f}/s{extra}"
    if "ms" in result:
        return f"{result['ms']:9.1f} ms"
    if "latencies_ms" in result:
        p50, p99 = percentiles(result["latencies_ms"][TRICKLE_WARMUP:])
        return f"p50 {p50:.2f} ms p99 {p99:.2f} ms"
    if "gaps_ms" in result:
        gaps = result["gaps_ms"] or [math.nan]
        return (
            f"{len(result['gaps_ms'])} cuts, gap max {max(gaps):.1f} ms, "
            f"lost {result['lost']}, duplicated {result['duplicated']}"
        )
    if "seconds" in result:
        return f"{result['seconds']:7.3f} s"
    return json.dumps(result)[:80]


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan, math.nan

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    return rank(50), rank(99)


# -- the phases ---------------------------------------------------------------------


def run_floods(run: Run) -> None:
    """200,000 events per client and framing, interleaved rounds: events/s and peak RSS."""
    n = run.settings.events
    for round_number in range(run.settings.rounds):
        progress(f"-- flood round {round_number + 1}/{run.settings.rounds}")
        for framing in run.settings.framings:
            base = run.url("flood", framing, n)
            for key in FLOORS:
                result = run.measure("flood", framing, key, {"base": base, "n": n}, 120)
                if key == "requests-floor" and result is not None:
                    run.floor_rates[(framing, round_number)] = n / result["seconds"]
            for spec in run.runnable(PARSERS):
                result = run.measure("flood", framing, spec.key, {"base": base, "n": n}, 120)
                floor_rate = run.floor_rates.get((framing, round_number))
                if result is not None and floor_rate:
                    result["floor_ratio"] = n / result["seconds"] / floor_rate


def run_big_floods(run: Run) -> None:
    """agentstream's three forms on the large flood: is the peak RSS flat?"""
    n = run.settings.big_flood
    if not n:
        return
    progress(f"-- {n:,}-event flood (agentstream)")
    for framing in run.settings.framings:
        base = run.url("flood", framing, n)
        for spec in run.runnable(AGENTSTREAM):
            job = {"test": "flood", "base": base, "n": n}
            run.measure("bigflood", framing, spec.key, job, 300)


def run_delays(run: Run) -> None:
    for round_number in range(run.settings.rounds):
        progress(f"-- small-event delay round {round_number + 1}/{run.settings.rounds}")
        for framing in run.settings.framings:
            for spec in run.runnable(PARSERS):
                run.measure("delay", framing, spec.key, {"base": run.url("delay", framing)}, 30)


def run_trickles(run: Run) -> None:
    n = run.settings.trickle_events
    deadline = 30 + n * TRICKLE_INTERVAL
    for round_number in range(run.settings.trickle_rounds):
        progress(f"-- trickle round {round_number + 1}/{run.settings.trickle_rounds}")
        for framing in run.settings.framings:
            base = run.url("trickle", framing, n)
            for spec in run.runnable(PARSERS):
                run.measure("trickle", framing, spec.key, {"base": base, "n": n}, deadline)


BIG_DEADLINE = 5.0
"""Seconds a client gets for the big event; one that takes longer is stopped, and not
run again (in any framing)."""
BIG_ONCE = 1.0
"""A client that takes longer than this (seconds) for the big event is measured once
per framing, not once per round: its order of magnitude is clear, and time is short."""


def run_bigs(run: Run) -> None:
    if not run.settings.big_bytes:
        return
    size = big_summary_length(run.settings.big_bytes)
    stopped: dict[str, str] = {}
    for round_number in range(run.settings.rounds):
        progress(f"-- {run.settings.big_bytes:,}-byte event round {round_number + 1}")
        for framing in run.settings.framings:
            base = run.url("big", framing)
            for key in FLOORS:
                run.measure("big", framing, key, {"base": base, "n": 1}, BIG_DEADLINE)
            for spec in run.runnable(PARSERS):
                cell = run.cell("big", framing, spec.key)
                if spec.key in stopped:
                    if not cell.errors:
                        cell.errors.append(f"not run ({stopped[spec.key]})")
                    continue
                if cell.errors or any(r["seconds"] > BIG_ONCE for r in cell.results):
                    continue
                job = {"base": base, "size": size}
                if run.measure("big", framing, spec.key, job, BIG_DEADLINE) is None:
                    stopped[spec.key] = f"stopped at {BIG_DEADLINE:.0f} s in {framing}"


def run_resumes(run: Run) -> None:
    n, every = run.settings.resume_events, run.settings.resume_every
    if not n:
        return
    specs = [spec for spec in run.runnable(PARSERS) if spec.reconnects]
    for round_number in range(run.settings.resume_rounds):
        progress(f"-- resume round {round_number + 1}/{run.settings.resume_rounds}")
        for framing in run.settings.framings:
            for spec in specs:
                base = run.url("resume", framing, n, every, secrets.token_hex(6))
                run.measure("resume", framing, spec.key, {"base": base, "n": n}, 90)


# -- the report ---------------------------------------------------------------------

ALL_LABELS = {**FLOORS, **{spec.key: spec.label for spec in PARSERS}}

RETRY_IN_FORCE = {
    **{spec.key: f"0 to {RETRY_MS} ms: `retry: {RETRY_MS}`, full jitter" for spec in AGENTSTREAM},
    "launchdarkly": f"{RETRY_MS} ms: `initial_retry_delay` (ignores `retry:`)",
    "requests-sse": f"{2 * RETRY_MS} ms: `retry: {RETRY_MS}`, doubled",
}
"""Each reconnecting client's wait before it reconnects, as configured and as it behaves."""


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def failed(cell: Optional[Cell]) -> Optional[str]:
    """The cell's text if it has no usable result: 'failed', 'not run', or None if fine."""
    if cell is None:
        return "not run"
    if cell.errors:
        error = cell.errors[0]
        if error.startswith("more than "):
            return "> " + error.split()[2] + " s (stopped)"
        return error if error.startswith("not run") else "failed"
    if not cell.results:
        return "not run"
    return None


def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """A Markdown table: the first ``left`` columns left-aligned, the others right."""
    align = "|" + "---|" * left + "---:|" * (len(header) - left)
    lines = ["| " + " | ".join(header) + " |", align]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


class Report:
    def __init__(self, run: Run, wall: float) -> None:
        self.run = run
        self.settings = run.settings
        self.framings = run.settings.framings
        self.wall = wall

    def get(self, test: str, framing: str, key: str) -> Optional[Cell]:
        return self.run.cells.get((test, framing, key))

    def row(self, label: str, test: str, key: str, render: Callable[[Cell], str]) -> list[str]:
        """``label``, then for each framing ``render`` of the cell, or why there is none."""
        row = [label]
        for framing in self.framings:
            cell = self.get(test, framing, key)
            problem = failed(cell)
            row.append(problem if problem is not None or cell is None else render(cell))
        return row

    def judge(
        self, test: str, key: str, check: Callable[[Cell], tuple[bool, str]]
    ) -> tuple[Optional[bool], str]:
        """Whether ``check`` passes in every framing (None: a framing has no result),
        and what it found, framing by framing."""
        ok: Optional[bool] = True
        found = []
        for framing in self.framings:
            cell = self.get(test, framing, key)
            if cell is None or failed(cell):
                ok = None
                continue
            passed, text = check(cell)
            ok = ok and passed
            found.append(f"{framing} {text}")
        return ok, "; ".join(found)

    def rate(self, framing: str, key: str) -> Optional[float]:
        cell = self.get("flood", framing, key)
        if cell is None or failed(cell):
            return None
        return self.settings.events / cell.median("seconds")

    def fastest_peer(self, framing: str) -> tuple[Optional[str], float]:
        rates = [(self.rate(framing, spec.key), spec.key) for spec in PEERS]
        known = [(rate, key) for rate, key in rates if rate is not None]
        if not known:
            return None, math.nan
        rate, key = max(known)
        return key, rate

    def text(self) -> str:
        lines = self.header()
        lines += self.throughput()
        lines += self.trickle()
        lines += self.delay()
        lines += self.rss()
        lines += self.big()
        lines += self.resume()
        lines += self.targets()
        lines += self.problems()
        return "\n".join(lines) + "\n"

    def header(self) -> list[str]:
        s = self.settings
        versions = ", ".join(f"{name} {version(name)}" for name in DISTRIBUTIONS)
        versions += f" (agentstream {source_state()})"
        changed = self.run.fingerprint != source_fingerprint()
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        lines = [
            "# agentstream beside the Python SSE clients",
            "",
            f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; wall time "
            f"{self.wall:.0f} s; load average at the end {load}",
            f"- command: `{s.command}`",
            f"- machine: {platform.platform()}, {multiprocessing.cpu_count()} CPUs (shared), "
            f"Python {platform.python_version()}",
            f"- versions: {versions}",
            f"- payload: valid `task.updated` envelopes, {event_bytes():.0f} bytes per event "
            "on the wire (id, event and one JSON data line); framings: "
            + ", ".join(f"`{f}`" for f in self.framings),
            f"- {s.rounds} interleaved round(s) of the flood ({s.events:,} events), the "
            f"small-event delay and the {s.big_bytes:,}-byte event; "
            f"{s.trickle_rounds} of the trickle ({s.trickle_events:,} events), "
            f"{s.resume_rounds} of the resume; every measurement in its own process; "
            "times are medians",
            "- **What the clients deliver**: the peers' untyped events are decoded into a "
            "`dict` (`json.loads(event.data)`, httpx-sse's `sse.json()`), as an application "
            "would and as their READMEs show, and so is `agentstream.sse.EventSource`'s; "
            "agentstream's `client.stream_events()` and Listener deliver validated pydantic "
            "models (`TaskEvent`), and so does AgentRail's SDK (its own models)",
        ]
        if changed:
            lines.append(
                f"- **agentstream's source changed during the run** (source "
                f"{self.run.fingerprint} at the start): its figures mix versions; run again"
            )
        if self.run.skip:
            for key, reason in self.run.skip.items():
                lines.append(f"- **{ALL_LABELS[key]} not run: {reason}**")
        return lines

    def throughput(self) -> list[str]:
        s = self.settings
        header = ["client"]
        for framing in self.framings:
            header += [f"{framing} events/s", f"{framing} × floor"]
        rows = []
        for key in [*FLOORS, *(spec.key for spec in PARSERS)]:
            row = [ALL_LABELS[key]]
            for framing in self.framings:
                cell = self.get("flood", framing, key)
                problem = failed(cell)
                if problem or cell is None:
                    row += [problem or "not run", ""]
                    continue
                rate = s.events / cell.median("seconds")
                ratios = [r["floor_ratio"] for r in cell.results if "floor_ratio" in r]
                ratio = (
                    "1"
                    if key == "requests-floor"
                    else (f"{statistics.median(ratios):.2f}" if ratios else "")
                )
                row += [f"{rate:,.0f}", ratio]
            rows.append(row)
        lines = [
            "",
            f"## Throughput: {s.events:,}-event flood",
            "",
            "Events per second from before the client is built to the delivery of the last "
            "event (for the Listener: its handler's call), median of the rounds. "
            '"× floor" is the client\'s events/s over the requests `iter_content(65536)` '
            "floor's in the same round (median of the rounds' ratios).",
            "",
            *table(header, rows),
            "",
            "| framing | fastest peer | its events/s | typed / fastest peer "
            "| listener / fastest peer | agentstream.sse / fastest peer "
            "| raw socket floor / fastest parser |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for framing in self.framings:
            key, best = self.fastest_peer(framing)
            ratios = []
            for mine in ("as-typed", "as-listener", "as-sse"):
                rate = self.rate(framing, mine)
                ratios.append(f"{rate / best:.2f}" if rate and key else "")
            parsers = [self.rate(framing, spec.key) for spec in PARSERS]
            fastest = max((rate for rate in parsers if rate), default=None)
            floor = self.rate(framing, "socket-floor")
            headroom = f"{floor / fastest:.1f}" if floor and fastest else ""
            name = ALL_LABELS[key] if key else "none"
            lines.append(
                f"| {framing} | {name} | {best:,.0f} | " + " | ".join(ratios) + f" | {headroom} |"
            )
        return lines

    def trickle(self) -> list[str]:
        s = self.settings

        def latencies(cell: Cell) -> str:
            pooled = cell.pooled("latencies_ms", TRICKLE_WARMUP)
            p50, p99 = percentiles(pooled)
            return f"{fmt(p50, 2)} / {fmt(p99, 2)}"

        rows = [self.row(spec.label, "trickle", spec.key, latencies) for spec in PARSERS]
        return [
            "",
            "## Trickle latency (ms, p50 / p99)",
            "",
            f"The server sends {s.trickle_events:,} events, one every "
            f"{TRICKLE_INTERVAL * 1000:.0f} ms, each carrying its `time.time()` at the send "
            "(in `data.summary`); the client takes `time.time()` when the event is delivered "
            "(for the Listener: in its handler). The first "
            f"{TRICKLE_WARMUP} events of a connection are left out (warm-up); percentiles "
            f"pool the remaining {s.trickle_events - TRICKLE_WARMUP:,} × {s.trickle_rounds} "
            "round(s). `chunked` and `per-event` are the same bytes here (a chunk cannot "
            "span the pause).",
            "",
            *table(["client", *self.framings], rows),
        ]

    def delay(self) -> list[str]:

        def delay(cell: Cell) -> str:
            return f"{fmt(cell.median('ms'))} ({fmt(max(cell.values('ms')))})"

        rows = [self.row(spec.label, "delay", spec.key, delay) for spec in PARSERS]
        return [
            "",
            f"## Small-event delay (ms; median of {self.settings.rounds}, worst in brackets)",
            "",
            f"One event (a {len(timed_event(1))}-byte envelope carrying the send time), then "
            f"{SILENCE:.0f} s of silence: the time from the send to the delivery. About "
            f"{SILENCE * 1000:,.0f} ms means the client **held** the event until more bytes "
            "came. `chunked` and `per-event` are the same bytes here.",
            "",
            *table(["client", *self.framings], rows),
        ]

    def rss_mib(self, test: str, framing: str, key: str) -> Optional[tuple[float, float]]:
        """(start, peak) RSS in MiB: the largest of the rounds."""
        cell = self.get(test, framing, key)
        if cell is None or failed(cell):
            return None
        start = max(cell.values("rss_start_kib")) / 1024
        peak = max(cell.values("rss_peak_kib")) / 1024
        return start, peak

    def hwm_check(self) -> str:
        """How far ``ru_maxrss`` is from the process's own ``VmHWM`` (they should agree)."""
        gaps = [
            abs(result["rss_peak_kib"] - result["hwm_kib"]) / 1024
            for (test, _, _), cell in self.run.cells.items()
            if test in ("flood", "bigflood")
            for result in cell.results
            if "hwm_kib" in result
        ]
        if not gaps:
            return ""
        return (
            "The clients are started by a small launcher process, because Linux carries the "
            "peak RSS of the process that calls `exec` into `ru_maxrss`; the process's own "
            f"`VmHWM` (`/proc/self/status`) agrees within {max(gaps):.1f} MiB in every run."
        )

    def rss(self) -> list[str]:
        s = self.settings
        rows = []
        for spec in PARSERS:
            row = [spec.label]
            for framing in self.framings:
                got = self.rss_mib("flood", framing, spec.key)
                row.append(f"{got[1]:.1f} ({got[0]:.1f})" if got else "failed")
            rows.append(row)
        lines = [
            "",
            f"## Peak RSS on the {s.events:,}-event flood (MiB; at start in brackets)",
            "",
            "`resource.getrusage(RUSAGE_SELF).ru_maxrss` of the client process after the "
            "flood (the largest of the rounds); in brackets the same before the request, once "
            "the client's library is imported: what streaming added is the difference. Each "
            "process imports only its own client library. "
            f"{self.hwm_check()}",
            "",
            *table(["client", *self.framings], rows),
        ]
        if s.big_flood:
            rows = []
            for spec in AGENTSTREAM:
                row = [spec.label]
                for framing in self.framings:
                    small = self.rss_mib("flood", framing, spec.key)
                    large = self.rss_mib("bigflood", framing, spec.key)
                    if small and large:
                        row.append(f"{small[1]:.1f} → {large[1]:.1f} ({large[1] - small[1]:+.1f})")
                    else:
                        row.append("failed")
                rows.append(row)
            lines += [
                "",
                f"Peak RSS of agentstream's forms, {s.events:,} → {s.big_flood:,} events "
                "(MiB, growth in brackets; the large flood is generated by the server as it "
                "goes, one run):",
                "",
                *table(["client", *self.framings], rows),
            ]

            def rate(cell: Cell) -> str:
                return f"{s.big_flood / cell.median('seconds'):,.0f}"

            rates = [self.row(spec.label, "bigflood", spec.key, rate) for spec in AGENTSTREAM]
            lines += ["", f"Their events/s on the {s.big_flood:,}-event flood:", ""]
            lines += table(["client", *self.framings], rates)
        return lines

    def big(self) -> list[str]:
        s = self.settings
        if not s.big_bytes:
            return []

        def seconds(cell: Cell) -> str:
            once = " (1 run)" if len(cell.results) < s.rounds else ""
            return fmt(cell.median("seconds"), 3) + once

        keys = [*FLOORS, *(spec.key for spec in PARSERS)]
        rows = [self.row(ALL_LABELS[key], "big", key, seconds) for key in keys]
        return [
            "",
            f"## One {s.big_bytes / 1e6:.0f} MB event (s, median of {s.rounds})",
            "",
            f"One event whose `data` line is {s.big_bytes:,} bytes of JSON (a valid envelope "
            "with a long `data.summary`), sent as fast as possible: the time from before the "
            "request to the event's delivery (decoded or validated, as each client delivers "
            "it); the floors read the same bytes. A client that took more than "
            f'{BIG_ONCE:.0f} s was measured once per framing ("1 run"), one that took more '
            f"than {BIG_DEADLINE:.0f} s was stopped and not run again.",
            "",
            *table(["client", *self.framings], rows),
        ]

    def resume(self) -> list[str]:
        s = self.settings
        if not s.resume_events:
            return []
        rows = []
        specs = [spec for spec in PARSERS if spec.reconnects]
        for spec in specs:
            for framing in self.framings:
                cell = self.get("resume", framing, spec.key)
                problem = failed(cell)
                if problem or cell is None:
                    rows.append([spec.label, framing, problem or "not run", "", "", "", "", ""])
                    continue
                gaps = cell.pooled("gaps_ms")
                lost = cell.total("lost")
                duplicated = cell.total("duplicated")
                drawn = [d for r in cell.results for d in r["retry_delays_ms"]]
                in_force = RETRY_IN_FORCE[spec.key]
                if drawn:
                    in_force += f" (drawn {min(drawn):.0f} to {max(drawn):.0f})"
                rows.append(
                    [
                        spec.label,
                        framing,
                        fmt(statistics.median(gaps)) if gaps else "no cut seen",
                        fmt(max(gaps)) if gaps else "",
                        str(len(gaps)),
                        str(lost),
                        str(duplicated),
                        in_force,
                    ]
                )
        header = [
            "client",
            "framing",
            "cut → next event, median ms",
            "max ms",
            "cuts",
            "lost",
            "duplicated",
            "retry delay in force",
        ]
        lines = [
            "",
            f"## Resume after a cut ({s.resume_events:,} events, cut every "
            f"{s.resume_every:,}; {s.resume_rounds} round(s))",
            "",
            f"The server sends `retry: {RETRY_MS}` at the start of each connection, then the "
            f"{s.resume_every:,} events after `Last-Event-ID` (or agentstream's `cursor`), "
            "then half of the next event; once the client has "
            f"acknowledged every byte and {SETTLE * 1000:.0f} ms more have passed, it cuts the "
            "connection with a RST. The first event of the next connection carries the cut's "
            'time: "cut → next event" is from the cut to that event\'s delivery (for the '
            'Listener, its handler); "cuts" counts those measured (a client that loses '
            "that event does not measure its cut). Lost and duplicated count sequences 1 to "
            f"{s.resume_events:,} as delivered. Peers without reconnection (sseclient-py, "
            "httpx-sse, AgentRail's SDK) are not in this test.",
            "",
            *table(header, rows, left=2),
            "",
            f"Retry delays: agentstream uses `RetryPolicy.default()`, whose base the server's "
            f"`retry: {RETRY_MS}` replaces; it waits a random time up to that base (full "
            "jitter), drawn values in brackets. launchdarkly-eventsource's sync client drops "
            f"`retry:` (its reader gets no `set_retry`), so it is given "
            f"`initial_retry_delay={RETRY_MS / 1000}`, `retry_delay_reset_threshold=0.1` (else "
            "its backoff doubles at each cut, as connections last less than its default 60 s) "
            "and `ErrorStrategy.always_continue()` (else it raises at the first cut). "
            "requests-sse honours `retry:` but doubles the delay before each wait.",
        ]
        return lines

    def targets(self) -> list[str]:
        lines = ["", "## Targets (issue 5)", ""]

        def verdict(ok: Optional[bool]) -> str:
            if ok is None:
                return "**MISSED** (no result)"
            return "MET" if ok else "**MISSED**"

        for framing in self.framings:
            key, best = self.fastest_peer(framing)
            for mine in ("as-typed", "as-listener"):
                rate = self.rate(framing, mine)
                if rate is None or key is None:
                    lines.append(f"- {verdict(None)} {ALL_LABELS[mine]} events/s, {framing}")
                    continue
                ratio = rate / best
                aim = "aim 1.5× reached" if ratio >= AIM_RATIO else "aim 1.5× not reached"
                lines.append(
                    f"- {verdict(ratio >= TARGET_RATIO)} typed events/s ≥ 1.0× the fastest "
                    f"peer, {ALL_LABELS[mine]}, {framing}: {rate:,.0f}/s = {ratio:.2f}× "
                    f"{ALL_LABELS[key]} ({best:,.0f}/s; {aim})"
                )

        def delay(cell: Cell) -> tuple[bool, str]:
            median = cell.median("ms")
            worst = max(cell.values("ms"))
            return median <= TARGET_DELAY_MS, f"{median:.1f} (worst {worst:.1f})"

        def trickle(cell: Cell) -> tuple[bool, str]:
            pooled = cell.pooled("latencies_ms", TRICKLE_WARMUP)
            _p50, p99 = percentiles(pooled)
            return p99 <= TARGET_P99_MS, f"p99 {p99:.2f}"

        for spec in AGENTSTREAM:
            ok, found = self.judge("delay", spec.key, delay)
            lines.append(
                f"- {verdict(ok)} small-event delay ≤ {TARGET_DELAY_MS:.0f} ms (median), "
                f"{spec.label}: {found} ms"
            )
        for spec in AGENTSTREAM:
            ok, found = self.judge("trickle", spec.key, trickle)
            lines.append(
                f"- {verdict(ok)} trickle p99 ≤ {TARGET_P99_MS:.0f} ms, {spec.label}: {found} ms"
            )
        for spec in AGENTSTREAM:
            got = []
            ok = True
            for framing in self.framings:
                small = self.rss_mib("flood", framing, spec.key)
                if small is None:
                    ok = None
                    continue
                ok = ok and small[1] <= TARGET_RSS_MIB
                text = f"{framing} {small[1]:.1f}"
                if self.settings.big_flood:
                    large = self.rss_mib("bigflood", framing, spec.key)
                    if large is None:
                        ok = None
                    else:
                        ok = ok and large[1] - small[1] <= FLAT_MIB
                        text += f" → {large[1]:.1f} ({large[1] - small[1]:+.1f})"
                got.append(text)
            flat = (
                f" and flat to {self.settings.big_flood:,} (within {FLAT_MIB:.0f} MiB)"
                if self.settings.big_flood
                else ""
            )
            lines.append(
                f"- {verdict(ok)} peak RSS ≤ {TARGET_RSS_MIB:.0f} MiB on the "
                f"{self.settings.events:,} flood{flat}, {spec.label}: " + "; ".join(got) + " MiB"
            )
        if self.settings.big_bytes:

            def big(cell: Cell) -> tuple[bool, str]:
                seconds = cell.median("seconds")
                return seconds < TARGET_BIG_S, f"{seconds:.3f}"

            for spec in AGENTSTREAM:
                ok, found = self.judge("big", spec.key, big)
                lines.append(
                    f"- {verdict(ok)} {self.settings.big_bytes / 1e6:.0f} MB event < "
                    f"{TARGET_BIG_S} s, {spec.label}: {found} s"
                )
        if self.settings.resume_events:
            bound = RETRY_MS + TARGET_RESUME_SLACK_MS

            def resume(cell: Cell) -> tuple[bool, str]:
                gaps = cell.pooled("gaps_ms")
                lost = cell.total("lost")
                duplicated = cell.total("duplicated")
                worst_gap = max(gaps) if gaps else math.inf
                passed = worst_gap <= bound and lost == 0 and duplicated == 0
                text = (
                    f"max {worst_gap:.1f} ms over {len(gaps)} cuts, "
                    f"lost {lost}, duplicated {duplicated}"
                )
                return passed, text

            for spec in AGENTSTREAM:
                ok, found = self.judge("resume", spec.key, resume)
                lines.append(
                    f"- {verdict(ok)} resume ≤ retry delay + {TARGET_RESUME_SLACK_MS:.0f} ms "
                    f"(≤ {bound:.0f} ms), 0 lost, 0 duplicated, {spec.label}: {found}"
                )
        return lines

    def problems(self) -> list[str]:
        lines = []
        for (test, framing, key), cell in sorted(self.run.cells.items()):
            for error in cell.errors:
                lines.append(f"- {test}, {framing}, {ALL_LABELS[key]}: {error}")
        if not lines and not self.run.skip:
            return []
        lines = [*(f"- {ALL_LABELS[k]}: not run, {r}" for k, r in self.run.skip.items()), *lines]
        return ["", "## Failures and clients not run", "", *lines]


def event_bytes() -> float:
    sizes = [len(build_event(seq)) for seq in (1, 1000, 100_000, 200_000)]
    return sum(sizes) / len(sizes)


def source_state() -> str:
    """The commit of the checkout the run used, and whether agentstream/ had changes."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10
            )
        except OSError:
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return f"source {source_fingerprint()}"
    changed = git("status", "--porcelain", "--", "agentstream")
    state = f"at commit {commit}" + (", with uncommitted changes" if changed else "")
    return f"{state}; source {source_fingerprint()}"


def source_fingerprint() -> str:
    """A short hash of agentstream's source files: did the library change during the run?"""
    digest = hashlib.sha256()
    for path in sorted((HERE.parent / "agentstream").rglob("*.py")):
        digest.update(str(path.relative_to(HERE.parent)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def unavailable() -> dict[str, str]:
    """Clients whose library is not installed (they are reported, not dropped)."""
    skip = {}
    for spec in PARSERS:
        if version(spec.distribution) == "not installed":
            skip[spec.key] = f"{spec.distribution} is not installed (bench/requirements.txt)"
    return skip


# -- main -----------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]] = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (about 1.5 min)")
    parser.add_argument("--events", type=int, help="events of the flood (default 200,000)")
    parser.add_argument("--rounds", type=int, help="rounds of flood, delay, 7 MB (default 3)")
    parser.add_argument(
        "--framings",
        default=",".join(FRAMINGS),
        help="comma-separated subset of: " + ", ".join(FRAMINGS),
    )
    parser.add_argument(
        "--big-flood", type=int, help="agentstream's RSS flood (default 1,000,000; 0: none)"
    )
    parser.add_argument("--trickle-events", type=int, help="trickle events (default 400: 2 s)")
    parser.add_argument("--trickle-rounds", type=int, help="trickle rounds (default 1)")
    parser.add_argument(
        "--big-bytes", type=int, help="the big event's data line (default 7,000,000; 0: none)"
    )
    parser.add_argument("--resume-events", type=int, help="resume stream (default 20,000; 0: none)")
    parser.add_argument("--resume-every", type=int, help="cut every K events (default 2,000)")
    parser.add_argument("--resume-rounds", type=int, help="resume rounds (default 1)")
    args = parser.parse_args(argv)
    framings = [f.strip() for f in args.framings.split(",") if f.strip()]
    unknown = sorted(set(framings) - set(FRAMINGS))
    if unknown or not framings:
        parser.error(f"unknown framing(s) {unknown}; choose from {', '.join(FRAMINGS)}")
    quick = args.quick

    def pick(value: Optional[int], full: int, smoke: int) -> int:
        return value if value is not None else (smoke if quick else full)

    command = " ".join(["python", "bench/peers.py", *(argv if argv is not None else sys.argv[1:])])
    settings = Settings(
        events=pick(args.events, 200_000, 20_000),
        rounds=pick(args.rounds, 3, 1),
        framings=framings,
        big_flood=pick(args.big_flood, 1_000_000, 100_000),
        trickle_events=pick(args.trickle_events, 400, 100),
        trickle_rounds=pick(args.trickle_rounds, 1, 1),
        big_bytes=pick(args.big_bytes, BIG_BYTES, BIG_BYTES),
        resume_events=pick(args.resume_events, 20_000, 4_000),
        resume_every=pick(args.resume_every, 2_000, 1_000),
        resume_rounds=pick(args.resume_rounds, 1, 1),
        command=command,
    )
    if settings.trickle_events <= TRICKLE_WARMUP:
        parser.error(f"--trickle-events must be above {TRICKLE_WARMUP}")
    return settings


def main(argv: Optional[Sequence[str]] = None) -> None:
    settings = parse_args(argv)
    check_payloads(settings)
    started = time.perf_counter()
    config = ServerConfig(
        settings.framings, settings.events, settings.resume_events, settings.big_bytes
    )
    progress(f"building {settings.events:,} events in the server process...")
    launcher = Launcher()
    try:
        with server_process(serve, config) as port:
            run = Run(settings, f"http://127.0.0.1:{port}", unavailable(), launcher)
            for key, reason in run.skip.items():
                progress(f"{key}: not run: {reason}")
            run_floods(run)
            run_big_floods(run)
            run_delays(run)
            run_trickles(run)
            run_bigs(run)
            run_resumes(run)
    finally:
        launcher.close()
    text = Report(run, time.perf_counter() - started).text()
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    progress(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
