"""Webhook signatures: Standard Webhooks (``webhook-*``) and AgentRail's (``X-AgentRail-*``).

The HMAC of the Standard Webhooks scheme is computed by ``standardwebhooks``
(the specification's own library, imported when first needed: the
``webhooks`` extra); what this module adds is what that library does not
offer: several secrets, secrets that are not ``whsec_`` base64, and a
header parser that never raises anything but a verdict (docs/decisions.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Union

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from standardwebhooks import Webhook

__all__ = [
    "AGENTRAIL_SIGNATURE",
    "WEBHOOK_ID",
    "WEBHOOK_SIGNATURE",
    "WEBHOOK_TIMESTAMP",
    "Secret",
    "agentrail_signature",
    "generate_secret",
    "signature_header",
]

Secret = Union[str, bytes]
"""A signing secret: ``whsec_<base64>`` (Standard Webhooks' form), any other
text (used as its UTF-8 bytes, as AgentRail's secrets are), or raw bytes."""

WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
AGENTRAIL_SIGNATURE = "x-agentrail-signature"

_PREFIX = "whsec_"


def generate_secret() -> str:
    """A new random secret in Standard Webhooks' form: ``whsec_`` + 32 bytes, base64."""
    return _PREFIX + base64.b64encode(_random.token_bytes(32)).decode("ascii")


def secret_list(secrets: Union[Secret, Iterable[Secret]]) -> list[Secret]:
    """One secret or several, as a list; at least one, none empty."""
    found = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)
    if not found:
        raise ConfigurationError("at least one webhook secret is needed")
    for secret in found:
        if not isinstance(secret, (str, bytes)) or not secret:
            raise ConfigurationError("a webhook secret must be a non-empty str or bytes")
    return found


def _hmac_key(secret: Secret) -> bytes:
    """The HMAC key of a secret for the Standard Webhooks signature."""
    if isinstance(secret, bytes):
        return secret
    if secret.startswith(_PREFIX):
        try:
            encoded = secret[len(_PREFIX) :]
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError("a whsec_ secret must be base64 after its prefix") from None
        if not key:
            raise ConfigurationError("a whsec_ secret must not be empty")
        return key
    return secret.encode("utf-8")


def _webhook(secret: Secret) -> Webhook:
    try:
        from standardwebhooks import Webhook
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "webhook signatures need standardwebhooks: pip install 'agentstream[webhooks]'"
        ) from exc
    return Webhook(_hmac_key(secret))


class Signer:
    """The Standard Webhooks signers of a list of secrets (one ``Webhook`` each)."""

    def __init__(self, secrets: Union[Secret, Iterable[Secret]]) -> None:
        self._secrets = secret_list(secrets)
        self._hooks = [_webhook(secret) for secret in self._secrets]

    def __repr__(self) -> str:  # never the secrets
        return f"Signer(<{len(self._hooks)} secret(s)>)"

    def signatures(self, msg_id: str, timestamp: int, body: str) -> list[bytes]:
        """The raw ``v1`` signature of each secret, in order."""
        when = datetime.fromtimestamp(timestamp, tz=timezone.utc)
        found = []
        for hook in self._hooks:
            _, _, encoded = hook.sign(msg_id, when, body).partition(",")
            found.append(base64.b64decode(encoded))
        return found

    def header(self, msg_id: str, timestamp: int, body: str) -> str:
        """The ``webhook-signature`` value: ``v1,<base64>`` per secret, space-separated."""
        return " ".join(
            "v1," + base64.b64encode(sig).decode("ascii")
            for sig in self.signatures(msg_id, timestamp, body)
        )

    def agentrail_signatures(self, body: bytes) -> list[str]:
        """``sha256=<hex>`` per secret, as AgentRail's SDK checks it (key: the secret's text)."""
        return [agentrail_signature(secret, body) for secret in self._secrets]


def signature_header(
    secrets: Union[Secret, Iterable[Secret]], msg_id: str, timestamp: int, body: bytes
) -> str:
    """The ``webhook-signature`` header for ``body`` signed with each secret."""
    return Signer(secrets).header(msg_id, timestamp, body.decode("utf-8"))


def agentrail_signature(secret: Secret, body: bytes) -> str:
    """AgentRail's ``X-AgentRail-Signature``: ``sha256=`` + hex HMAC-SHA256 of the body,
    keyed with the secret's text as given (AgentRail's SDK: ``secret.encode()``)."""
    key = secret if isinstance(secret, bytes) else secret.encode("utf-8")
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def parse_signature_header(value: str) -> list[bytes]:
    """The ``v1`` signatures of a ``webhook-signature`` header; other versions and
    malformed entries are skipped (standardwebhooks 1.1 raises ValueError or
    binascii.Error on those instead of refusing the delivery)."""
    found = []
    for entry in value.split():
        version, sep, encoded = entry.partition(",")
        if version != "v1" or not sep:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names lowercased (a plain dict, werkzeug's or Django's headers alike)."""
    return {str(name).lower(): str(value) for name, value in headers.items()}
