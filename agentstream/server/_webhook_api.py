"""The subscription API of the reference server: AgentRail's, with documented extensions.

``POST /task-webhook-subscriptions`` (``webhooks:write``; ``Idempotency-Key``),
``GET /task-webhook-subscriptions`` and ``GET``/``DELETE
/task-webhook-subscriptions/{id}``, answered in the shape of AgentRail's
``TaskWebhookSubscriptionResponse`` (``{"data": {...}, "availableActions"}``).
Extensions (docs/webhooks.md): ``eventTypes``, ``secret`` and ``retryPolicy``
optional at creation (all types; a generated ``whsec_`` secret, returned
once as ``data.secret``); ``POST .../{id}/rotate-secret``; ``GET
.../{id}/deliveries``; ``description`` and ``disabledReason`` in ``data``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Callable, Optional

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..errors import ConfigurationError
from ..event_types import WIRE_TYPES
from ..webhooks._signing import Signer
from ._webhooks import (
    ACTIVE,
    DeliveryRecord,
    RetryPolicy,
    Subscription,
    WebhookDelivery,
    host_allowed,
)

__all__ = ["ROUTES", "SCOPES", "WebhookApi", "WebhookApiError"]

_BASE = "/task-webhook-subscriptions"
_MAX_URL = 2048
_MAX_SECRET = 512
_MAX_DESCRIPTION = 500
_MAX_TASK_IDS = 1000
_MAX_IDEMPOTENCY_KEY_LENGTH = 255

#: (rule, endpoint, scope) of every route this module serves.
ROUTES: tuple[tuple[Rule, str], ...] = (
    (Rule(_BASE, endpoint="webhooks_create", methods=["POST"]), "webhooks:write"),
    (Rule(_BASE, endpoint="webhooks_list", methods=["GET"]), "webhooks:read"),
    (Rule(f"{_BASE}/<sub_id>", endpoint="webhooks_get", methods=["GET"]), "webhooks:read"),
    (Rule(f"{_BASE}/<sub_id>", endpoint="webhooks_delete", methods=["DELETE"]), "webhooks:write"),
    (
        Rule(f"{_BASE}/<sub_id>/rotate-secret", endpoint="webhooks_rotate", methods=["POST"]),
        "webhooks:write",
    ),
    (
        Rule(f"{_BASE}/<sub_id>/deliveries", endpoint="webhooks_deliveries", methods=["GET"]),
        "webhooks:read",
    ),
)

#: The scopes these routes need (added to the server's ``ALL_SCOPES``).
SCOPES = frozenset({"webhooks:read", "webhooks:write"})


class WebhookApiError(Exception):
    """An error answer of these routes; the app turns it into its JSON error shape."""

    def __init__(
        self, status: int, code: str, message: str, details: Optional[Mapping[str, Any]] = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})


def _secret(body: Mapping[str, Any]) -> Optional[str]:
    """The optional ``secret`` of a body: 8 to 512 characters, usable as a key."""
    secret = body.get("secret")
    if secret is None:
        return None
    expected = f"a string of 8 to {_MAX_SECRET} characters (whsec_ secrets: base64 after it)"
    if not isinstance(secret, str) or not 8 <= len(secret) <= _MAX_SECRET:
        raise _field("secret", expected)
    try:
        Signer(secret)
    except ConfigurationError:
        raise _field("secret", expected) from None
    return secret


def _field(field: str, expected: str) -> WebhookApiError:
    return WebhookApiError(
        400,
        "invalid_request",
        f"{field} must be {expected}",
        {"field": field, "expected": expected},
    )


def _iso(seconds: Optional[float]) -> Optional[str]:
    if seconds is None:
        return None
    when = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _actions(subscription: Subscription) -> list[str]:
    return ["deactivate", "rotate_secret"] if subscription.status == ACTIVE else []


def subscription_json(subscription: Subscription, secret: Optional[str] = None) -> dict[str, Any]:
    """``data`` of AgentRail's ``TaskWebhookSubscriptionResponse`` (+ extensions)."""
    data: dict[str, Any] = {
        "id": subscription.id,
        "url": subscription.url,
        "eventTypes": list(subscription.event_types or ()),
        "filters": {
            "taskIds": None if subscription.task_ids is None else list(subscription.task_ids)
        },
        "status": subscription.status,
        "signingAlgorithm": "hmac_sha256",
        "retryPolicy": subscription.retry_policy.as_json(),
        "createdAt": subscription.created_at,
        "availableActions": _actions(subscription),
        "description": subscription.description,
        "disabledReason": subscription.disabled_reason,
        "previousSecretExpiresAt": _iso(subscription.previous_secret_until),
    }
    if secret is not None:
        data["secret"] = secret
    return data


