"""The ``AGENTSTREAM`` settings dict, read and checked.

The keys, each documented in ``docs/django.md``: ``BASE_URL``, ``API_KEY``
(default the ``AGENTSTREAM_BASE_URL`` / ``AGENTSTREAM_API_KEY`` environment
variables), ``LISTENER_NAME``, ``CURSOR_STORE`` (default ``"django"``: this
project's database), ``DATABASE``, ``EVENT_TYPES``, ``HEARTBEAT_SECONDS``,
``WORKERS``, ``QUEUE_SIZE``, ``SAVE_INTERVAL``, ``LEASE_TTL``,
``STOP_TIMEOUT``, ``TIMEOUT``, ``HANDLERS_MODULE`` (default
``"agentstream_handlers"``), ``REGISTRY`` (default
``"agentstream.default_registry"``), ``START_LISTENER`` (not supported:
a check warns), and for the webhook view ``WEBHOOK_SECRETS``,
``WEBHOOK_DEDUP`` (default ``"django"``: this project's database),
``WEBHOOK_TOLERANCE`` and ``WEBHOOK_ACCEPT_AGENTRAIL``. Reading them never
needs the network or the database.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from django.conf import settings as django_settings
from django.utils.module_loading import import_string

from ...cursors import CursorStore
from ...dispatch import Registry
from ...errors import ConfigurationError
from ...webhooks import DeduplicatingRegistry, DedupStore
from .._common import cursor_store_from_url, dedup_store_from_url
from .._settings import KEYS, WEBHOOK_KEYS, ListenerSettings, WebhookSettings

__all__ = [
    "DJANGO_KEYS",
    "ListenerSettings",
    "WebhookSettings",
    "cursor_store",
    "dedup_store",
    "handlers_module",
    "listener_settings",
    "once",
    "raw",
    "registry",
    "webhook_settings",
]

DJANGO_KEYS = (*KEYS, *WEBHOOK_KEYS, "DATABASE", "HANDLERS_MODULE", "REGISTRY")
"""Every key ``AGENTSTREAM`` may hold."""

DEFAULT_HANDLERS_MODULE = "agentstream_handlers"
MISSING_KEY_HINT = (
    "set AGENTSTREAM = {'API_KEY': ...} in your settings, or the AGENTSTREAM_API_KEY "
    "environment variable (`agentstream serve` prints a development key)"
)


def raw() -> dict[str, Any]:
    """``settings.AGENTSTREAM`` as it is (an empty dict when unset)."""
    value = getattr(django_settings, "AGENTSTREAM", None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"settings.AGENTSTREAM must be a dict, got {type(value).__name__}")
    return value


def listener_settings() -> ListenerSettings:
    """Every key checked; a ConfigurationError names the first wrong one."""
    return ListenerSettings.from_mapping(raw(), label)


def label(key: str) -> str:
    """How ``key`` is spelled in a message: ``AGENTSTREAM['API_KEY']``."""
    return f"AGENTSTREAM[{key!r}]"


def handlers_module() -> Optional[str]:
    """The module name discovered in each app, or None (discovery off)."""
    settings = raw()
    module = settings.get("HANDLERS_MODULE", DEFAULT_HANDLERS_MODULE)
    if module is not None and not (isinstance(module, str) and module.isidentifier()):
        raise ConfigurationError(
            f"AGENTSTREAM['HANDLERS_MODULE'] must be a module name or None, got {module!r}"
        )
    return module


def registry() -> Registry:
    """The registry the listener dispatches to."""
    path = raw().get("REGISTRY", "agentstream.default_registry")
    found: Any = import_string(path) if isinstance(path, str) else path
    if not isinstance(found, Registry):
        raise ConfigurationError(
            f"AGENTSTREAM['REGISTRY'] must be (the dotted path of) an agentstream.Registry, "
            f"got {type(found).__name__}"
        )
    return found


def database() -> str:
    alias = raw().get("DATABASE", "default")
    if alias not in django_settings.DATABASES:
        raise ConfigurationError(f"AGENTSTREAM['DATABASE'] {alias!r} is not in DATABASES")
    return str(alias)


def cursor_store(value: Union[str, CursorStore, None] = None) -> CursorStore:
    """The store ``CURSOR_STORE`` names (default ``"django"``: this database)."""
    if value is None:
        value = listener_settings().cursor_store or "django"
    if value == "django":
        from .store import DjangoCursorStore

        return DjangoCursorStore(using=database())
    return cursor_store_from_url(value)


def webhook_settings() -> WebhookSettings:
    """The ``WEBHOOK_*`` keys checked (the secrets never in a message)."""
    return WebhookSettings.read(raw().get, label)


def dedup_store(value: Union[str, DedupStore, None] = None) -> DedupStore:
    """The dedup store ``WEBHOOK_DEDUP`` names; default ``"django"`` (this
    database), or the ``CURSOR_STORE`` URL when that is not ``"django"``."""
    if value is None:
        value = webhook_settings().dedup
        if value is None:
            cursors = listener_settings().cursor_store
            value = cursors if isinstance(cursors, str) else "django"
    if value == "django":
        from .store import DjangoDedupStore

        return DjangoDedupStore(using=database())
    return dedup_store_from_url(value)


def once() -> DeduplicatingRegistry:
    """:func:`registry` behind the claims of a new :func:`dedup_store`: what the
    webhook view and, with webhooks on, ``agentstream_listen`` dispatch through."""
    return WebhookSettings.once(dedup_store(), registry())
