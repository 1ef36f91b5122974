"""API keys of the reference server: their scopes and their organization.

Each key belongs to one organization. What it publishes belongs to that
organization, its streams carry only that organization's events, and it sees
only that organization's tasks: the server is multi-tenant by key. A key
given as a bare set of scopes belongs to the store's default organization
(``org_local``), so a server with such keys only behaves as one tenant.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional, Union

__all__ = ["ALL_SCOPES", "ApiKey", "KeyRing", "Principal"]

#: Every scope a key can hold.
ALL_SCOPES: frozenset[str] = frozenset(
    {"events:read", "events:write", "tasks:read", "tasks:write", "webhooks:read", "webhooks:write"}
)


@dataclass(frozen=True)
class ApiKey:
    """What one API key may do: its ``scopes`` and the organization it acts for.

    ``organization_id`` None means the store's default organization.
    """

    scopes: frozenset[str]
    organization_id: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", frozenset(self.scopes))
        unknown = self.scopes - ALL_SCOPES
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
        if self.organization_id is not None and (
            not self.organization_id or any(c.isspace() for c in self.organization_id)
        ):
            raise ValueError("an organization id must be a non-empty string without spaces")


KeySpec = Union[ApiKey, Iterable[str]]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's scopes and organization (never the key itself)."""

    scopes: frozenset[str]
    organization_id: str
    key_digest: str  # sha256 of the key, to scope idempotency keys


class KeyRing:
    """The server's API keys; finds a presented key in constant time.

    :param keys: ``{key: ApiKey}`` or ``{key: scopes}``.
    :param default_organization: the organization of keys that name none.
    """

    def __init__(self, keys: Mapping[str, KeySpec], default_organization: str) -> None:
        self._keys: list[tuple[bytes, Principal]] = []
        for key, spec in keys.items():
            api_key = spec if isinstance(spec, ApiKey) else ApiKey(frozenset(spec))
            if not key or any(c.isspace() for c in key):
                raise ValueError("an API key must be a non-empty string without spaces")
            digest = hashlib.sha256(key.encode()).hexdigest()
            organization = api_key.organization_id or default_organization
            self._keys.append((key.encode(), Principal(api_key.scopes, organization, digest)))

    @property
    def organizations(self) -> frozenset[str]:
        """The organizations the keys act for."""
        return frozenset(p.organization_id for _, p in self._keys)

    def find(self, token: str) -> Optional[Principal]:
        """The principal of ``token``, or None; compares with every key, in constant time."""
        candidate = token.encode()
        found: Optional[Principal] = None
        for key, principal in self._keys:
            if hmac.compare_digest(candidate, key):
                found = principal
        return found
