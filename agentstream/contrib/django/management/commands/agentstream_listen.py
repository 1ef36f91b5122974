"""``python manage.py agentstream_listen``: run the listener as its own process."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agentstream import signals
from agentstream.contrib import _common
from agentstream.contrib.django import conf
from agentstream.contrib.django.runner import build_listener
from agentstream.errors import ConfigurationError


class Command(BaseCommand):
    help = (
        "Follow the agentstream event stream and run the handlers of every app's "
        "agentstream_handlers module until SIGINT or SIGTERM (the recommended deployment). "
        "Exits 0 on a signal, non-zero with a message when the listener fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--name", help="listener name: its cursor and lease (AGENTSTREAM LISTENER_NAME)"
        )
        parser.add_argument("--workers", type=int, help="handler threads (AGENTSTREAM WORKERS)")
        parser.add_argument(
            "--heartbeat", type=int, help="heartbeat seconds, 1..300 (HEARTBEAT_SECONDS)"
        )
        parser.add_argument(
            "--event-type",
            action="append",
            dest="event_types",
            metavar="TYPE",
            help="only this event type (repeatable; EVENT_TYPES)",
        )
        parser.add_argument("--queue-size", type=int, help="events waiting per worker")
        parser.add_argument(
            "--stop-timeout", type=float, help="seconds a stop waits for a running handler"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        _common.log_to_stderr(verbose=options["verbosity"] >= 2)
        try:
            client, listener = build_listener(
                name=options["name"],
                workers=options["workers"],
                heartbeat_seconds=options["heartbeat"],
                event_types=options["event_types"],
                queue_size=options["queue_size"],
            )
            stop_timeout = options["stop_timeout"]
            if stop_timeout is None:
                stop_timeout = conf.listener_settings().stop_timeout
        except (ConfigurationError, ValueError) as exc:
            raise CommandError(f"agentstream_listen: {exc}") from None
        store = type(listener.cursor_store).__name__
        self.stdout.write(
            f"agentstream: listening as {listener.name!r} on {client.base_url} "
            f"({len(listener.registry)} handlers, cursor store {store}); Ctrl-C or SIGTERM stops"
        )
        self.stdout.flush()

        def connected(sender: object, *, cursor: object = None, **kwargs: object) -> None:
            self.stdout.write(f"agentstream: connected, resuming after {cursor or '(live end)'}")
            self.stdout.flush()

        try:
            with signals.connected.connected_to(connected, sender=listener):
                _common.run_forever(listener, stop_timeout)
        finally:
            client.close()
        self.stdout.write(f"agentstream: stopped, cursor {listener.cursor}")
