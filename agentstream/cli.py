"""The ``agentstream`` command: ``demo``, ``serve`` and ``tail``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, Optional, TextIO

from .client import Client
from .errors import AgentStreamError
from .event_types import EventType
from .models import TaskEvent
from .stream import StreamOptions

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``agentstream`` command; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="agentstream", description="Follow the live event stream of AI-agent tasks."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the demo on an in-process reference server")
    demo.add_argument("--pace", type=float, default=0.12, help="seconds between agent events")

    commands.add_parser(
        "serve", help="run the reference server (see `agentstream serve --help`)", add_help=False
    )

    tail = commands.add_parser("tail", help="print a server's events as they arrive")
    tail.add_argument("--base-url", help="server URL (default: AGENTSTREAM_BASE_URL)")
    tail.add_argument("--api-key", help="API key (default: AGENTSTREAM_API_KEY)")
    tail.add_argument(
        "--type",
        action="append",
        dest="types",
        metavar="TYPE",
        help="only this event type (repeatable)",
    )
    tail.add_argument("--task", help="only this task's events (ends after it finishes)")
    tail.add_argument("--cursor", help="resume after this event id")
    tail.add_argument("--heartbeat", type=int, default=15, help="heartbeat seconds (1..300)")
    tail.add_argument("--json", action="store_true", help="one JSON envelope per line")

    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        from .server import serve_main

        return serve_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(pace=args.pace)
    return _tail(args, sys.stdout)


def _tail(args: argparse.Namespace, out: TextIO) -> int:
    try:
        options = StreamOptions(
            event_types=args.types,
            task_id=args.task,
            cursor=args.cursor,
            heartbeat_seconds=args.heartbeat,
        )
        with Client(args.base_url, args.api_key) as client, client.stream_events(options) as stream:
            for event in stream:
                out.write(_json_line(event) if args.json else _text_line(event))
                out.write("\n")
                out.flush()
    except KeyboardInterrupt:
        return 0
    except (AgentStreamError, ValueError) as exc:
        print(f"agentstream tail: {exc}", file=sys.stderr)
        return 1
    return 0


def _json_line(event: TaskEvent) -> str:
    return json.dumps(event.model_dump(mode="json", by_alias=True), separators=(",", ":"))


def _text_line(event: TaskEvent) -> str:
    when = event.occurred_at.strftime("%H:%M:%S.%f")[:-3]
    return f"{when}  {event.type!s:<20} {event.task_id or '-':<28} {_summary(event)}"


def _summary(event: TaskEvent) -> str:
    data: Any = event.data
    if event.validation_error is not None or not isinstance(event.type, EventType):
        return json.dumps(event.raw)[:100]
    kind = event.type
    if kind == EventType.MESSAGE_CHUNK:
        return repr(data)
    if kind in (EventType.TASK_CREATED, EventType.TASK_FINISHED):
        return f"{data.identifier} {data.status.value}: {data.prompt[:60]!r}"
    if kind in (EventType.TASK_UPDATED, EventType.TASK_REVIEWED, EventType.TASK_SHIPPED):
        return f"{data.status.value}: {data.summary}"
    if kind == EventType.TOOL_CALL_REQUESTED:
        return f"{data.tool_name}({json.dumps(data.payload)[:60]})"
    if kind == EventType.TOOL_CALL_COMPLETED:
        return f"{data.tool_name} {'failed' if data.is_error else 'ok'}"
    if kind == EventType.AUTH_REQUIRED:
        return f"{data.provider}: {data.auth_url}"
    if kind in (EventType.REASONING_THINK, EventType.REASONING_ANALYZE):
        return str(data.title)
    if kind == EventType.PLAN_UPDATED:
        return ", ".join(f"{s.title} [{s.status}]" for s in data.steps)
    if kind == EventType.SUBAGENT_TRIGGERED:
        return f"{data.agent_id}: {data.prompt[:60]!r}"
    if kind == EventType.TASK_COMPACTED:
        return f"{data.tokens_before} -> {data.tokens_after} tokens"
    return ""
