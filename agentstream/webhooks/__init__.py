"""Signed webhooks into the same handlers as the stream, each event handled once.

::

    from agentstream.webhooks import WebhookReceiver, verify

    event = verify(request_body, request_headers, "whsec_...")  # or raises

    receiver = WebhookReceiver(["whsec_new...", "whsec_old..."])  # rotation
    status, body = receiver.handle(request_body, request_headers)

Deliveries are signed per Standard Webhooks (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``); AgentRail's timestamp-less
``X-AgentRail-Signature`` is accepted only with ``accept_agentrail=True``.
:class:`DeduplicatingRegistry` over a :class:`DedupStore` (memory, SQLite,
Redis) makes an event that arrives by stream and by webhook run its
handlers once. Needs the ``webhooks`` extra (``standardwebhooks``), imported
when a secret is first used; the Redis store needs the ``redis`` extra.
See docs/webhooks.md.
"""

from __future__ import annotations

from ..errors import WebhookVerificationError
from ._dedup import (
    DEFAULT_CLAIM_TTL,
    DEFAULT_RETENTION,
    Claim,
    DeduplicatingRegistry,
    DedupStore,
    MemoryDedupStore,
    OnceResult,
    Outcome,
)
from ._receiver import WebhookReceiver, WebhookResponse
from ._signing import Secret, agentrail_signature, generate_secret, signature_header
from ._stores import RedisDedupStore, SQLiteDedupStore
from ._verify import DEFAULT_TOLERANCE, Verifier, verify

__all__ = [
    "DEFAULT_CLAIM_TTL",
    "DEFAULT_RETENTION",
    "DEFAULT_TOLERANCE",
    "Claim",
    "DedupStore",
    "DeduplicatingRegistry",
    "MemoryDedupStore",
    "OnceResult",
    "Outcome",
    "RedisDedupStore",
    "SQLiteDedupStore",
    "Secret",
    "Verifier",
    "WebhookReceiver",
    "WebhookResponse",
    "WebhookVerificationError",
    "agentrail_signature",
    "generate_secret",
    "signature_header",
    "verify",
]
