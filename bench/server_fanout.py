"""The reference server's fan-out, before and after: publishes/s, delivery latency, idle CPU.

Run from the repository root::

    .venv/bin/python bench/server_fanout.py                 # main against the working tree
    .venv/bin/python bench/server_fanout.py --base HEAD~3 --quick

``--base`` (any git revision, ``main`` by default) is checked out into a
temporary ``git worktree`` and is "before"; the working tree is "after".
Each revision's server runs in its own process (``agentstream serve``'s
``ReferenceServer``, a fresh database, no simulated agent), with the tailers
in a second process (one thread, a selector over raw sockets, so the client
costs as little as it can) and the publishers in a third (threads, each on
one ``http.client`` connection, which the old server closes after every
answer and the new one keeps). Every published event carries its send time;
a tailer's latency is the time from just before the POST to the moment its
bytes are read. Scenarios:

- ``publish``: publishers flood for ``--seconds`` with no stream open;
- ``flood``: the same with ``--tailers`` streams open; rate = events every
  tailer received / time until the last one arrived;
- ``paced``: ``--rate`` publishes/s with ``--tailers`` streams open; the
  achieved rate and the latency percentiles;
- ``slow``: the paced run with one more tailer that never reads;
- ``idle``: ``--idle`` open streams and nothing published: the server
  process's CPU over ``--seconds`` (from ``/proc``), as % of one core.

Besides rates and latencies it prints the server process's CPU per published
event (all its deliveries included), which depends far less on what else the
machine runs than the rates do. ``FANOUT_SWITCH_INTERVAL=0.0005`` in the
environment sets both server processes' GIL switch interval (to see how much
of the latency is threads waiting for the GIL).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

import callgrind  # noqa: E402  (bench/ is not a package)

KEY = "as_bench_fanout_key"
SCENARIOS = ("publish", "flood", "paced", "slow", "idle")
_STAMP = re.compile(rb'"t":([0-9.]+)')


# ---------------------------------------------------------------------- the three roles


def serve() -> None:
    """Role ``--serve``: a reference server of whatever agentstream is on PYTHONPATH."""
    from agentstream import server as srv

    switch = os.environ.get("FANOUT_SWITCH_INTERVAL")  # for both revisions
    if switch:
        sys.setswitchinterval(float(switch))

    kwargs: dict[str, Any] = {}
    config_class = getattr(srv, "ServerConfig", None)
    if config_class is not None:  # the new server caps connections: make room for --idle
        options: dict[str, Any] = {"max_connections": 20_000}
        interval = os.environ.get("FANOUT_INTERVAL")  # where the revision has it
        if interval and "fanout_interval" in config_class.__dataclass_fields__:
            options["fanout_interval"] = float(interval)
        kwargs["config"] = config_class(**options)
    tmp = tempfile.mkdtemp(prefix="agentstream-fanout-")
    server = srv.ReferenceServer(
        os.path.join(tmp, "events.sqlite3"),
        api_keys={KEY: srv.ALL_SCOPES},
        retention=10_000_000,
        heartbeat_default=300,
        agent_pace=0,
        **kwargs,
    ).start()
    print(json.dumps({"url": server.url, "port": server.port}), flush=True)
    sys.stdin.read()  # until the bench closes our stdin
    server.stop()


def tail(port: int, count: int, silent: int) -> None:
    """Role ``--tail``: ``count`` streams read on one thread; ``silent`` more never read.

    Prints ``ready`` once every stream is open; then reads a number N from
    stdin (how many were published) and prints one JSON line once every
    reading stream has N events (or 60 s after it got N).
    """
    request = (
        "GET /task-events/stream?heartbeatSeconds=300 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {KEY}\r\n\r\n"
    ).encode()
    selector = selectors.DefaultSelector()
    socks = []
    for index in range(count + silent):
        sock = socket.create_connection(("127.0.0.1", port))
        if index >= count:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request)
        socks.append(sock)
    state: dict[socket.socket, dict[str, Any]] = {}
    for sock in socks[:count]:
        sock.setblocking(False)
        state[sock] = {"buf": b"", "open": False, "n": 0, "last": 0.0}
        selector.register(sock, selectors.EVENT_READ)
    stdin = sys.stdin.buffer.raw  # type: ignore[attr-defined]
    selector.register(stdin, selectors.EVENT_READ)
    opened = 0
    cpu_at_ready = 0.0
    latencies: list[float] = []
    expected: Optional[int] = None
    deadline = float("inf")
    while time.monotonic() < deadline:
        if expected is not None and all(s["n"] >= expected for s in state.values()):
            break
        for key, _ in selector.select(0.5):
            if key.fileobj is stdin:
                expected = int(stdin.readline())
                deadline = time.monotonic() + 60
                selector.unregister(stdin)
                continue
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            s = state[sock]
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            now = time.time()
            if not data:
                selector.unregister(sock)
                continue
            buf = s["buf"] + data
            if not s["open"] and b": connected" in buf:
                s["open"] = True
                opened += 1
                if opened == count:
                    cpu_at_ready = _own_cpu()
                    print("ready", flush=True)
            cut = buf.rfind(b"\n\n")
            if cut < 0:
                s["buf"] = buf
                continue
            stamps = _STAMP.findall(buf, 0, cut)
            s["buf"] = buf[cut + 2 :]
            if stamps:
                latencies.extend(now - float(t) for t in stamps)
                s["n"] += len(stamps)
                s["last"] = now
    received = [s["n"] for s in state.values()]
    last = max((s["last"] for s in state.values()), default=0.0)
    latencies.sort()
    print(
        json.dumps(
            {
                "received_min": min(received),
                "last": last,
                "p50": _percentile(latencies, 0.50),
                "p99": _percentile(latencies, 0.99),
                "cpu": _own_cpu() - cpu_at_ready,  # since every stream was open
            }
        ),
        flush=True,
    )
    for sock in socks:
        sock.close()


def publish(
    port: int, threads: int, seconds: float, rate: Optional[float], pad: int, limit: int = 0
) -> None:
    """Role ``--publish``: ``threads`` publishers for ``seconds`` (paced at ``rate``/s if
    given; ``limit`` events at most if not 0); prints one JSON line: how many were
    published, first send, last answer, and this process's CPU seconds.

    Each publisher is one kept-alive connection written with a prepared request and
    read with a scan for the end of the answer (``_Answers``): about a tenth of the
    CPU of ``http.client``, whose request building and ``email``-based answer parsing
    made the publishers a fifth of the machine at 1,000 publishes/s.
    """
    lock = threading.Lock()
    slots = iter(range(10**9))
    counts = [0] * threads
    start = time.time() + 0.2
    end = start + seconds
    first_last = [float("inf"), 0.0]
    in_flight = [0]
    head = (
        "POST /task-events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
    ).encode()

    def run(index: int) -> None:
        answers = _Answers(port)
        while True:
            if rate is not None:
                with lock:
                    slot = next(slots)
                due = start + slot / rate
                if due >= end or time.time() >= end:  # a server that cannot keep up: stop
                    break
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
            elif time.time() >= end:
                break
            if limit:
                with lock:
                    if sum(counts) + in_flight[0] >= limit:
                        break
                    in_flight[0] += 1
            sent = time.time()
            body = json.dumps({"type": "message.chunk", "data": {"t": sent, "pad": "x" * pad}})
            request = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body.encode())
            status = answers.exchange(request)
            if status != 201:
                raise SystemExit(f"publish failed: {status}")
            with lock:
                counts[index] += 1
                if limit:
                    in_flight[0] -= 1
                first_last[0] = min(first_last[0], sent)
                first_last[1] = max(first_last[1], time.time())
        answers.close()

    while time.time() < start:
        time.sleep(0.01)
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    result = {"published": sum(counts), "first": first_last[0], "last": first_last[1]}
    print(json.dumps({**result, "cpu": _own_cpu()}))


_LENGTH = re.compile(rb"\r\ncontent-length: *([0-9]+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection: *close", re.IGNORECASE)


class _Answers:
    """One publisher's connection: sends a request, reads its answer (which has a
    ``Content-Length``, as every answer to a publish has), reconnects after a server
    that closes (``Connection: close``: older revisions closed after every answer)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._sock: Optional[socket.socket] = None

    def exchange(self, request: bytes) -> int:
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self._port))
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self._sock
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("the server closed the connection before answering")
            data += chunk
            cut = data.find(b"\r\n\r\n")
            if cut < 0:
                continue
            length = _LENGTH.search(data, 0, cut + 2)
            if length is None:
                raise SystemExit(f"an answer without Content-Length: {data[:200]!r}")
            if len(data) >= cut + 4 + int(length.group(1)):
                break
        if _CLOSE.search(data, 0, cut + 2):
            self.close()
        return int(data[9:12])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _own_cpu() -> float:
    """This process's CPU seconds so far (user + system, every thread)."""
    times = os.times()
    return times.user + times.system


