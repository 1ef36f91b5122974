"""System checks (``manage.py check``): a missing key or a wrong setting is a
message here, not a crash of every management command.

Every message is a Warning, so that ``migrate`` and ``runserver`` still run
while agentstream is being set up; ``manage.py agentstream_listen`` refuses
to start on the same problems. In CI, ``manage.py check --tag agentstream
--fail-level WARNING`` makes them fatal.

========================= ==================================================
id                        what
========================= ==================================================
``agentstream.W001``      no API key (``AGENTSTREAM["API_KEY"]`` or
                          ``AGENTSTREAM_API_KEY``)
``agentstream.W002``      a key has a wrong value (a bad ``BASE_URL``, ...)
``agentstream.W003``      ``AGENTSTREAM`` holds a key agentstream does not know
``agentstream.W004``      ``START_LISTENER`` is set: Django never starts a
                          listener in a web process
========================= ==================================================
"""

from __future__ import annotations

from typing import Any, Optional

from django.core import checks

from ...errors import ConfigurationError
from . import conf

__all__ = ["check_settings", "register"]

TAG = "agentstream"


def register() -> None:
    """Register the checks (the app's ``ready()`` does it)."""
    checks.register(TAG)(check_settings)


def check_settings(app_configs: Optional[Any] = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check ``settings.AGENTSTREAM`` without touching the network or the database."""
    messages: list[checks.CheckMessage] = []
    try:
        raw = conf.raw()
        unknown = sorted(str(key) for key in raw if key not in conf.DJANGO_KEYS)
        if unknown:
            messages.append(
                checks.Warning(
                    f"AGENTSTREAM has unknown keys: {', '.join(unknown)}",
                    hint=f"the keys are: {', '.join(conf.DJANGO_KEYS)}",
                    id="agentstream.W003",
                )
            )
        settings = conf.listener_settings()
        webhooks = conf.webhook_settings()
        conf.handlers_module()
        conf.registry()
        if settings.cursor_store in (None, "django") or webhooks.dedup == "django":
            conf.database()
    except (ConfigurationError, ImportError) as exc:
        messages.append(
            checks.Warning(
                f"agentstream is misconfigured: {exc}",
                hint="see the AGENTSTREAM table in docs/django.md",
                id="agentstream.W002",
            )
        )
        return messages
    if not settings.api_key:
        messages.append(
            checks.Warning(
                "no agentstream API key: manage.py agentstream_listen cannot connect",
                hint=conf.MISSING_KEY_HINT,
                id="agentstream.W001",
            )
        )
    if settings.start_listener:
        messages.append(
            checks.Warning(
                "AGENTSTREAM['START_LISTENER'] is on, but the Django integration never starts "
                "a listener inside a web process",
                hint="run `python manage.py agentstream_listen` as its own process",
                id="agentstream.W004",
            )
        )
    return messages
