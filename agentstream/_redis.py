"""A redis-py client whose password never shows: what the cursor store and the
dedup store both open (``cursors.RedisCursorStore``, ``webhooks.RedisDedupStore``).

redis-py is imported when a client is made (the ``redis`` extra). Below
every layer: it imports only :mod:`agentstream.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Union
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .errors import AgentStreamError, ConfigurationError, redact

if TYPE_CHECKING:
    import redis

__all__ = ["RedactedRedis", "redacted_error", "redacted_url", "secrets_of_url"]


def secrets_of_url(url: str) -> tuple[str, ...]:
    """The passwords a Redis URL holds (``:password@`` and ``?password=``)."""
    parts = urlsplit(url)
    found = [parts.password or ""]
    found += parse_qs(parts.query).get("password", [])
    return tuple(secret for secret in found if secret)


def redacted_url(url: str, secrets: tuple[str, ...]) -> str:
    """``url`` with its password shown as ``<redacted>``."""
    parts = urlsplit(url)
    if parts.password:
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{user}:<redacted>@{host}")
    return str(redact(urlunsplit(parts), secrets))


def redacted_error(exc: Exception, secrets: tuple[str, ...]) -> Optional[Exception]:
    """A copy of ``exc`` with every secret replaced, or None if it shows none."""
    text = str(exc)
    if not any(secret in text or secret in repr(exc.args) for secret in secrets):
        return None
    clean = str(redact(text, secrets))
    try:
        return type(exc)(clean)
    except Exception:  # an error class that takes other arguments
        return AgentStreamError(clean)


class RedactedRedis:
    """A ``redis.Redis`` made from a URL (or given ready), with where it points
    and what it must never show.

    ``url_or_client`` is a URL (``redis://[[user]:password@]host[:port][/db]``,
    ``rediss://`` for TLS with certificate verification on, ``unix://``) or a
    ready ``redis.Redis`` client. A client made from a URL has bounded socket
    waits (5 s; options in the URL win), so that a call to a hung server fails
    in time. :meth:`call` runs one redis-py call and re-raises an error whose
    text holds the password with it replaced; :attr:`where` is the URL with
    the password redacted, for reprs.

    :param owner: the class that needs it, named in the error when redis-py
        is not installed.
    """

    def __init__(self, url_or_client: Union[str, redis.Redis], *, owner: str) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                f"{owner} needs redis-py: pip install 'agentstream[redis]'"
            ) from exc
        if isinstance(url_or_client, str):
            self.secrets: tuple[str, ...] = secrets_of_url(url_or_client)
            self.where: str = redacted_url(url_or_client, self.secrets)
            self.client: redis.Redis = self.call(
                redis.Redis.from_url,
                url_or_client,
                socket_timeout=5.0,
                socket_connect_timeout=5.0,
            )
        else:
            self.client = url_or_client
            kwargs = url_or_client.connection_pool.connection_kwargs
            password = kwargs.get("password")
            self.secrets = (password,) if isinstance(password, str) and password else ()
            where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
            self.where = f"<client {where}/{kwargs.get('db', 0)}>"

    def __repr__(self) -> str:
        return f"RedactedRedis({self.where!r})"

    def call(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one redis-py call; an error whose text holds the password (redis-py
        puts connection details in some messages) is re-raised with it replaced,
        and without the original attached."""
        try:
            return operation(*args, **kwargs)
        except Exception as exc:
            replacement = redacted_error(exc, self.secrets)
            if replacement is None:
                raise
        # Raised outside the except block, so that the original (which holds the
        # password) is not kept as the replacement's __context__.
        raise replacement

    def close(self) -> None:
        """Close the client's connections (also those of a client passed in)."""
        self.call(self.client.close)