# ---------------------------------------------------------------------- the bench


def _percentile(values: list[float], q: float) -> Optional[float]:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


class Revision:
    """One revision's server process, and the client processes run against it."""

    def __init__(self, label: str, checkout: Path, wrapper: Sequence[str] = ()) -> None:
        self.label = label
        self.checkout = checkout
        self.env = dict(os.environ, PYTHONPATH=str(checkout), **callgrind.ENV)
        self.proc = self._spawn(["--serve"], wrapper, stdin=subprocess.PIPE)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.port = int(info["port"])

    def _spawn(
        self, args: list[str], wrapper: Sequence[str] = (), **kwargs: Any
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*wrapper, sys.executable, str(HERE), *args],
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.checkout,
            **kwargs,
        )

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cpu_seconds(self, kernel_only: bool = False) -> float:
        """The server process's CPU seconds so far (user + system; or system only)."""
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = int(fields[12]) if kernel_only else int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def publishers(self, args: argparse.Namespace, rate: Optional[float]) -> dict[str, Any]:
        cmd = ["--publish", str(self.port), str(args.publishers), str(args.seconds)]
        cmd += [str(rate or 0), str(args.pad)]
        proc = self._spawn(cmd)
        out, _ = proc.communicate(timeout=args.seconds * 10 + 60)
        if proc.returncode:
            raise SystemExit(f"{self.label}: the publishers failed")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def tailers(self, count: int, silent: int = 0) -> subprocess.Popen[str]:
        proc = self._spawn(
            ["--tail", str(self.port), str(count), str(silent)], stdin=subprocess.PIPE
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"{self.label}: the tailers did not open: {line!r}")
        return proc

    def run(self, args: argparse.Namespace) -> dict[str, Any]:
        results: dict[str, Any] = {"load": os.getloadavg()[0]}
        if "publish" in args.scenarios:
            cpu_before = self.cpu_seconds()
            pub = self.publishers(args, None)
            results["publish"] = pub["published"] / (pub["last"] - pub["first"])
            cpu = self.cpu_seconds() - cpu_before
            results["publish_cpu_ms"] = cpu * 1000 / pub["published"]

        for name, rate, silent in (
            ("flood", None, 0),
            ("paced", args.rate, 0),
            ("slow", args.rate, 1),
        ):
            if name not in args.scenarios:
                continue
            tailers = self.tailers(args.tailers, silent)
            cpu_before, kernel_before = self.cpu_seconds(), self.cpu_seconds(kernel_only=True)
            pub = self.publishers(args, rate)
            tail_result = self._tail_until(tailers, pub["published"])
            cpu = self.cpu_seconds() - cpu_before
            kernel = self.cpu_seconds(kernel_only=True) - kernel_before
            delivered_by = max(tail_result["last"], pub["last"])
            published = max(1, pub["published"])
            results[name] = {
                "rate": tail_result["received_min"] / (delivered_by - pub["first"]),
                "published": pub["published"],
                "received_min": tail_result["received_min"],
                "p50": tail_result["p50"],
                "p99": tail_result["p99"],
                "cpu_ms": cpu * 1000 / published,
                "kernel_ms": kernel * 1000 / published,
                # the bench's own processes, as % of one core over the run
                "publishers_cpu": pub["cpu"] * 100 / (pub["last"] - pub["first"]),
                "tailers_cpu": tail_result["cpu"] * 100 / (delivered_by - pub["first"]),
            }

        if "idle" in args.scenarios:
            tailers = self.tailers(args.idle)
            before, started = self.cpu_seconds(), time.monotonic()
            threading.Event().wait(args.seconds)
            cpu = (self.cpu_seconds() - before) / (time.monotonic() - started)
            self._tail_until(tailers, 0)
            results["idle_cpu"] = cpu * 100
        results["load_after"] = os.getloadavg()[0]
        return results

    def _tail_until(self, tailers: subprocess.Popen[str], published: int) -> dict[str, Any]:
        out, _ = tailers.communicate(f"{published}\n", timeout=180)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        if result["received_min"] < published:
            print(
                f"  {self.label}: a tailer received {result['received_min']} of {published}",
                file=sys.stderr,
            )
        return result