def delivery_json(delivery: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "eventId": delivery.event_id,
        "eventType": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "lastStatusCode": delivery.last_status,
        "lastError": delivery.last_error,
        "nextAttemptAt": _iso(delivery.next_attempt_at),
        "createdAt": delivery.created_at,
        "finishedAt": delivery.finished_at,
    }


class WebhookApi:
    """The route handlers, over a :class:`WebhookDelivery`.

    ``read_body(request)`` is the app's JSON-object reader (size limit, UTF-8,
    JSON errors as the app answers them). Each handler takes ``(request,
    principal, **args)`` like the app's own, and returns a ``Response``;
    ``principal`` needs ``key_digest`` (and ``organization_id`` where the
    server has organizations).
    """

    def __init__(self, delivery: WebhookDelivery, read_body: Callable[[Request], dict[str, Any]]):
        self.delivery = delivery
        self._read_body = read_body
        self.endpoints: dict[str, Callable[..., Response]] = {
            "webhooks_create": self.create,
            "webhooks_list": self.list_subscriptions,
            "webhooks_get": self.get,
            "webhooks_delete": self.delete,
            "webhooks_rotate": self.rotate,
            "webhooks_deliveries": self.deliveries,
        }

    @staticmethod
    def _json(
        body: Any, status: int = 200, headers: Optional[Mapping[str, str]] = None
    ) -> Response:
        response = Response(
            json.dumps(body, separators=(",", ":")), status=status, content_type="application/json"
        )
        response.headers["Cache-Control"] = "no-store"
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def _one(self, subscription: Subscription, status: int = 200, **extra: Any) -> Response:
        secret = extra.pop("secret", None)
        body = {"data": subscription_json(subscription, secret), "availableActions": []}
        return self._json(body, status, extra.pop("headers", None))

    def _owned(self, principal: Any, sub_id: str) -> Subscription:
        found = self.delivery.get(sub_id)
        organization = getattr(principal, "organization_id", None)
        if found is None or (
            found.organization_id is not None and found.organization_id != organization
        ):
            raise WebhookApiError(
                404, "subscription_not_found", "no such webhook subscription", {"id": sub_id}
            )
        return found

    # ------------------------------------------------------------------ routes

    def create(self, request: Request, principal: Any) -> Response:
        body = self._read_body(request)
        url = body.get("url")
        if not isinstance(url, str) or not url or len(url) > _MAX_URL:
            raise _field("url", f"an http(s) URL of at most {_MAX_URL} characters")
        allowed = self.delivery.config.allowed_hosts
        if not host_allowed(url, allowed):
            raise WebhookApiError(
                400,
                "url_not_allowed",
                "this server delivers webhooks only to http(s) URLs on its allowed hosts",
                {"field": "url", "allowedHosts": list(allowed)},
            )
        event_types = _event_types(body.get("eventTypes"))
        secret = _secret(body)
        description = body.get("description")
        if description is not None and (
            not isinstance(description, str) or len(description) > _MAX_DESCRIPTION
        ):
            raise _field("description", f"a string of at most {_MAX_DESCRIPTION} characters")
        task_ids = _task_ids(body.get("filters"))
        policy = _retry_policy(body.get("retryPolicy"))
        idempotency = None
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            if not key or len(key) > _MAX_IDEMPOTENCY_KEY_LENGTH:
                raise WebhookApiError(
                    400,
                    "invalid_request",
                    f"Idempotency-Key must be 1 to {_MAX_IDEMPOTENCY_KEY_LENGTH} characters",
                    {"header": "Idempotency-Key"},
                )
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
            fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
            idempotency = (f"{principal.key_digest}:webhooks:{key}", fingerprint)
        try:
            subscription, created = self.delivery.create(
                url=url,
                event_types=event_types,
                secret=secret,
                description=description,
                task_ids=task_ids,
                retry_policy=policy,
                organization_id=getattr(principal, "organization_id", None),
                idempotency=idempotency,
            )
        except KeyError:
            raise WebhookApiError(
                409,
                "idempotency_conflict",
                "this Idempotency-Key was already used with a different request body",
                {"header": "Idempotency-Key"},
            ) from None
        # A generated secret is shown at creation (and on an idempotent replay of it), never after.
        shown = subscription.secret if subscription.secret_generated else None
        headers = {"Location": f"{_BASE}/{subscription.id}"}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return self._one(subscription, 201 if created else 200, secret=shown, headers=headers)

    def list_subscriptions(self, request: Request, principal: Any) -> Response:
        found = self.delivery.subscriptions(getattr(principal, "organization_id", None))
        return self._json(
            {"data": [subscription_json(s) for s in found], "availableActions": ["create"]}
        )

    def get(self, request: Request, principal: Any, sub_id: str) -> Response:
        return self._one(self._owned(principal, sub_id))

    def delete(self, request: Request, principal: Any, sub_id: str) -> Response:
        self._owned(principal, sub_id)
        disabled = self.delivery.deactivate(sub_id)
        assert disabled is not None
        return self._one(disabled)

    def rotate(self, request: Request, principal: Any, sub_id: str) -> Response:
        current = self._owned(principal, sub_id)
        if current.status != ACTIVE:
            raise WebhookApiError(
                409, "subscription_disabled", "a disabled subscription has no secret to rotate"
            )
        body = self._read_body(request) if request.content_length else {}
        secret = _secret(body)
        overlap = body.get("overlapSeconds")
        if overlap is not None and (
            isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= 604800
        ):
            raise _field("overlapSeconds", "an integer from 0 to 604800")
        rotated = self.delivery.rotate(sub_id, secret, None if overlap is None else float(overlap))
        assert rotated is not None
        subscription, new_secret = rotated
        return self._one(subscription, secret=new_secret)

    def deliveries(self, request: Request, principal: Any, sub_id: str) -> Response:
        self._owned(principal, sub_id)
        found = self.delivery.deliveries(sub_id)
        return self._json({"data": [delivery_json(d) for d in found], "availableActions": []})


