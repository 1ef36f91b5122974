"""Verifying a webhook delivery: the raw bytes first, then the envelope."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Mapping
from typing import Optional, Union

from ..errors import InvalidEventError, WebhookVerificationError
from ..models import TaskEvent, parse_event
from ._signing import (
    AGENTRAIL_SIGNATURE,
    WEBHOOK_ID,
    WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
    Secret,
    Signer,
    lower_headers,
    parse_signature_header,
)

__all__ = ["DEFAULT_TOLERANCE", "Verifier", "verify"]

DEFAULT_TOLERANCE = 300.0
"""Seconds a ``webhook-timestamp`` may be from the receiver's clock (either way):
the Standard Webhooks recommendation of five minutes."""

_MAX_ID_LENGTH = 256

Reason = WebhookVerificationError


class Verifier:
    """Checks deliveries against a list of secrets (what :func:`verify` does, with
    the secrets prepared once; a :class:`WebhookReceiver` holds one).

    :param secrets: one secret or several (during a rotation, the new and the
        old): a delivery signed with any of them is accepted.
    :param tolerance: seconds the ``webhook-timestamp`` may differ from now.
    :param accept_agentrail: also accept AgentRail's signature alone
        (``X-AgentRail-Signature``, no timestamp: a captured delivery stays
        valid forever, so only de-duplication stops its replay). Off by
        default. A delivery that carries Standard Webhooks headers is always
        judged by them, never by the weaker scheme.
    """

    def __init__(
        self,
        secrets: Union[Secret, Iterable[Secret]],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        accept_agentrail: bool = False,
    ) -> None:
        if not tolerance > 0:
            raise ValueError("tolerance must be more than 0 seconds")
        self._signer = Signer(secrets)
        self.tolerance: float = float(tolerance)
        self.accept_agentrail = accept_agentrail

    def __repr__(self) -> str:
        return (
            f"Verifier({self._signer!r}, tolerance={self.tolerance:g}, "
            f"accept_agentrail={self.accept_agentrail})"
        )

    def verify(
        self, body: bytes, headers: Mapping[str, str], *, now: Optional[float] = None
    ) -> TaskEvent:
        """The typed event of a delivery whose signature holds; see :func:`verify`."""
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError("verify() needs the raw body as bytes, before any parsing")
        raw = bytes(body)
        lowered = lower_headers(headers)
        has_standard = any(name in lowered for name in (WEBHOOK_ID, WEBHOOK_SIGNATURE))
        if not has_standard and self.accept_agentrail and AGENTRAIL_SIGNATURE in lowered:
            self._check_agentrail(raw, lowered[AGENTRAIL_SIGNATURE])
        else:
            self._check_standard(raw, lowered, time.time() if now is None else now)
        return _envelope(raw)

    def _check_standard(self, raw: bytes, headers: Mapping[str, str], now: float) -> None:
        missing = [
            name
            for name in (WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE)
            if not headers.get(name)
        ]
        if missing:
            raise WebhookVerificationError(
                Reason.MISSING_HEADER, f"missing header(s): {', '.join(missing)}"
            )
        msg_id = headers[WEBHOOK_ID]
        if len(msg_id) > _MAX_ID_LENGTH or any(c in msg_id for c in " \t\r\n"):
            raise WebhookVerificationError(Reason.INVALID_HEADER, "webhook-id is not valid")
        stamp = headers[WEBHOOK_TIMESTAMP].strip()
        # Integer seconds, written canonically: the signed text is that very string.
        if not (stamp.isascii() and stamp.isdigit()) or str(int(stamp)) != stamp:
            raise WebhookVerificationError(
                Reason.INVALID_HEADER, "webhook-timestamp must be integer seconds since the epoch"
            )
        timestamp = int(stamp)
        if abs(now - timestamp) > self.tolerance:
            raise WebhookVerificationError(
                Reason.TIMESTAMP_OUTSIDE_TOLERANCE,
                f"webhook-timestamp is {now - timestamp:+.0f} s from this receiver's clock, "
                f"outside the tolerance of {self.tolerance:g} s",
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookVerificationError(
                Reason.NOT_AN_ENVELOPE, "the body is not UTF-8, so not a JSON envelope"
            ) from None
        offered = parse_signature_header(headers[WEBHOOK_SIGNATURE])
        matched = False
        for expected in self._signer.signatures(msg_id, timestamp, text):
            for signature in offered:  # every comparison made, in constant time
                matched |= hmac.compare_digest(expected, signature)
        if not matched:
            raise WebhookVerificationError(
                Reason.NO_MATCHING_SIGNATURE, "no webhook-signature matches a configured secret"
            )

    def _check_agentrail(self, raw: bytes, offered: str) -> None:
        matched = False
        for expected in self._signer.agentrail_signatures(raw):
            matched |= hmac.compare_digest(expected.encode(), offered.strip().encode())
        if not matched:
            raise WebhookVerificationError(
                Reason.NO_MATCHING_SIGNATURE,
                "the X-AgentRail-Signature does not match a configured secret",
            )


def _envelope(raw: bytes) -> TaskEvent:
    try:
        return parse_event(raw)
    except InvalidEventError as exc:
        raise WebhookVerificationError(
            Reason.NOT_AN_ENVELOPE, f"the verified body is not an event envelope: {exc}"
        ) from None


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Union[Secret, Iterable[Secret]],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    accept_agentrail: bool = False,
    now: Optional[float] = None,
) -> TaskEvent:
    """Verify a webhook delivery and return its typed event.

    ``body`` is the request body exactly as received (bytes, before any JSON
    parsing: a re-serialized body no longer matches its signature).
    ``headers`` is any mapping of the request's headers (names in any case).
    The Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``) must match one of ``secrets`` and the timestamp
    be within ``tolerance`` seconds of ``now`` (default: the clock); then the
    body is parsed with the stream's models (:func:`agentstream.parse_event`:
    typed payloads, raw fallback). ``accept_agentrail`` also accepts AgentRail's
    timestamp-less ``X-AgentRail-Signature`` on a delivery without Standard
    Webhooks headers (see :class:`Verifier`).

    Raises :class:`~agentstream.errors.WebhookVerificationError` with a
    ``reason`` otherwise; nothing of the body is parsed before the signature
    holds.
    """
    verifier = Verifier(secrets, tolerance=tolerance, accept_agentrail=accept_agentrail)
    return verifier.verify(body, headers, now=now)