def count_instructions(args: argparse.Namespace, label: str, checkout: Path) -> dict[str, Any]:
    """Role of ``--instructions``: the server under ``valgrind --tool=callgrind``.

    Instrumentation is off while the server starts and the tailers connect,
    on while ``--events`` events are published one at a time (one publisher,
    each POST waiting for its answer) and delivered to every tailer, then the
    counts are dumped: instructions per published event, all its deliveries
    included, with none and with ``--tailers`` streams open. The count does not
    depend on the machine's load (the kernel's share, the ``send`` syscalls
    themselves, is not counted: the server's system CPU per event is given
    beside it).
    """
    results: dict[str, Any] = {"load": os.getloadavg()[0]}
    for count in sorted({0, args.tailers}):
        # A fresh server each time: callgrind's first dump is the one whose totals are
        # exactly what ran since instrumentation was switched on.
        with tempfile.TemporaryDirectory(prefix="agentstream-fanout-cg-") as scratch:
            out = Path(scratch) / "callgrind.out"
            valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
            valgrind += [f"--callgrind-out-file={out}", f"--log-file={out}.log"]
            revision = Revision(label, checkout, wrapper=valgrind)
            try:
                tailers = revision.tailers(count) if count else None
                kernel_before = revision.cpu_seconds(kernel_only=True)
                _callgrind_control(revision, "--instr=on")
                cmd = ["--publish", str(revision.port), "1", "3600", "0", str(args.pad)]
                proc = revision._spawn([*cmd, str(args.events)])
                published = json.loads(proc.communicate(timeout=3600)[0].strip().splitlines()[-1])
                if tailers is not None:
                    revision._tail_until(tailers, published["published"])
                _callgrind_control(revision, "--dump")
                kernel = revision.cpu_seconds(kernel_only=True) - kernel_before
                text = Path(f"{out}.1").read_text()
                keep = os.environ.get("FANOUT_KEEP_CALLGRIND")  # for callgrind_annotate
                if keep:
                    shutil.copy(f"{out}.1", f"{keep}.{label.replace(' ', '_')}.{count}")
            finally:
                revision.close()
        total = callgrind.TOTALS.search(text)
        assert total is not None, "no totals in callgrind's dump"
        events = published["published"]
        results[f"instructions_{count}"] = int(total.group(1)) / events
        results[f"kernel_ms_{count}"] = kernel * 1000 / events
    results["load_after"] = os.getloadavg()[0]
    return results


