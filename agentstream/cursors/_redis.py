"""Cursors and leases in Redis: several processes on several hosts.

Needs the ``redis`` extra (redis-py), imported when a store is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union

from .._redis import RedactedRedis
from ..errors import LeaseLostError
from ._protocol import TokenWatermark

if TYPE_CHECKING:
    import redis

__all__ = ["RedisCursorStore"]

# Every script reads the time from the server (TIME), never from the client:
# the hosts of a deployment may disagree, the Redis server is the one clock.
# The lease hash holds holder, token and expires_at (ms, server time); the key
# itself expires one more TTL later, which only collects leases nobody renews.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: lease, token. ARGV: holder, ttl_ms. -> {token, 1 if a new grant} or nil.
_ACQUIRE = (
    _NOW
    + """
local ttl = tonumber(ARGV[2])
local lease = redis.call('HMGET', KEYS[1], 'holder', 'token', 'expires_at')
if lease[1] and tonumber(lease[3]) > now then
  if lease[1] ~= ARGV[1] then return false end
  redis.call('HSET', KEYS[1], 'expires_at', now + ttl)
  redis.call('PEXPIRE', KEYS[1], 2 * ttl)
  return {tonumber(lease[2]), 0}
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token, 'expires_at', now + ttl)
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
return {token, 1}
"""
)

# KEYS: lease. ARGV: holder, token, ttl_ms. -> 1 renewed, 0 lost.
# The hash is rewritten on every grant, so a matching holder and token mean
# nobody else was granted the lease since, even if it expired a moment ago.
_RENEW = (
    _NOW
    + """
local lease = redis.call('HMGET', KEYS[1], 'holder', 'token')
if lease[1] ~= ARGV[1] or lease[2] ~= ARGV[2] then return 0 end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'expires_at', now + ttl)
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
return 1
"""
)

# KEYS: lease. ARGV: holder, token.
_RELEASE = """
local lease = redis.call('HMGET', KEYS[1], 'holder', 'token')
if lease[1] == ARGV[1] and lease[2] == ARGV[2] then redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: cursor, token. ARGV: cursor, token. -> {1} saved, or {0, newest token?}.
_SAVE_FENCED = """
local current = redis.call('GET', KEYS[2])
if not current then return {0} end
if current ~= ARGV[2] then return {0, current} end
redis.call('SET', KEYS[1], ARGV[1])
return {1}
"""

# KEYS: lease. -> {holder, token, ms left} or nil.
_LEASE_HOLDER = (
    _NOW
    + """
local lease = redis.call('HMGET', KEYS[1], 'holder', 'token', 'expires_at')
if not lease[1] or tonumber(lease[3]) <= now then return false end
return {lease[1], tonumber(lease[2]), tonumber(lease[3]) - now}
"""
)


class RedisCursorStore:
    """Cursors and leases in Redis: one consumer per name across hosts.

    ``url_or_client`` is a URL (``redis://[[user]:password@]host[:port][/db]``,
    ``rediss://`` for TLS with certificate verification on, ``unix://``) or a
    ready ``redis.Redis`` client. Keys are ``{prefix}cursor:{name}``,
    ``{prefix}lease:{name}`` and ``{prefix}token:{name}``. Acquire, renew,
    release and the fenced save are each one Lua script, atomic on the server,
    and lease expiry is judged by the server's clock. The password never
    appears in the store's repr nor in an exception it raises.

    Redis must keep its data across restarts (AOF, ``appendonly yes``): a
    server that comes back empty has lost the cursors and restarts the token
    counter. A store object that notices (its next ``acquire`` gets a token not
    above one it returned before) raises
    :class:`~agentstream.errors.StoreResetError`; see docs/stores.md.
    """

    def __init__(
        self,
        url_or_client: Union[str, redis.Redis],
        *,
        prefix: str = "agentstream:",
    ) -> None:
        self.prefix = prefix
        self._connection = RedactedRedis(url_or_client, owner="RedisCursorStore")
        self._redis: redis.Redis = self._connection.client
        self._call = self._connection.call
        self._tokens = TokenWatermark()
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._save_fenced = self._redis.register_script(_SAVE_FENCED)
        self._lease_holder = self._redis.register_script(_LEASE_HOLDER)

    def __repr__(self) -> str:
        return f"RedisCursorStore({self._connection.where!r}, prefix={self.prefix!r})"

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    @staticmethod
    def _ttl_ms(ttl: float) -> int:
        return max(1, int(ttl * 1000))

    def load(self, name: str) -> Optional[str]:
        value = self._call(self._redis.get, self._key("cursor", name))
        return None if value is None else _text(value)

    def save(self, name: str, cursor: str) -> None:
        self._call(self._redis.set, self._key("cursor", name), cursor)

    def acquire(self, name: str, holder: str, ttl: float) -> Optional[int]:
        keys = [self._key("lease", name), self._key("token", name)]
        reply = self._call(self._acquire, keys=keys, args=[holder, self._ttl_ms(ttl)])
        if reply is None:
            return None
        token, new_grant = int(reply[0]), bool(int(reply[1]))
        return self._tokens.check(name, token, new_grant=new_grant)

    def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        keys = [self._key("lease", name)]
        reply = self._call(self._renew, keys=keys, args=[holder, token, self._ttl_ms(ttl)])
        return int(reply) == 1

    def release(self, name: str, holder: str, token: int) -> None:
        self._call(self._release, keys=[self._key("lease", name)], args=[holder, token])

    def save_fenced(self, name: str, cursor: str, token: int) -> None:
        keys = [self._key("cursor", name), self._key("token", name)]
        reply = self._call(self._save_fenced, keys=keys, args=[cursor, token])
        if int(reply[0]) != 1:
            current = int(reply[1]) if len(reply) > 1 else None
            raise LeaseLostError(name, token, current)

    def lease_holder(self, name: str) -> Optional[tuple[str, int, float]]:
        reply = self._call(self._lease_holder, keys=[self._key("lease", name)])
        if reply is None:
            return None
        return (_text(reply[0]), int(reply[1]), int(reply[2]) / 1000)

    def close(self) -> None:
        """Close the client's connections (also those of a client passed in)."""
        self._connection.close()


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
