"""The app's configuration: ``ready()`` finds handlers and registers checks,
and starts nothing."""

from __future__ import annotations

from django.apps import AppConfig


class AgentStreamConfig(AppConfig):
    """``agentstream.contrib.django`` (label ``agentstream``).

    ``ready()`` imports each installed app's ``agentstream_handlers`` module
    (``AGENTSTREAM["HANDLERS_MODULE"]``; ``None`` turns discovery off), so its
    ``@on(...)`` decorators register, and registers the system checks. It
    starts no thread and makes no request: ``manage.py migrate`` or ``shell``
    never connect to a stream.
    """

    name = "agentstream.contrib.django"
    label = "agentstream"
    verbose_name: str = "agentstream"
    default_auto_field: str = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, conf

        checks.register()
        module = conf.handlers_module()
        if module:
            from django.utils.module_loading import autodiscover_modules

            autodiscover_modules(module)
