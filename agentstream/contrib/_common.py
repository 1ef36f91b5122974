"""What the Flask and Django integrations share: cursor and dedup stores named
by a string, a Listener whose handlers run inside a framework's context, and the
rules of the opt-in in-process start.

Nothing here imports a framework.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import urlsplit, urlunsplit

from ..client import Client
from ..cursors import CursorStore, LeaseStore, MemoryCursorStore, SQLiteCursorStore
from ..dispatch import Registry
from ..errors import ConfigurationError
from ..listener import HandlerContext, Listener
from ..models import TaskEvent
from ..stream import StreamOptions
from ..webhooks import DedupStore, MemoryDedupStore, RedisDedupStore, SQLiteDedupStore

__all__ = [
    "cursor_store_from_url",
    "dedup_store_from_url",
    "in_process_refusal",
    "listen",
    "redact_url",
]

logger = logging.getLogger(__name__)

STORE_FORMS = "'memory', 'sqlite:///relative/path', 'sqlite:////absolute/path' or 'redis://host'"


def cursor_store_from_url(value: Union[str, CursorStore]) -> CursorStore:
    """The cursor store a configuration value names.

    ``memory`` (this process only), ``sqlite:///relative/path`` or
    ``sqlite:////absolute/path`` (the SQLAlchemy spelling), ``redis://...``,
    ``rediss://...`` or ``unix://...`` (:class:`agentstream.cursors.RedisCursorStore`,
    extra ``[redis]``; without redis-py, a ConfigurationError says so). A
    store object is returned as it is. Anything else raises
    :class:`~agentstream.errors.ConfigurationError`; a password in the URL
    never appears in the message.
    """
    from ..cursors import RedisCursorStore  # imports redis-py only when constructed

    kinds = {"memory": MemoryCursorStore, "sqlite": SQLiteCursorStore, "redis": RedisCursorStore}
    store: CursorStore = _store_from_value(value, CursorStore, "cursor store", kinds)
    return store


def dedup_store_from_url(value: Union[str, DedupStore]) -> DedupStore:
    """The webhook dedup store a configuration value names, in the same
    spellings as :func:`cursor_store_from_url` (``memory``, ``sqlite:///...``:
    a ``webhook_dedup`` table, in the cursor store's file if it is the same
    path; ``redis://...``), or a :class:`~agentstream.webhooks.DedupStore`
    object as it is."""
    kinds = {"memory": MemoryDedupStore, "sqlite": SQLiteDedupStore, "redis": RedisDedupStore}
    store: DedupStore = _store_from_value(value, DedupStore, "webhook dedup store", kinds)
    return store


def _store_from_value(value: Any, protocol: type, what: str, kinds: dict[str, Any]) -> Any:
    """``value`` as it is if it is a ``protocol`` object, else the store of
    ``kinds`` its URL names (the memory one takes no argument)."""
    if not isinstance(value, str):
        if isinstance(value, protocol):
            return value
        raise ConfigurationError(
            f"the {what} must be a string ({STORE_FORMS}) or a {protocol.__name__}, "
            f"not {type(value).__name__}"
        )
    kind, where = _parse_store_url(value, what)
    return kinds[kind]() if kind == "memory" else kinds[kind](where)


def _parse_store_url(value: str, what: str) -> tuple[str, str]:
    """``("memory", "")``, ``("sqlite", path)`` (its folder created) or
    ``("redis", url)``; a ConfigurationError for anything else."""
    if value == "memory":
        return "memory", ""
    scheme = value.partition(":")[0].lower()
    if scheme == "sqlite":
        if not value.startswith("sqlite:///") or len(value) == len("sqlite:///"):
            raise ConfigurationError(
                f"bad SQLite {what} {value!r}: write sqlite:///relative/path "
                f"or sqlite:////absolute/path"
            )
        path = Path(value[len("sqlite:///") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return "sqlite", str(path)
    if scheme in ("redis", "rediss", "unix"):
        return "redis", value
    raise ConfigurationError(
        f"unknown {what} {redact_url(value)!r}: use {STORE_FORMS}, or pass a store object"
    )


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    if not password:
        return url
    netloc = parts.netloc.rpartition("@")
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


# -- the Listener ---------------------------------------------------------------


def listen(
    client: Client,
    options: StreamOptions,
    *,
    handler_context: Optional[HandlerContext],
    registry: Registry,
    **listen_kwargs: Any,
) -> Listener:
    """``client.listen(...)`` with the keyword arguments that are set (None
    leaves the Listener's default, as an unset configuration key does)."""
    kwargs = {k: v for k, v in listen_kwargs.items() if v is not None}
    return client.listen(options, registry=registry, handler_context=handler_context, **kwargs)


# -- the in-process start ----------------------------------------------------------

RUN_SEPARATELY = (
    "run the listener as its own process instead ({command}), which is the recommended deployment"
)


def in_process_refusal(store: CursorStore, command: str) -> Optional[str]:
    """Why a listener must not be started inside this web process, or None.

    A web server may run the app in several processes (gunicorn workers, a
    reloader's parent and child): starting is safe only when the Listener
    takes a lease on its name in a store that all of them share (a
    :class:`~agentstream.cursors.LeaseStore` other than the one-process
    memory store), so that exactly one of them consumes and the others stand
    by. Green threads (gevent monkey-patching) are
    refused: the Listener's blocking reads and thread handoffs are not
    tested under them.
    """
    advice = RUN_SEPARATELY.format(command=command)
    if _gevent_patched():
        return (
            "the process is monkey-patched by gevent (gunicorn -k gevent), where an "
            f"in-process listener is not supported; {advice}"
        )
    if isinstance(store, MemoryCursorStore) or not isinstance(store, LeaseStore):
        return (
            f"the cursor store ({type(store).__name__}) is not shared by the web server's "
            "processes with a lease, so every worker would handle every event: configure "
            f"a 'sqlite:///...' or 'redis://...' store, or {advice}"
        )
    return None


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    return bool(monkey.is_module_patched("threading") or monkey.is_module_patched("socket"))


# -- commands ---------------------------------------------------------------------


def run_forever(listener: Listener, stop_timeout: Optional[float]) -> None:
    """``listener.run_forever()``, with ``stop_timeout`` when one is configured;
    then the store the integration opened for it is closed."""
    try:
        if stop_timeout is not None:
            listener.run_forever(stop_timeout=stop_timeout)
        else:
            listener.run_forever()
    finally:
        close = getattr(listener.cursor_store, "close", None)
        if callable(close):
            close()


def log_to_stderr(verbose: bool) -> None:
    """Show agentstream's log lines on stderr when the application configured
    no logging at all (agentstream's own NullHandler would hide even its
    warnings): WARNING and above, INFO too when ``verbose``."""
    package = logging.getLogger("agentstream")
    if logging.getLogger().handlers or any(
        not isinstance(h, logging.NullHandler) for h in package.handlers
    ):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package.addHandler(handler)
    package.setLevel(logging.INFO if verbose else logging.WARNING)


def format_event(event: TaskEvent, *, as_json: bool) -> str:
    """One line of ``tail`` output, as ``agentstream tail`` prints it."""
    from .. import cli  # its line formats, so that every tail prints alike

    return cli._json_line(event) if as_json else cli._text_line(event)