def _callgrind_control(revision: Revision, option: str) -> None:
    subprocess.run(
        ["callgrind_control", option, str(revision.proc.pid)],
        check=True,
        capture_output=True,
        timeout=600,
    )


def main(argv: Optional[list[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        return serve()
    if argv[:1] == ["--tail"]:
        port, count, silent = argv[1:4]
        return tail(int(port), int(count), int(silent))
    if argv[:1] == ["--publish"]:
        port, threads, seconds, rate, pad, *rest = argv[1:7]
        limit = int(rest[0]) if rest else 0  # events at most (--instructions)
        return publish(
            int(port), int(threads), float(seconds), float(rate) or None, int(pad), limit
        )

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main", help="the 'before' revision (main)")
    parser.add_argument("--tailers", type=int, default=100)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="paced publishes/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--publishers", type=int, default=4, help="publisher threads")
    parser.add_argument("--pad", type=int, default=200, help="bytes of padding per event")
    parser.add_argument(
        "--rounds", type=int, default=1, help="before, after, before, ...: medians of each"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"a comma-separated subset of {','.join(SCENARIOS)} (all)",
    )
    parser.add_argument("--quick", action="store_true", help="2 s runs, 20 tailers, 200 idle")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count the server's instructions per event under callgrind instead of timing",
    )
    parser.add_argument("--events", type=int, default=300, help="events per --instructions run")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.tailers, args.idle = 2.0, 20, 200
    args.scenarios = [name for name in args.scenarios.split(",") if name]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.instructions and not callgrind.available():
        raise SystemExit("--instructions needs valgrind on the PATH")

    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="agentstream-fanout-ab-") as scratch:
        before = Path(scratch) / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(before), args.base],
            check=True,
        )
        try:
            for round_ in range(args.rounds):
                for label, checkout in ((args.base, before), ("working tree", ROOT)):
                    print(
                        f"round {round_ + 1}: running {label} (load {os.getloadavg()[0]:.2f}) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    if args.instructions:
                        runs.setdefault(label, []).append(count_instructions(args, label, checkout))
                        continue
                    revision = Revision(label, checkout)
                    try:
                        runs.setdefault(label, []).append(revision.run(args))
                    finally:
                        revision.close()
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=True
            )
    medians = {label: _medians(each) for label, each in runs.items()}
    if args.instructions:
        report_instructions(args, medians, runs)
    else:
        report(args, medians, runs)


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every measure over the rounds (None where a round had none)."""
    merged: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            merged[key] = _medians([run[key] for run in runs])
        else:
            values = [run[key] for run in runs if run[key] is not None]
            merged[key] = statistics.median(values) if values else None
    return merged


def _sides(
    results: dict[str, dict[str, Any]], runs: dict[str, list[dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, Any], list[str], list[str]]:
    """Before's and after's medians, their labels, and each run's load average."""
    old, new = (results[label] for label in results)
    loads = [f"{run['load']:.2f}-{run['load_after']:.2f}" for each in runs.values() for run in each]
    return old, new, list(results), loads


