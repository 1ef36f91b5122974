"""A real Flask app receives the reference server's webhooks with a three-line route
around WebhookReceiver.handle() (the blueprint of agentstream.contrib.flask is to come):
every event of a simulated task arrives verified and is handled once, in the app context."""

from __future__ import annotations

import flask

from agentstream import Registry
from agentstream.models import TaskEvent
from agentstream.server import WebhookConfig
from agentstream.webhooks import WebhookReceiver

from .server_fixtures import ServerFactory
from .test_webhooks_server import subscribe, task_event_ids
from .webhook_fixtures import SECRET, Recorder, ServedApp


def test_a_flask_route_receives_a_task_by_webhook_once(servers: ServerFactory) -> None:
    recorder = Recorder()
    in_app_context: list[bool] = []
    registry = Registry()
    registry.add(recorder)

    @registry.on_event
    def check_context(event: TaskEvent) -> None:
        in_app_context.append(flask.has_app_context())

    app = flask.Flask(__name__)
    receiver = WebhookReceiver(SECRET, registry)

    @app.post("/webhooks")
    def webhooks() -> flask.Response:
        status, body = receiver.handle(flask.request.get_data(), flask.request.headers)
        return flask.Response(body, status=status, content_type="application/json")

    server = servers.start(webhooks=WebhookConfig(retry_scale=0.001))
    api = servers.api(server)
    with ServedApp(app) as served:
        subscribe(api, served.url)
        task = api.create_task("ship it", eventsStreaming=True)
        expected = task_event_ids(api, task["id"])
        assert recorder.wait_for(lambda calls: set(calls) >= set(expected), timeout=20)
    assert recorder.calls == dict.fromkeys(expected, 1)
    assert in_app_context
    assert all(in_app_context)  # handlers ran inside the request's app context
