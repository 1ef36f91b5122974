"""``agentstream serve``: run the reference server until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, Optional

from ._app import MAX_HEARTBEAT, MIN_HEARTBEAT
from ._auth import ALL_SCOPES, ApiKey
from ._config import ServerConfig
from ._errors import StoreLockedError
from ._serving import ReferenceServer
from ._store import DEFAULT_RETENTION
from ._webhooks import WebhookConfig, host_allowed

_HEARTBEATS = f"{MIN_HEARTBEAT:g}..{MAX_HEARTBEAT:g}"

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_PORT",
    "build_parser",
    "config_from_args",
    "parse_api_key",
    "serve_main",
]

logger = logging.getLogger(__name__)

_DEFAULTS = ServerConfig()
_LIMIT_FLAGS: list[tuple[str, type, str]] = [
    ("--header-timeout", float, "seconds a client has to send its request line and headers"),
    ("--body-timeout", float, "seconds a client has to send a request body"),
    ("--keepalive-timeout", float, "seconds an idle kept-alive connection stays open"),
    ("--write-timeout", float, "seconds a write to a client that reads nothing may block"),
    ("--max-connections", int, "open connections at most (streams included); more get 503"),
    ("--retry-after", int, "the Retry-After seconds of that 503"),
    ("--stream-backlog", int, "events a slow stream may lag before it is disconnected"),
    ("--fanout-interval", float, "seconds between two writes of new events to a stream"),
]

DEFAULT_PORT = 8787
DEFAULT_DB = "./agentstream.sqlite3"


def parse_api_key(spec: str) -> tuple[str, ApiKey]:
    """Parse ``KEY=scope,scope@organization`` (``KEY`` alone or ``KEY=*`` means every
    scope; without ``@organization`` the key acts for the default one, ``org_local``)."""
    key, sep, rest = spec.partition("=")
    key = key.strip()
    if not key or any(c.isspace() for c in key):
        raise argparse.ArgumentTypeError("an API key must be non-empty, without spaces")
    scopes_text, at, organization = rest.partition("@")
    scopes_text, organization_id = scopes_text.strip(), organization.strip() or None
    if at and organization_id is None:
        raise argparse.ArgumentTypeError("no organization after '@'")
    if sep and not scopes_text and not at:
        raise argparse.ArgumentTypeError("no scopes after '='")
    if not scopes_text or scopes_text == "*":  # KEY, KEY=*, KEY=@org, KEY=*@org
        return key, ApiKey(ALL_SCOPES, organization_id)
    scopes = frozenset(s.strip() for s in scopes_text.split(",") if s.strip())
    unknown = scopes - ALL_SCOPES
    if unknown or not scopes:
        raise argparse.ArgumentTypeError(
            f"bad scopes {scopes_text!r}: choose among {', '.join(sorted(ALL_SCOPES))}"
        )
    try:
        return key, ApiKey(scopes, organization_id)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``agentstream serve``."""
    parser = argparse.ArgumentParser(
        prog="agentstream serve",
        description="Run the agentstream reference server (SSE event stream, tasks, "
        "a simulated agent) until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port, 0 = any (default {DEFAULT_PORT})"
    )
    parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLite event log (default {DEFAULT_DB})")
    parser.add_argument(
        "--api-key",
        dest="api_keys",
        action="extend",
        nargs="+",
        type=parse_api_key,
        default=[],
        metavar="KEY=SCOPES[@ORG]",
        help="an API key, its comma-separated scopes and, after @, its organization "
        "(repeatable; each key sees only its organization's events and tasks); without "
        "any, a development key with every scope is generated and printed once",
    )
    parser.add_argument(
        "--pace",
        type=float,
        default=0.2,
        help="seconds between two events of a simulated task run (default 0.2)",
    )
    parser.add_argument(
        "--retention",
        type=int,
        default=DEFAULT_RETENTION,
        help=f"events kept at most; older cursors get 410 (default {DEFAULT_RETENTION})",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=15.0,
        help=f"default heartbeat interval of streams, {_HEARTBEATS} seconds (default 15)",
    )
    limits = parser.add_argument_group("connection limits (see ServerConfig)")
    for flag, kind, text in _LIMIT_FLAGS:
        name = flag[2:].replace("-", "_")
        default = getattr(_DEFAULTS, name)
        limits.add_argument(
            flag,
            type=kind,
            default=default,
            metavar="SECONDS" if kind is float else "N",
            help=f"{text} (default {default:g})",
        )
    parser.add_argument(
        "--webhook",
        dest="webhook_urls",
        action="append",
        default=[],
        metavar="URL",
        help="subscribe URL to every event at start (repeatable); its generated secret is "
        "printed once",
    )
    parser.add_argument(
        "--webhook-allow-host",
        dest="webhook_hosts",
        action="append",
        default=[],
        metavar="HOST",
        help="a host webhooks may be delivered to (repeatable; '*' for any); default: "
        "loopback only (127.0.0.1, localhost, ::1)",
    )
    parser.add_argument(
        "--webhook-retry-scale",
        type=float,
        default=1.0,
        help="multiply every webhook retry backoff by this (default 1; 0.01 to try retries)",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="logging level (default INFO)", type=str.upper
    )
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The :class:`ServerConfig` of parsed ``agentstream serve`` arguments (``ValueError``
    for a value out of range)."""
    names = [flag[2:].replace("-", "_") for flag, _, _ in _LIMIT_FLAGS]
    return ServerConfig(**{name: getattr(args, name) for name in names})


def serve_main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``agentstream serve``; returns the exit status.

    Blocks until SIGINT (Ctrl-C) or SIGTERM, then stops cleanly: open streams
    end, nothing in the log is lost.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.pace < 0:
        parser.print_usage(sys.stderr)
        print("agentstream serve: error: --pace must be >= 0", file=sys.stderr)
        return 2
    if args.retention < 1:
        parser.print_usage(sys.stderr)
        print("agentstream serve: error: --retention must be >= 1", file=sys.stderr)
        return 2
    if not MIN_HEARTBEAT <= args.heartbeat <= MAX_HEARTBEAT:
        parser.print_usage(sys.stderr)
        print(
            f"agentstream serve: error: --heartbeat must be within {_HEARTBEATS}", file=sys.stderr
        )
        return 2
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"agentstream serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        webhooks = WebhookConfig(
            allowed_hosts=tuple(args.webhook_hosts) or WebhookConfig.allowed_hosts,
            retry_scale=args.webhook_retry_scale,
        )
    except ValueError as exc:
        print(f"agentstream serve: error: {exc}", file=sys.stderr)
        return 2
    refused = [url for url in args.webhook_urls if not host_allowed(url, webhooks.allowed_hosts)]
    if refused:
        print(
            f"agentstream serve: error: --webhook {refused[0]} is not an http(s) URL on an "
            f"allowed host ({', '.join(webhooks.allowed_hosts)}); see --webhook-allow-host",
            file=sys.stderr,
        )
        return 2
    level = getattr(logging, args.log_level, None)
    if not isinstance(level, int):
        print(f"agentstream serve: error: unknown log level {args.log_level}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    server = ReferenceServer(
        args.db,
        api_keys=dict(args.api_keys) or None,  # none given: the server makes a full key
        host=args.host,
        port=args.port,
        agent_pace=args.pace,
        retention=args.retention,
        heartbeat_default=args.heartbeat,
        config=config,
        webhooks=webhooks,
    )
    try:
        server.start()
    except StoreLockedError as exc:
        print(f"agentstream serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"agentstream serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1

    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        print(f"agentstream reference server listening on {server.url}", flush=True)
        print(f"event log: {server.db_path}", flush=True)
        organizations = sorted(server.organizations)
        if len(organizations) == 1:
            print(f"organization: {organizations[0]} (every key acts for it)", flush=True)
        else:
            print(
                f"organizations: {', '.join(organizations)} (each key sees only its own)",
                flush=True,
            )
        if not args.api_keys:
            # Printed once, on purpose, to stdout; never logged, never stored.
            print("development API key (every scope; shown only this once):", flush=True)
            print(
                f"  export AGENTSTREAM_BASE_URL={server.url} AGENTSTREAM_API_KEY={server.api_key}",
                flush=True,
            )
        for url in args.webhook_urls:
            subscription, _ = server.app.webhooks.create(
                url=url,
                event_types=None,
                secret=None,
                description="agentstream serve --webhook",
                task_ids=None,
                retry_policy=None,
                organization_id=None,
            )
            # Printed once, on purpose, like the development key.
            print(f"webhook {subscription.id} -> {url}", flush=True)
            print(f"  secret (shown only this once): {subscription.secret}", flush=True)
        print("press Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.stop()
    print("agentstream reference server stopped", flush=True)
    return 0
