"""``agentstream demo``: the whole library on one machine, with no account.

Starts the reference server in-process on a free port, registers handlers
with decorators, creates a streaming task, and prints a live transcript
written by those handlers from the Listener's thread. Half-way through, the
server drops the connection; the listener resumes from its cursor and the
summary checks that no event was missed or repeated.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Optional, TextIO

from . import signals
from ._extras import import_server
from ._human import describe_failure
from .client import Client
from .dispatch import Registry
from .event_types import EventType
from .models import TaskEvent
from .sse import RetryPolicy
from .stream import StreamOptions

__all__ = ["run_demo"]

PROMPT = "Summarise the state of Server-Sent Events clients in Python"


class _Style:
    """ANSI colours when writing to a terminal, plain text otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def dim(self, text: str) -> str:
        return self(text, "2")

    def bold(self, text: str) -> str:
        return self(text, "1")

    def green(self, text: str) -> str:
        return self(text, "32")

    def red(self, text: str) -> str:
        return self(text, "31")

    def yellow(self, text: str) -> str:
        return self(text, "33")

    def cyan(self, text: str) -> str:
        return self(text, "36")


class _Transcript:
    """Writes lines, keeping streamed text inline."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.inline = False
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        with self.lock:
            if self.inline:
                self.out.write("\n")
                self.inline = False
            self.out.write(f"{text}\n")
            self.out.flush()

    def chunk(self, text: str, indent: str) -> None:
        with self.lock:
            if not self.inline:
                self.out.write(indent)
                self.inline = True
            self.out.write(text)
            self.out.flush()


def _args(payload: Any) -> str:
    text = json.dumps(payload, separators=(", ", ": "))
    return text if len(text) <= 70 else text[:67] + "..."


def _register(
    registry: Registry, out: _Transcript, style: _Style, drop: Any, finished: threading.Event
) -> None:
    pad = "  "
    chunks_seen = [0]

    @registry.on(EventType.TASK_CREATED)
    def created(event: TaskEvent) -> None:
        out.line(
            f"{pad}{style.bold('task ' + event.data.identifier)} created: {event.data.prompt!r}"
        )

    @registry.on(EventType.TASK_UPDATED)
    def updated(event: TaskEvent) -> None:
        out.line(
            f"{pad}{style.cyan('●')} status {style.bold(event.data.status.value)}"
            f"  {style.dim(event.data.summary)}"
        )

    @registry.on(EventType.THINK, EventType.ANALYZE)
    def reasoning(event: TaskEvent) -> None:
        kind = "think" if event.type == EventType.THINK else "analyze"
        out.line(f"{pad}{style.dim(f'{kind}: {event.data.title} — {event.data.content}')}")

    @registry.on(EventType.PLAN_UPDATED)
    def plan(event: TaskEvent) -> None:
        steps = ", ".join(f"{s.title} [{s.status}]" for s in event.data.steps)
        out.line(f"{pad}plan: {steps}")

    @registry.on(EventType.TOOL_CALL_REQUEST)
    def tool_call(event: TaskEvent) -> None:
        out.line(f"{pad}{style.yellow('→')} {event.data.tool_name}({_args(event.data.payload)})")

    @registry.on(EventType.TOOL_CALL_RESULT)
    def tool_result(event: TaskEvent) -> None:
        mark = style.red("✗") if event.data.is_error else style.green("✓")
        out.line(f"{pad}{mark} {event.data.tool_name}: {_args(event.data.result)}")

    @registry.on(EventType.Chunk)
    def chunk(event: TaskEvent) -> None:
        out.chunk(event.data, pad)
        chunks_seen[0] += 1
        if chunks_seen[0] == 2:
            drop()  # the server cuts the connection mid-answer

    @registry.on_auth_event
    def needs_login(event: TaskEvent) -> None:
        out.line(f"{pad}{style.yellow('auth required')}: {event.data.message}")
        out.line(f"{pad}  sign in with {event.data.provider} at {style.dim(event.data.auth_url)}")

    @registry.on(EventType.SUB_AGENT_TRIGGER)
    def subagent(event: TaskEvent) -> None:
        out.line(f"{pad}sub-agent {event.data.agent_id}: {event.data.prompt!r}")

    @registry.on(EventType.TASK_COMPACTED)
    def compacted(event: TaskEvent) -> None:
        d = event.data
        out.line(
            f"{pad}{style.dim(f'context compacted: {d.tokens_before} → {d.tokens_after} tokens')}"
        )

    @registry.on(EventType.TASK_REVIEWED)
    def reviewed(event: TaskEvent) -> None:
        out.line(
            f"{pad}review: {style.bold(event.data.review_outcome)} by {event.data.reviewer.id}"
        )

    @registry.on(EventType.TASK_SHIPPED)
    def shipped(event: TaskEvent) -> None:
        d = event.data
        where = style.bold(d.target_environment)
        out.line(f"{pad}shipped to {where}: {d.ship_status} ({d.operation_id})")

    @registry.on(EventType.TASK_FINISHED)
    def done(event: TaskEvent) -> None:
        status = event.data.status.value
        colour = style.green if status == "done" else style.red
        out.line(f"{pad}finished: {colour(status)} — {event.data.result or event.data.error}")
        finished.set()


def run_demo(
    *, pace: float = 0.12, out: Optional[TextIO] = None, colour: Optional[bool] = None
) -> int:
    """Run the demo; returns the exit status (0 when nothing was lost or repeated)."""
    # the [server] extra, needed only here (MissingExtraError says what to install)
    server_module = import_server("agentstream demo")

    stream = out or sys.stdout
    style = _Style(stream.isatty() if colour is None else colour)
    transcript = _Transcript(stream)
    registry = Registry()
    finished = threading.Event()
    handled: list[TaskEvent] = []
    started = time.monotonic()

    with server_module.ReferenceServer(agent_pace=pace) as server:
        client = Client(server.url, server.api_key, retry=RetryPolicy(initial_delay=0.2))
        transcript.line(
            style.bold("agentstream demo") + f" — reference server at {server.url} "
            "(in-process, no account)"
        )

        def drop() -> None:
            server.drop_streams()

        _register(registry, transcript, style, drop, finished)
        registry.on_event(handled.append)
        listener = client.listen(StreamOptions(heartbeat_seconds=5), registry=registry)

        def on_disconnected(sender: Any, **kwargs: Any) -> None:
            error = kwargs.get("error")
            cause = describe_failure(error) if error is not None else kwargs["reason"]
            transcript.line(style.red(f"  [connection lost: {cause}; reconnecting]"))

        connected = threading.Event()

        def on_connected(sender: Any, **kwargs: Any) -> None:
            if connected.is_set():
                transcript.line(style.green(f"  [reconnected, resuming after {kwargs['cursor']}]"))
            connected.set()

        signals.disconnected.connect(on_disconnected, sender=listener)
        signals.connected.connect(on_connected, sender=listener)
        try:
            listener.start()
            connected.wait(10)
            client.create_task(PROMPT, events_streaming=True)
            ok = finished.wait(25)
            listener.wait_handled(handled[-1] if handled else 0, timeout=5)
        finally:
            listener.stop(5)
            signals.disconnected.disconnect(on_disconnected, sender=listener)
            signals.connected.disconnect(on_connected, sender=listener)
            client.close()

    sequences = [e.sequence for e in handled]
    gapless = (
        sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        if sequences
        else False
    )
    unique = len(set(sequences)) == len(sequences)
    stats = listener.stats
    summary = (
        f"{len(handled)} events, sequences {sequences[0] if sequences else '-'}–"
        f"{sequences[-1] if sequences else '-'}: "
        f"{'none missed' if gapless else 'GAP'}, {'none twice' if unique else 'DUPLICATES'}; "
        f"{stats.reconnects} reconnect(s); {time.monotonic() - started:.1f}s"
    )
    good = ok and gapless and unique and stats.reconnects >= 1
    transcript.line((style.green if good else style.red)(summary))
    return 0 if good else 1
