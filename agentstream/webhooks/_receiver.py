"""A framework-neutral webhook endpoint: verify, de-duplicate, dispatch, answer.

What it answers, and why (docs/webhooks.md):

=======  ==========================================================
200      handled now, or already handled (a retry, a replay, or the
         stream got it first): the sender must stop
400      not verified (forged, tampered, stale, a header missing, a
         wrong secret) or not an envelope: retrying cannot help
413      the body is over ``max_body_bytes`` (by its Content-Length)
503      being handled by the other path right now, or the dedup
         store is unreachable: retry later (``Retry-After``)
500      a handler raised: the claim is released, the sender's retry
         runs the handlers again
=======  ==========================================================
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, Union

from .. import signals
from ..dispatch import Registry
from ..errors import WebhookVerificationError
from ._dedup import (
    DEFAULT_CLAIM_TTL,
    DEFAULT_RETENTION,
    DeduplicatingRegistry,
    DedupStore,
    MemoryDedupStore,
    Outcome,
)
from ._signing import Secret
from ._verify import DEFAULT_TOLERANCE, Verifier

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["DEFAULT_MAX_BODY_BYTES", "WebhookReceiver", "WebhookResponse"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
RETRY_AFTER_SECONDS = 5


class WebhookResponse(NamedTuple):
    """What to answer the sender: ``status, body = receiver.handle(...)``."""

    status: int
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        """The headers to send with it (``Content-Type``; ``Retry-After`` on 503)."""
        headers = {"Content-Type": "application/json"}
        if self.status == 503:
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return headers


def _answer(http_status: int, /, **body: Any) -> WebhookResponse:
    return WebhookResponse(http_status, json.dumps(body, separators=(",", ":")).encode())


class WebhookReceiver:
    """Receives signed webhook deliveries into a :class:`Registry`'s handlers.

    Framework-neutral: :meth:`handle` takes the raw body and the headers and
    returns ``(status, body)``; the receiver is also a WSGI application
    (POST only). The Flask and Django receivers wrap :meth:`handle`.

    :param secrets: the subscription's secret, or several during a rotation.
    :param registry: the handlers. A :class:`DeduplicatingRegistry` is used
        as it is (share it with a Listener to handle each event once across
        the stream and the webhooks); any other registry (default: the
        module-level decorators') is wrapped in one over ``dedup``.
    :param dedup: where event ids are claimed when ``registry`` is not a
        :class:`DeduplicatingRegistry`; default in memory (one process).
    :param tolerance: seconds a delivery's timestamp may be off.
    :param accept_agentrail: also accept AgentRail's timestamp-less signature
        (replays are then caught only by de-duplication, within ``retention``).
    :param claim_ttl: seconds a claim holds while handlers run.
    :param retention: seconds a handled event id is remembered.
    :param max_body_bytes: a larger body gets 413 (WSGI) or 400.
    """

    def __init__(
        self,
        secrets: Union[Secret, Iterable[Secret]],
        registry: Optional[Registry] = None,
        *,
        dedup: Optional[DedupStore] = None,
        tolerance: float = DEFAULT_TOLERANCE,
        accept_agentrail: bool = False,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        retention: float = DEFAULT_RETENTION,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.verifier: Verifier = Verifier(
            secrets, tolerance=tolerance, accept_agentrail=accept_agentrail
        )
        if isinstance(registry, DeduplicatingRegistry):
            if dedup is not None:
                raise ValueError("pass dedup= or a DeduplicatingRegistry, not both")
            self.registry: DeduplicatingRegistry = registry
        else:
            self.registry = DeduplicatingRegistry(
                dedup if dedup is not None else MemoryDedupStore(),
                registry,
                claim_ttl=claim_ttl,
                retention=retention,
            )
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"WebhookReceiver({self.verifier!r}, {self.registry!r})"

    def handle(self, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        """Verify, de-duplicate and dispatch one delivery; what to answer."""
        if len(body) > self.max_body_bytes:
            return _answer(
                400, error={"code": "payload_too_large", "message": "the body is too large"}
            )
        try:
            event = self.verifier.verify(body, headers)
        except WebhookVerificationError as exc:
            logger.warning("webhook delivery refused: %s (%s)", exc.reason, exc)
            return _answer(400, error={"code": exc.reason, "message": str(exc)})
        try:
            once = self.registry.dispatch_once(event, sender=self, signal=signals.event_received)
        except Exception:
            logger.exception("dedup store failed on webhook event %s: asking to retry", event.id)
            return _answer(503, status="retry", eventId=event.id)
        if once.outcome is Outcome.FAILED:
            # No exception text: the sender is not to learn the receiver's internals.
            return _answer(500, status="handler_failed", eventId=event.id)
        if once.outcome is Outcome.IN_PROGRESS:
            return _answer(503, status="in_progress", eventId=event.id)
        return _answer(200, status=once.outcome.value, eventId=event.id)

    def too_large(self) -> WebhookResponse:
        """What to answer a delivery whose ``Content-Length`` is over
        ``max_body_bytes``, before reading its body: 413 (the framework
        receivers and the WSGI app check it first)."""
        return _answer(413, error={"code": "payload_too_large", "message": "the body is too large"})

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        """The receiver as a WSGI application: POST the delivery to any path."""
        if environ.get("REQUEST_METHOD") != "POST":
            response = _answer(405, error={"code": "method_not_allowed", "message": "POST only"})
            start_response("405 Method Not Allowed", [*response.headers.items(), ("Allow", "POST")])
            return [response.body]
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > self.max_body_bytes:
            response = self.too_large()
        else:
            body = environ["wsgi.input"].read(length) if length else b""
            headers = {
                key[5:].replace("_", "-").lower(): str(value)
                for key, value in environ.items()
                if key.startswith("HTTP_")
            }
            response = self.handle(body, headers)
        start_response(_status_line(response.status), list(response.headers.items()))
        return [response.body]


_REASONS = {
    200: "OK",
    400: "Bad Request",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Unknown')}"
