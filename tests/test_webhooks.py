"""agentstream.webhooks on the receiving side: verify, the receiver's answers,
the deduplicating registry and handled-once across retries (the dedup stores
themselves: test_dedup_stores.py).

Deliveries are signed with ``standardwebhooks`` itself (tests/webhook_fixtures.py),
so agentstream's verifier is checked against the specification's library.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Callable

import pytest
import requests
import standardwebhooks

from agentstream import Registry, signals
from agentstream.errors import AgentStreamError, WebhookVerificationError
from agentstream.models import MessageChunkEvent, TaskEvent
from agentstream.webhooks import (
    Claim,
    DeduplicatingRegistry,
    MemoryDedupStore,
    Outcome,
    WebhookReceiver,
    agentrail_signature,
    generate_secret,
    signature_header,
    verify,
)

from .webhook_fixtures import (
    OTHER_SECRET,
    SECRET,
    Recorder,
    ServedApp,
    agentrail_headers,
    body_of,
    envelope,
    sign,
)

BODY = body_of(envelope())


def reason_of(call: Callable[[], Any]) -> str:
    with pytest.raises(WebhookVerificationError) as info:
        call()
    assert isinstance(info.value, AgentStreamError)
    return info.value.reason


# -- verify ----------------------------------------------------------------------


def test_a_signed_delivery_gives_the_typed_event() -> None:
    event = verify(BODY, sign(BODY), SECRET)
    assert isinstance(event, MessageChunkEvent)
    assert (event.id, event.data, event.task_id) == ("evt_000000000001", "hello", "task_1")


def test_header_names_in_any_case_are_found() -> None:
    headers = {k.upper(): v for k, v in sign(BODY).items()}
    assert verify(BODY, headers, SECRET).id == "evt_000000000001"


def test_a_payload_that_fails_validation_still_comes_with_its_envelope() -> None:
    body = body_of(envelope(type_="task.shipped", data={"shipStatus": 12}))
    event = verify(body, sign(body), SECRET)
    assert type(event) is TaskEvent
    assert event.data == {"shipStatus": 12}
    assert event.validation_error is not None


def _forged(headers: dict[str, str]) -> dict[str, str]:
    fake = base64.b64encode(b"\0" * 32).decode()
    return {**headers, "webhook-signature": f"v1,{fake}"}


def _without(name: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda headers: {k: v for k, v in headers.items() if k != name}


@pytest.mark.parametrize(
    ("case", "body", "headers", "reason"),
    # Headers are signed when the test runs: a timestamp taken at collection
    # is outside the 5-minute tolerance once the suite has run that long.
    [
        ("forged signature", BODY, lambda: _forged(sign(BODY)), "no_matching_signature"),
        (
            "tampered body",
            BODY.replace(b"hello", b"HELLO"),
            lambda: sign(BODY),
            "no_matching_signature",
        ),
        ("wrong secret", BODY, lambda: sign(BODY, OTHER_SECRET), "no_matching_signature"),
        (
            "other id signed",
            BODY,
            lambda: {**sign(BODY), "webhook-id": "evt_2"},
            "no_matching_signature",
        ),
        (
            "stale timestamp",
            BODY,
            lambda: sign(BODY, timestamp=int(time.time()) - 301),
            "timestamp_outside_tolerance",
        ),
        (
            "future timestamp",
            BODY,
            lambda: sign(BODY, timestamp=int(time.time()) + 600),
            "timestamp_outside_tolerance",
        ),
        ("no webhook-id", BODY, lambda: _without("webhook-id")(sign(BODY)), "missing_header"),
        ("no timestamp", BODY, lambda: _without("webhook-timestamp")(sign(BODY)), "missing_header"),
        ("no signature", BODY, lambda: _without("webhook-signature")(sign(BODY)), "missing_header"),
        ("no headers", BODY, dict, "missing_header"),
        (
            "float timestamp",
            BODY,
            lambda: {**sign(BODY), "webhook-timestamp": f"{time.time():.3f}"},
            "invalid_header",
        ),
        (
            "signature without a comma",
            BODY,
            lambda: {**sign(BODY), "webhook-signature": "v1"},
            "no_matching_signature",
        ),
        (
            "signature not base64",
            BODY,
            lambda: {**sign(BODY), "webhook-signature": "v1,???"},
            "no_matching_signature",
        ),
        ("signed, not JSON", b"not json", lambda: sign(b"not json"), "not_an_envelope"),
        ("signed, no type", b'{"id":"evt_1"}', lambda: sign(b'{"id":"evt_1"}'), "not_an_envelope"),
    ],
)
def test_deliveries_not_proven_are_refused_with_their_reason(
    case: str, body: bytes, headers: Callable[[], dict[str, str]], reason: str
) -> None:
    assert reason_of(lambda: verify(body, headers(), SECRET)) == reason, case


def test_a_body_that_is_not_utf8_is_refused_not_crashed() -> None:
    headers = {**sign(b"x"), "webhook-signature": "v1,AAAA"}
    assert reason_of(lambda: verify(b"\xff\xfe", headers, SECRET)) == "not_an_envelope"


def test_the_tolerance_is_the_receivers_choice() -> None:
    old = sign(BODY, timestamp=int(time.time()) - 3600)
    assert reason_of(lambda: verify(BODY, old, SECRET)) == "timestamp_outside_tolerance"
    assert verify(BODY, old, SECRET, tolerance=7200).id == "evt_000000000001"
    assert reason_of(lambda: verify(BODY, sign(BODY), SECRET, tolerance=5, now=time.time() + 60))


def test_the_error_never_shows_a_secret_or_a_signature() -> None:
    headers = sign(BODY, OTHER_SECRET)
    with pytest.raises(WebhookVerificationError) as info:
        verify(BODY, headers, SECRET)
    shown = str(info.value) + repr(info.value)
    signature = headers["webhook-signature"].split(",", 1)[1]
    for secret in (SECRET, SECRET[6:], OTHER_SECRET[6:], signature):
        assert secret not in shown


def test_rotation_accepts_the_old_and_the_new_secret() -> None:
    new, old = generate_secret(), SECRET
    keys = [new, old]
    assert verify(BODY, sign(BODY, old), keys).id == "evt_000000000001"
    assert verify(BODY, sign(BODY, new), keys).id == "evt_000000000001"
    # During the overlap the sender signs with both: either secret alone verifies.
    both = sign(BODY, new, old)
    assert len(both["webhook-signature"].split()) == 2
    assert verify(BODY, both, new).id == verify(BODY, both, old).id
    # Once the old secret is dropped, what it alone signed is refused.
    assert reason_of(lambda: verify(BODY, sign(BODY, old), new)) == "no_matching_signature"


def test_secrets_that_are_not_whsec_are_their_utf8_bytes() -> None:
    # AgentRail's secrets are plain text: the same text keys both signatures.
    headers = sign(BODY, base64.b64encode(b"plain secret").decode())
    assert verify(BODY, headers, "plain secret").id == "evt_000000000001"


def test_agentstreams_signer_matches_the_specifications_library() -> None:
    stamp = int(time.time())
    mine = signature_header([SECRET, OTHER_SECRET], "evt_000000000001", stamp, BODY)
    assert mine == sign(BODY, SECRET, OTHER_SECRET, timestamp=stamp)["webhook-signature"]
    headers = {"webhook-id": "evt_000000000001", "webhook-timestamp": str(stamp)}
    standardwebhooks.Webhook(OTHER_SECRET).verify(BODY, {**headers, "webhook-signature": mine})


def test_agentrails_signature_only_when_the_receiver_opts_in() -> None:
    headers = agentrail_headers(BODY)
    assert reason_of(lambda: verify(BODY, headers, SECRET)) == "missing_header"
    assert verify(BODY, headers, SECRET, accept_agentrail=True).id == "evt_000000000001"
    tampered = BODY.replace(b"hello", b"HELLO")
    assert (
        reason_of(lambda: verify(tampered, headers, SECRET, accept_agentrail=True))
        == "no_matching_signature"
    )
    assert agentrail_signature(SECRET, BODY) == headers["X-AgentRail-Signature"]


def test_a_stale_standard_delivery_is_not_rescued_by_its_agentrail_signature() -> None:
    stale = {**sign(BODY, timestamp=int(time.time()) - 3600), **agentrail_headers(BODY)}
    assert (
        reason_of(lambda: verify(BODY, stale, SECRET, accept_agentrail=True))
        == "timestamp_outside_tolerance"
    )


def test_verify_wants_the_raw_bytes() -> None:
    with pytest.raises(TypeError):
        verify(json.loads(BODY), sign(BODY), SECRET)  # type: ignore[arg-type]


def test_the_gaps_of_standardwebhooks_verify_that_agentstream_closes() -> None:
    # Measured on standardwebhooks 1.1.0: what its Webhook.verify does with
    # input agentstream must refuse cleanly (docs/decisions.md).
    hook = standardwebhooks.Webhook(SECRET)
    with pytest.raises(ValueError, match="not enough values"):  # not its own error
        hook.verify(BODY, {**sign(BODY), "webhook-signature": "v1"})
    with pytest.raises(UnicodeDecodeError):
        hook.verify(b"\xff", sign(b"x"))
    old = sign(BODY, timestamp=int(time.time()) - 600)
    with pytest.raises(standardwebhooks.WebhookVerificationError, match="too old"):
        hook.verify(BODY, old)  # five minutes, hard-coded: no tolerance argument
    assert verify(BODY, old, SECRET, tolerance=900).id == "evt_000000000001"


# -- the receiver ------------------------------------------------------------------


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def receiver(recorder: Recorder) -> WebhookReceiver:
    registry = Registry()
    registry.add(recorder)
    return WebhookReceiver([SECRET], registry)


def answer(response: tuple[int, bytes]) -> tuple[int, dict[str, Any]]:
    status, body = response
    return status, json.loads(body)


def test_a_verified_delivery_is_handled_and_answered_200(
    receiver: WebhookReceiver, recorder: Recorder
) -> None:
    status, body = answer(receiver.handle(BODY, sign(BODY)))
    assert (status, body) == (200, {"status": "handled", "eventId": "evt_000000000001"})
    assert recorder.calls == {"evt_000000000001": 1}
    assert isinstance(recorder.events[0], MessageChunkEvent)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (lambda: _forged(sign(BODY)), "no_matching_signature"),
        (lambda: sign(BODY, OTHER_SECRET), "no_matching_signature"),
        (lambda: sign(BODY, timestamp=int(time.time()) - 400), "timestamp_outside_tolerance"),
        (lambda: _without("webhook-signature")(sign(BODY)), "missing_header"),
    ],
)
def test_an_unproven_delivery_gets_400_with_its_reason_and_runs_nothing(
    receiver: WebhookReceiver,
    recorder: Recorder,
    headers: Callable[[], dict[str, str]],
    reason: str,
) -> None:
    status, body = answer(receiver.handle(BODY, headers()))
    assert status == 400
    assert body["error"]["code"] == reason
    tampered = BODY.replace(b"hello", b"HELLO")
    status, body = answer(receiver.handle(tampered, sign(BODY)))
    assert (status, body["error"]["code"]) == (400, "no_matching_signature")
    assert recorder.calls == {}


def test_a_replayed_delivery_is_answered_200_and_not_handled_again(
    receiver: WebhookReceiver, recorder: Recorder
) -> None:
    headers = sign(BODY)
    assert receiver.handle(BODY, headers).status == 200
    for _ in range(3):  # the same delivery again, and a retry with a new timestamp
        status, body = answer(receiver.handle(BODY, headers))
        assert (status, body["status"]) == (200, "duplicate")
    assert answer(receiver.handle(BODY, sign(BODY, timestamp=int(time.time()) + 1)))[1] == {
        "status": "duplicate",
        "eventId": "evt_000000000001",
    }
    assert recorder.calls == {"evt_000000000001": 1}


def test_a_failed_handler_gets_500_and_the_retry_handles_it(
    receiver: WebhookReceiver, recorder: Recorder
) -> None:
    recorder.fail = lambda event: recorder.calls[event.id] == 1  # only the first run fails
    status, body = answer(receiver.handle(BODY, sign(BODY)))
    assert (status, body) == (500, {"status": "handler_failed", "eventId": "evt_000000000001"})
    status, body = answer(receiver.handle(BODY, sign(BODY)))
    assert (status, body["status"]) == (200, "handled")
    assert answer(receiver.handle(BODY, sign(BODY)))[1]["status"] == "duplicate"
    assert recorder.calls == {"evt_000000000001": 2}  # once failed, once handled


def test_a_delivery_being_handled_elsewhere_gets_503_retry_after(recorder: Recorder) -> None:
    store = MemoryDedupStore()
    registry = Registry()
    registry.add(recorder)
    receiver = WebhookReceiver(SECRET, registry, dedup=store)
    assert store.claim("evt_000000000001", 60) is Claim.CLAIMED  # the stream has it
    response = receiver.handle(BODY, sign(BODY))
    assert response.status == 503
    assert response.headers["Retry-After"].isdigit()
    store.release("evt_000000000001")  # ...and its handler failed
    assert receiver.handle(BODY, sign(BODY)).status == 200
    assert recorder.calls == {"evt_000000000001": 1}


def test_an_unreachable_dedup_store_gets_503_and_runs_nothing(recorder: Recorder) -> None:
    class Broken(MemoryDedupStore):
        def claim(self, event_id: str, ttl: float) -> Claim:
            raise ConnectionError("store down")

    registry = Registry()
    registry.add(recorder)
    receiver = WebhookReceiver(SECRET, registry, dedup=Broken())
    assert receiver.handle(BODY, sign(BODY)).status == 503
    assert recorder.calls == {}


def test_the_receiver_sends_event_received_like_a_listener(receiver: WebhookReceiver) -> None:
    got: list[tuple[Any, TaskEvent]] = []

    def on_received(sender: Any, event: TaskEvent, listener: Any) -> None:
        got.append((listener, event))

    with signals.event_received.connected_to(on_received):
        receiver.handle(BODY, sign(BODY))
    assert [(who, e.id) for who, e in got] == [(receiver, "evt_000000000001")]


def test_the_receiver_as_a_wsgi_app_on_a_real_socket(
    receiver: WebhookReceiver, recorder: Recorder
) -> None:
    with ServedApp(receiver) as served:
        ok = requests.post(served.url, data=BODY, headers=sign(BODY), timeout=5)
        assert (ok.status_code, ok.json()["status"]) == (200, "handled")
        again = requests.post(served.url, data=BODY, headers=sign(BODY), timeout=5)
        assert again.json()["status"] == "duplicate"
        bad = requests.post(served.url, data=BODY, headers=_forged(sign(BODY)), timeout=5)
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "no_matching_signature")
        assert requests.get(served.url, timeout=5).status_code == 405
    assert recorder.calls == {"evt_000000000001": 1}


def test_the_receivers_repr_shows_no_secret(receiver: WebhookReceiver) -> None:
    assert SECRET not in repr(receiver)
    assert SECRET[6:] not in repr(receiver)


# The dedup stores' shared suite (memory, SQLite, Redis, Django) is test_dedup_stores.py.


# -- the deduplicating registry --------------------------------------------------------


def test_registering_on_the_wrapper_registers_on_the_wrapped_registry() -> None:
    inner = Registry()
    dedup = DeduplicatingRegistry(MemoryDedupStore(), inner)
    seen: list[str] = []

    @dedup.on("message.chunk")
    def chunk(event: TaskEvent) -> None:
        seen.append(event.id)

    assert len(inner) == len(dedup) == 1
    event = verify(BODY, sign(BODY), SECRET)
    assert dedup.handlers_for(event) == (chunk,)
    assert dedup.dispatch_once(event).outcome is Outcome.HANDLED
    assert dedup.dispatch_once(event).outcome is Outcome.DUPLICATE
    assert dedup.dispatch(event).handled == 0
    assert seen == ["evt_000000000001"]


def test_the_stream_path_still_handles_when_the_store_is_down() -> None:
    class Broken(MemoryDedupStore):
        def claim(self, event_id: str, ttl: float) -> Claim:
            raise ConnectionError("store down")

    inner = Registry()
    seen: list[str] = []
    inner.add(lambda event: seen.append(event.id))
    dedup = DeduplicatingRegistry(Broken(), inner)
    event = verify(BODY, sign(BODY), SECRET)
    assert dedup.dispatch(event).handled == 1  # never dropped for want of a store
    assert seen == ["evt_000000000001"]