def report_instructions(
    args: argparse.Namespace,
    results: dict[str, dict[str, Any]],
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    old, new, labels, loads = _sides(results, runs)
    print(
        f"\nthe server under callgrind: {args.events} events published one at a time, "
        f"medians of {args.rounds} round(s); load average: {', '.join(loads)}\n"
    )
    print(f"| per published event | {labels[0]} | {labels[1]} | after / before |")
    print("|---|---:|---:|---:|")
    for count in sorted({0, args.tailers}):
        where = "no stream open" if count == 0 else f"delivered to {count} tailers"
        a, b = old[f"instructions_{count}"], new[f"instructions_{count}"]
        print(f"| instructions, {where} | {a:,.0f} | {b:,.0f} | {b / a:.2f}× |")
        a, b = old[f"kernel_ms_{count}"], new[f"kernel_ms_{count}"]
        ratio = f"{b / a:.2f}×" if a else "-"
        print(f"| server system CPU ms, {where} | {a:.3f} | {b:.3f} | {ratio} |")


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, Any]],
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    old, new, labels, loads = _sides(results, runs)
    print(
        f"\n{args.tailers} tailers, {args.publishers} publisher threads, {args.seconds:g} s runs, "
        f"paced at {args.rate:g}/s, {args.idle} idle streams; {os.cpu_count()} cores; "
        f"medians of {args.rounds} round(s); 1-minute load average at the start and end "
        f"of each revision's run, in run order: {', '.join(loads)}\n"
    )
    print(f"| measure | {labels[0]} | {labels[1]} | after / before |")
    print("|---|---:|---:|---:|")

    def row(name: str, a: Optional[float], b: Optional[float], fmt: str = "{:,.0f}") -> None:
        if a is None or b is None:
            return
        ratio = f"{b / a:.2f}×" if a else "-"
        print(f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")

    cpu_fmt = "{:.2f}"
    if "publish" in new:
        row("publishes/s, no stream open", old["publish"], new["publish"])
        row(
            "  server CPU ms per publish (no stream)",
            old["publish_cpu_ms"],
            new["publish_cpu_ms"],
            cpu_fmt,
        )
    for name, text in (
        ("flood", f"{args.tailers} tailers, publishers flat out"),
        ("paced", f"{args.tailers} tailers, {args.rate:g}/s asked"),
        ("slow", f"{args.tailers} tailers + 1 that never reads, {args.rate:g}/s asked"),
    ):
        if name not in new:
            continue
        a, b = old[name], new[name]
        row(f"publishes/s delivered to every tailer ({text})", a["rate"], b["rate"])
        row(
            f"  server CPU ms per event, all deliveries ({name})", a["cpu_ms"], b["cpu_ms"], cpu_fmt
        )
        row(f"  of which in the kernel ({name})", a["kernel_ms"], b["kernel_ms"], cpu_fmt)
        for q in ("p50", "p99"):
            if a[q] is not None and b[q] is not None:
                row(f"  delivery latency {q}, ms ({name})", a[q] * 1000, b[q] * 1000, "{:.1f}")
        row(
            f"  the bench's publishers / tailers, % of a core ({name})",
            a["publishers_cpu"] + a["tailers_cpu"],
            b["publishers_cpu"] + b["tailers_cpu"],
            "{:.0f}",
        )
    if "idle_cpu" in new:
        row(
            f"server CPU, {args.idle} idle streams (% of one core)",
            old["idle_cpu"],
            new["idle_cpu"],
            "{:.1f}",
        )

    if args.rounds > 1:
        print("\neach round (publishes/s delivered, p50 / p99 ms):")
        for name in ("flood", "paced", "slow"):
            if name not in new:
                continue
            for label, each in runs.items():
                cells = ", ".join(
                    f"{run[name]['rate']:,.0f} ({_ms(run[name]['p50'])} / {_ms(run[name]['p99'])})"
                    for run in each
                )
                print(f"- {name}, {label}: {cells}")

    print("\ntargets (working tree):")
    paced = new.get("paced")
    if paced is not None:
        print(
            f"- >= 1,000 publishes/s to {args.tailers} tailers with p99 <= 50 ms: "
            f"{paced['rate']:,.0f}/s, p99 {_ms(paced['p99'])} ms"
        )
    if "idle_cpu" in new:
        print(f"- {args.idle} idle streams <= 3% CPU: {new['idle_cpu']:.1f}%")
    if "slow" in new:
        without = f", {_ms(paced['p99'])} ms without" if paced is not None else ""
        print(
            f"- a slow tailer does not stall the others: p99 {_ms(new['slow']['p99'])} ms "
            f"with it{without}"
        )


if __name__ == "__main__":
    main()