def _event_types(value: Any) -> Optional[list[str]]:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise _field("eventTypes", "a list of event types")
    if not value:
        return None  # [] (as the responses show "all types") means all types
    unknown = sorted({t for t in value if t not in WIRE_TYPES})
    if unknown:
        raise WebhookApiError(
            400,
            "invalid_request",
            f"unknown event types: {', '.join(unknown)}",
            {"field": "eventTypes", "unknown": unknown},
        )
    return sorted(set(value), key=value.index)


def _task_ids(filters: Any) -> Optional[list[str]]:
    if filters is None:
        return None
    if not isinstance(filters, dict):
        raise _field("filters", "an object")
    task_ids = filters.get("taskIds")
    if task_ids is None:
        return None
    if (
        not isinstance(task_ids, list)
        or len(task_ids) > _MAX_TASK_IDS
        or not all(isinstance(t, str) and t for t in task_ids)
    ):
        raise _field("filters.taskIds", f"a list of at most {_MAX_TASK_IDS} task ids")
    return task_ids


def _retry_policy(value: Any) -> Optional[RetryPolicy]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _field("retryPolicy", "an object")
    limits = {
        "maxAttempts": (1, 50),
        "initialBackoffSeconds": (1, 3600),
        "maxBackoffSeconds": (1, 86400),
    }
    defaults = RetryPolicy()
    chosen = {
        "maxAttempts": defaults.max_attempts,
        "initialBackoffSeconds": defaults.initial_backoff_seconds,
        "maxBackoffSeconds": defaults.max_backoff_seconds,
    }
    for name, (low, high) in limits.items():
        if name in value:
            number = value[name]
            if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
                raise _field(f"retryPolicy.{name}", f"an integer from {low} to {high}")
            chosen[name] = number
    if chosen["maxBackoffSeconds"] < chosen["initialBackoffSeconds"]:
        raise _field("retryPolicy.maxBackoffSeconds", "at least initialBackoffSeconds")
    return RetryPolicy(
        chosen["maxAttempts"], chosen["initialBackoffSeconds"], chosen["maxBackoffSeconds"]
    )
