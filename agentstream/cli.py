"""The ``agentstream`` command: ``demo``, ``serve`` and ``tail``.

Exit status (docs/cli.md): 0 done (also after Ctrl-C, or when the reader of
the output went away, as with ``| head``); 1 a runtime failure (the server
refused the key, the retry budget is spent, an extra is missing); 2 a usage
error (argparse's convention), whatever the option.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, TextIO

from . import __version__
from ._extras import MissingExtraError, import_server
from ._human import describe_failure

if TYPE_CHECKING:
    from .models import TaskEvent
    from .sse import Happening

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command's parser and its subcommands' parsers."""
    parser = argparse.ArgumentParser(
        prog="agentstream", description="Follow the live event stream of AI-agent tasks."
    )
    parser.add_argument("--version", action="version", version=f"agentstream {__version__}")
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
    tail.add_argument(
        "--retry-for",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="give up after this long without a connection (default 300)",
    )
    return parser, {"demo": demo, "tail": tail}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``agentstream`` command; returns the exit status."""
    parser, commands = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        try:
            server = import_server("agentstream serve")
        except MissingExtraError as exc:
            return _fail("serve", str(exc))
        status: int = server.serve_main(rest)
        return status
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        if args.pace < 0:
            commands["demo"].error("--pace must be >= 0")
        try:
            import_server("agentstream demo")
        except MissingExtraError as exc:
            return _fail("demo", str(exc))
        from .demo import run_demo

        return run_demo(pace=args.pace)
    return _tail(args, commands["tail"], sys.stdout)


def _fail(command: str, message: str) -> int:
    print(f"agentstream {command}: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _tail(args: argparse.Namespace, parser: argparse.ArgumentParser, out: TextIO) -> int:
    from .client import Client
    from .errors import AgentStreamError, ConfigurationError, RetryBudgetExhaustedError
    from .sse import RetryPolicy
    from .stream import StreamOptions

    base_url = args.base_url or os.environ.get("AGENTSTREAM_BASE_URL")
    if not (args.api_key or os.environ.get("AGENTSTREAM_API_KEY")):
        parser.error(
            "no API key: pass --api-key KEY or set AGENTSTREAM_API_KEY "
            "(`agentstream serve` prints a development key when it starts)"
        )
    if args.retry_for < 0:
        parser.error("--retry-for must be >= 0")
    try:
        options = StreamOptions(
            event_types=args.types,
            task_id=args.task,
            cursor=args.cursor,
            heartbeat_seconds=args.heartbeat,
        )
        retry = RetryPolicy.default().with_(max_elapsed=args.retry_for)
        client = Client(base_url, args.api_key, retry=retry)
    except ConfigurationError as exc:
        parser.error(str(exc).replace("base_url", "--base-url"))
    except ValueError as exc:
        parser.error(_flag_names(str(exc)))

    try:
        with client, client.stream_events(options, on_happening=_report_retries) as stream:
            for event in stream:
                out.write(_json_line(event) if args.json else _text_line(event))
                out.write("\n")
                out.flush()
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # The reader went away (``| head -1``): that is the end, not an error.
        # Point stdout at /dev/null so that the interpreter's last flush does
        # not fail again (the recipe of Python's signal module documentation).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        return EXIT_OK
    except RetryBudgetExhaustedError as exc:
        return _fail(
            "tail",
            f"gave up after {exc.attempts} failed attempt(s) to reach {client.base_url}: "
            f"{describe_failure(exc.last_error)}",
        )
    except AgentStreamError as exc:
        return _fail("tail", str(exc))
    return EXIT_OK


def _flag_names(message: str) -> str:
    """StreamOptions' argument names as the flags that set them."""
    for argument, flag in [
        ("heartbeat_seconds", "--heartbeat"),
        ("event_types", "--type"),
        ("task_id", "--task"),
    ]:
        message = message.replace(argument, flag)
    return message


def _report_retries(happening: Happening) -> None:
    """Each retry on stderr as it happens, so that a down server is not silence."""
    from .sse import Retrying

    if isinstance(happening, Retrying):
        cause = describe_failure(happening.error) if happening.error is not None else "stream ended"
        print(
            f"agentstream tail: attempt {happening.attempt} failed ({cause}); "
            f"retrying in {happening.delay:.1f}s",
            file=sys.stderr,
            flush=True,
        )


def _json_line(event: TaskEvent) -> str:
    return json.dumps(event.model_dump(mode="json", by_alias=True), separators=(",", ":"))


def _text_line(event: TaskEvent) -> str:
    when = event.occurred_at.strftime("%H:%M:%S.%f")[:-3]
    return f"{when}  {event.type!s:<20} {event.task_id or '-':<28} {_summary(event)}"


def _summary(event: TaskEvent) -> str:
    from .event_types import EventType

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
