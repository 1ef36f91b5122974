"""The webhook view: signed deliveries into the same handlers as ``agentstream_listen``.

::

    # urls.py
    from django.urls import path
    from agentstream.contrib.django.views import webhook

    urlpatterns = [path("agentstream/webhooks/", webhook)]

    # settings.py
    AGENTSTREAM = {"WEBHOOK_SECRETS": [os.environ["AGENTSTREAM_WEBHOOK_SECRET"]]}

The view is ``csrf_exempt`` (the signature is the proof of origin), POST only,
and never runs inside ``ATOMIC_REQUESTS``' transaction (an event id's claim
must be seen by the other processes at once). It answers what
:class:`~agentstream.webhooks.WebhookReceiver` decides (200 handled or
duplicate, 400 unproven, 413 too large, 500 a handler raised, 503 retry
later) and 503 ``webhooks_not_configured`` while ``WEBHOOK_SECRETS`` is
unset or wrong, so the sender retries instead of dropping the event. See
docs/django.md and docs/webhooks.md.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Optional

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ...errors import ConfigurationError
from ...webhooks import WebhookReceiver, WebhookResponse
from . import conf

__all__ = ["webhook", "webhook_receiver"]

logger: logging.Logger = logging.getLogger(__name__)

_lock = threading.Lock()
_receiver: Optional[WebhookReceiver] = None


def webhook_receiver() -> WebhookReceiver:
    """The process's :class:`~agentstream.webhooks.WebhookReceiver` for
    ``settings.AGENTSTREAM`` (made at the first delivery, made again when the
    setting changes, as in tests): ``WEBHOOK_SECRETS``, ``REGISTRY``'s handlers
    behind the claims of ``WEBHOOK_DEDUP``. A ConfigurationError without a
    secret or with a wrong value."""
    global _receiver
    with _lock:
        if _receiver is None:
            settings = conf.webhook_settings()
            if not settings.enabled:
                raise ConfigurationError(
                    "no webhook secret: set AGENTSTREAM['WEBHOOK_SECRETS'] in your settings"
                )
            _receiver = settings.receiver(conf.once())
        return _receiver


def _forget_receiver(*, setting: str, **kwargs: Any) -> None:
    global _receiver
    if setting != "AGENTSTREAM":
        return
    with _lock:
        old, _receiver = _receiver, None
    close = getattr(old.registry.store, "close", None) if old is not None else None
    if callable(close):
        close()


setting_changed.connect(_forget_receiver, dispatch_uid="agentstream-webhook-receiver")


def _response(answer: WebhookResponse) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers.items():
        response[name] = value
    return response


def _not_atomic(view: Callable[[HttpRequest], HttpResponse]) -> Any:
    """Out of ``ATOMIC_REQUESTS`` on every database (the claims may be in any)."""
    for alias in django_settings.DATABASES:
        view = transaction.non_atomic_requests(using=alias)(view)
    return view


@_not_atomic
@csrf_exempt
@require_POST
def webhook(request: HttpRequest) -> HttpResponse:
    """Receive one webhook delivery: verify, de-duplicate, run the handlers, answer."""
    try:
        receiver = webhook_receiver()
    except ConfigurationError as exc:
        logger.error("agentstream webhook refused (asked to retry later): %s", exc)
        body = {"error": {"code": "webhooks_not_configured", "message": "try again later"}}
        response = HttpResponse(json.dumps(body), status=503, content_type="application/json")
        response["Retry-After"] = "60"
        return response
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0 or length > receiver.max_body_bytes:
        return _response(receiver.too_large())  # refused before the body is read
    return _response(receiver.handle(request.body, request.headers))
