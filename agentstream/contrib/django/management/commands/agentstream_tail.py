"""``python manage.py agentstream_tail``: print the stream's events as they arrive."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agentstream.contrib import _common
from agentstream.contrib.django import conf
from agentstream.errors import AgentStreamError, ConfigurationError


class Command(BaseCommand):
    help = (
        "Print the agentstream events of the server in settings.AGENTSTREAM as they "
        "arrive (handlers do not run). Ctrl-C stops."
    )
    requires_system_checks: list[str] = []  # noqa: RUF012 - Django's own spelling

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--type",
            action="append",
            dest="types",
            metavar="TYPE",
            help="only this event type (repeatable)",
        )
        parser.add_argument("--task", help="only this task's events (ends after it finishes)")
        parser.add_argument("--cursor", help="resume after this event id")
        parser.add_argument("--heartbeat", type=int, help="heartbeat seconds (1..300)")
        parser.add_argument("--json", action="store_true", help="one JSON envelope per line")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            settings = conf.listener_settings()
            stream_options = settings.stream_options(
                event_types=options["types"],
                task_id=options["task"],
                cursor=options["cursor"],
                heartbeat_seconds=options["heartbeat"],
            )
            client = settings.client(conf.MISSING_KEY_HINT)
        except (ConfigurationError, ValueError) as exc:
            raise CommandError(f"agentstream_tail: {exc}") from None
        try:
            with client, client.stream_events(stream_options) as stream:
                for event in stream:
                    self.stdout.write(_common.format_event(event, as_json=options["json"]))
                    self.stdout.flush()
        except KeyboardInterrupt:
            return
        except AgentStreamError as exc:
            raise CommandError(f"agentstream_tail: {exc}") from None
