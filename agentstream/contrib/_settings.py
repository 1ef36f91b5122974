"""The configuration keys both integrations read, checked in one place.

Flask reads them from ``app.config`` with the ``AGENTSTREAM_`` prefix
(``AGENTSTREAM_API_KEY``), Django from the ``AGENTSTREAM`` settings dict
(``AGENTSTREAM["API_KEY"]``). A wrong value is a
:class:`~agentstream.errors.ConfigurationError` naming the key, raised when
the settings are read, never at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union
from urllib.parse import urlsplit

from ..client import DEFAULT_BASE_URL, Client
from ..cursors import CursorStore
from ..dispatch import Registry
from ..errors import ConfigurationError
from ..stream import StreamOptions
from ..webhooks import (
    DEFAULT_TOLERANCE,
    DeduplicatingRegistry,
    DedupStore,
    Verifier,
    WebhookReceiver,
)

__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "KEYS",
    "WEBHOOK_KEYS",
    "ListenerSettings",
    "WebhookSettings",
]

DEFAULT_HEARTBEAT_SECONDS = 15

KEYS = (
    "BASE_URL",
    "API_KEY",
    "LISTENER_NAME",
    "CURSOR_STORE",
    "EVENT_TYPES",
    "HEARTBEAT_SECONDS",
    "WORKERS",
    "QUEUE_SIZE",
    "SAVE_INTERVAL",
    "LEASE_TTL",
    "ON_MISSING_CURSOR",
    "STOP_TIMEOUT",
    "TIMEOUT",
    "START_LISTENER",
)
"""The keys of :class:`ListenerSettings`, without a framework's prefix."""

WEBHOOK_KEYS = (
    "WEBHOOK_SECRETS",
    "WEBHOOK_DEDUP",
    "WEBHOOK_TOLERANCE",
    "WEBHOOK_ACCEPT_AGENTRAIL",
)
"""The keys of :class:`WebhookSettings`, without a framework's prefix."""


@dataclass(frozen=True)
class ListenerSettings:
    """What a framework's configuration says about the client and its listener.

    ``api_key`` is None when neither the configuration nor
    ``AGENTSTREAM_API_KEY`` gives one: reading settings never fails for
    that, building a client does (so ``manage.py migrate`` or a Flask app
    without a key still start).
    """

    base_url: str
    api_key: Optional[str]
    name: str
    cursor_store: Union[str, CursorStore, None]
    event_types: Optional[tuple[str, ...]]
    heartbeat_seconds: int
    workers: int
    queue_size: int
    save_interval: Optional[float]
    lease_ttl: Optional[float]
    on_missing_cursor: Optional[str]
    stop_timeout: Optional[float]
    timeout: float
    start_listener: bool

    def __repr__(self) -> str:  # never the key
        return (
            f"ListenerSettings(base_url={self.base_url!r}, api_key="
            f"{'<hidden>' if self.api_key else None}, name={self.name!r})"
        )

    @classmethod
    def read(cls, get: Callable[[str], Any], label: Callable[[str], str]) -> ListenerSettings:
        """Read and check every key; ``get(key)`` returns None for an unset key,
        ``label(key)`` is how the key is spelled to the user in errors."""

        def value(key: str, kind: type, default: Any) -> Any:
            found = get(key)
            if found is None:
                return default
            if kind is float and isinstance(found, int) and not isinstance(found, bool):
                found = float(found)
            if kind is int and isinstance(found, bool):
                raise ConfigurationError(f"{label(key)} must be an integer, got {found!r}")
            if not isinstance(found, kind):
                raise ConfigurationError(
                    f"{label(key)} must be a {kind.__name__}, got {type(found).__name__}"
                )
            return found

        base_url = value("BASE_URL", str, None) or os.environ.get(
            "AGENTSTREAM_BASE_URL", DEFAULT_BASE_URL
        )
        check_base_url(base_url, label("BASE_URL"))
        api_key = value("API_KEY", str, None) or os.environ.get("AGENTSTREAM_API_KEY") or None
        name = value("LISTENER_NAME", str, "default")
        if not name:
            raise ConfigurationError(f"{label('LISTENER_NAME')} must not be empty")
        store = get("CURSOR_STORE")
        if store is not None and not isinstance(store, (str, CursorStore)):
            raise ConfigurationError(
                f"{label('CURSOR_STORE')} must be a string such as 'sqlite:///cursors.sqlite3' "
                f"or a CursorStore, got {type(store).__name__}"
            )
        event_types = get("EVENT_TYPES")
        if event_types is not None:
            if isinstance(event_types, str) or not all(isinstance(t, str) for t in event_types):
                raise ConfigurationError(f"{label('EVENT_TYPES')} must be a list of event types")
            event_types = tuple(event_types)
        settings = cls(
            base_url=base_url,
            api_key=api_key,
            name=name,
            cursor_store=store,
            event_types=event_types,
            heartbeat_seconds=value("HEARTBEAT_SECONDS", int, DEFAULT_HEARTBEAT_SECONDS),
            workers=positive(value("WORKERS", int, 1), label("WORKERS")),
            queue_size=positive(value("QUEUE_SIZE", int, 1000), label("QUEUE_SIZE")),
            save_interval=value("SAVE_INTERVAL", float, None),
            lease_ttl=value("LEASE_TTL", float, None),
            on_missing_cursor=choice(
                value("ON_MISSING_CURSOR", str, None), ("live", "error"), label("ON_MISSING_CURSOR")
            ),
            stop_timeout=value("STOP_TIMEOUT", float, None),
            timeout=value("TIMEOUT", float, 30.0),
            start_listener=truthy(get("START_LISTENER"), label("START_LISTENER")),
        )
        try:
            settings.stream_options()
        except ValueError as exc:
            raise ConfigurationError(
                f"{label('EVENT_TYPES')} or {label('HEARTBEAT_SECONDS')}: {exc}"
            ) from None
        return settings

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], label: Callable[[str], str]
    ) -> ListenerSettings:
        """Read from a dict keyed by the bare names (``{"API_KEY": ...}``)."""
        return cls.read(mapping.get, label)

    def stream_options(self, **overrides: Any) -> StreamOptions:
        """The listener's :class:`~agentstream.StreamOptions`."""
        options: dict[str, Any] = {
            "event_types": list(self.event_types) if self.event_types else None,
            "heartbeat_seconds": self.heartbeat_seconds,
        }
        options.update({k: v for k, v in overrides.items() if v is not None})
        return StreamOptions(**options)

    def client(self, missing_key_hint: str) -> Client:
        """A :class:`~agentstream.Client`; no key is a ConfigurationError with the hint."""
        if not self.api_key:
            raise ConfigurationError(f"no agentstream API key: {missing_key_hint}")
        return Client(self.base_url, self.api_key, timeout=self.timeout)

    def listen_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``client.listen`` these settings give
        (None: the Listener's default)."""
        return {
            "name": self.name,
            "workers": self.workers,
            "queue_size": self.queue_size,
            "save_interval": self.save_interval,
            "lease_ttl": self.lease_ttl,
            "on_missing_cursor": self.on_missing_cursor,
        }


@dataclass(frozen=True)
class WebhookSettings:
    """What a framework's configuration says about receiving webhooks.

    ``secrets`` is empty when ``WEBHOOK_SECRETS`` is unset: webhooks are off
    (Flask registers no route; Django's view answers 503). ``dedup`` is
    ``WEBHOOK_DEDUP`` as given (None: the framework's default, the cursor
    store's database). The secrets never appear in the repr or in an error.
    """

    secrets: tuple[Union[str, bytes], ...]
    dedup: Union[str, DedupStore, None]
    tolerance: float
    accept_agentrail: bool

    def __repr__(self) -> str:  # never the secrets
        return (
            f"WebhookSettings(<{len(self.secrets)} secret(s)>, dedup="
            f"{self.dedup if not isinstance(self.dedup, str) else _redacted(self.dedup)!r}, "
            f"tolerance={self.tolerance:g}, accept_agentrail={self.accept_agentrail})"
        )

    @property
    def enabled(self) -> bool:
        """True when at least one secret is configured."""
        return bool(self.secrets)

    @classmethod
    def read(cls, get: Callable[[str], Any], label: Callable[[str], str]) -> WebhookSettings:
        """Read and check every webhook key (as :meth:`ListenerSettings.read`).

        ``WEBHOOK_SECRETS`` is one secret (a string) or a list of them (during a
        rotation, the new and the old); each is checked here, so a ``whsec_``
        secret that is not base64, or a missing ``standardwebhooks``, is a
        ConfigurationError naming the key, not a failure at the first delivery.
        """
        found = get("WEBHOOK_SECRETS")
        if found is None or found == "" or found == [] or found == ():
            secrets: tuple[Union[str, bytes], ...] = ()
        elif isinstance(found, (str, bytes)):
            secrets = (found,)
        elif isinstance(found, (list, tuple)) and all(isinstance(x, (str, bytes)) for x in found):
            secrets = tuple(found)
        else:
            raise ConfigurationError(
                f"{label('WEBHOOK_SECRETS')} must be a secret (a string) or a list of them, "
                f"got {type(found).__name__}"
            )
        dedup = get("WEBHOOK_DEDUP")
        if dedup is not None and not isinstance(dedup, (str, DedupStore)):
            raise ConfigurationError(
                f"{label('WEBHOOK_DEDUP')} must be a string such as 'sqlite:///app.sqlite3' "
                f"or a DedupStore, got {type(dedup).__name__}"
            )
        tolerance = get("WEBHOOK_TOLERANCE")
        if tolerance is None:
            tolerance = DEFAULT_TOLERANCE
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
            raise ConfigurationError(
                f"{label('WEBHOOK_TOLERANCE')} must be a number of seconds, "
                f"got {type(tolerance).__name__}"
            )
        if not tolerance > 0:
            raise ConfigurationError(f"{label('WEBHOOK_TOLERANCE')} must be more than 0 seconds")
        settings = cls(
            secrets=secrets,
            dedup=dedup,
            tolerance=float(tolerance),
            accept_agentrail=truthy(
                get("WEBHOOK_ACCEPT_AGENTRAIL"), label("WEBHOOK_ACCEPT_AGENTRAIL")
            ),
        )
        if secrets:
            try:
                settings.verifier()
            except ConfigurationError as exc:  # its message never holds a secret
                raise ConfigurationError(f"{label('WEBHOOK_SECRETS')}: {exc}") from None
        return settings

    def verifier(self) -> Verifier:
        """A :class:`~agentstream.webhooks.Verifier` of these secrets and tolerance."""
        return Verifier(
            self.secrets, tolerance=self.tolerance, accept_agentrail=self.accept_agentrail
        )

    def receiver(self, registry: DeduplicatingRegistry) -> WebhookReceiver:
        """A :class:`~agentstream.webhooks.WebhookReceiver` into ``registry``."""
        return WebhookReceiver(
            self.secrets, registry, tolerance=self.tolerance, accept_agentrail=self.accept_agentrail
        )

    @staticmethod
    def once(store: DedupStore, registry: Registry) -> DeduplicatingRegistry:
        """``registry`` behind claims in ``store``: what the webhook receiver and
        (when webhooks are on) the listener dispatch through."""
        return DeduplicatingRegistry(store, registry)


def _redacted(url: str) -> str:
    from ._common import redact_url

    return redact_url(url)


def check_base_url(url: str, key: str) -> None:
    """A ConfigurationError unless ``url`` is an http(s) URL without credentials."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises ValueError here
    except ValueError:
        raise ConfigurationError(f"{key} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{key} must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ConfigurationError(
            f"{key} must not carry credentials (user:password@); set the API key instead"
        )


def choice(value: Optional[str], allowed: tuple[str, ...], key: str) -> Optional[str]:
    if value is not None and value not in allowed:
        raise ConfigurationError(f"{key} must be one of {', '.join(map(repr, allowed))}")
    return value


def positive(number: int, key: str) -> int:
    if number < 1:
        raise ConfigurationError(f"{key} must be at least 1, got {number}")
    return number


def truthy(value: Any, key: str) -> bool:
    """A boolean setting, also from an environment-style string ("1", "true", "no")."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("", "0", "false", "no", "off"):
            return False
    raise ConfigurationError(f"{key} must be true or false, got {value!r}")
