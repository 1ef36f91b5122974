"""A live task page: a task's transcript in the browser as the agent works.

    agentstream serve    # prints AGENTSTREAM_BASE_URL=... AGENTSTREAM_API_KEY=...
    export AGENTSTREAM_BASE_URL=... AGENTSTREAM_API_KEY=...
    flask --app examples/live_page/app.py run --with-threads
    # open http://127.0.0.1:5000/, ask something: the task's page fills in live

The page (templates/task.html, static/live.js) reads its task's events with
the browser's own ``EventSource`` from ``/tasks/<id>/events``, which
``AgentStream.live_response`` answers: chunks as they stream, tool calls and
their results, the sign-in prompt as a link, the final status. The API key
stays in this process; the browser only ever sees events.

Each open page holds one of the server's threads while it is open: run it
threaded (``--with-threads``, gunicorn ``-k gthread --threads N``; see
docs/live-pages.md).
"""

from __future__ import annotations

from typing import Any, Optional

from flask import Flask, Response, abort, redirect, render_template, request, url_for

from agentstream import NotFoundError
from agentstream.contrib.flask import AgentStream

agentstream = AgentStream()

# Event data reaches the page as text only (live.js uses textContent); the
# policy also forbids inline scripts and other origins, should that slip.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(config: Optional[dict[str, Any]] = None) -> Flask:
    app = Flask(__name__)
    app.config["AGENTSTREAM_CURSOR_STORE"] = "memory"  # this app runs no listener
    # A comment this often keeps an idle page's connection open and finds out
    # when its browser has gone (within two of them).
    app.config["LIVE_PAGE_HEARTBEAT_SECONDS"] = 15.0
    # A page reconnects this soon (ms) when its connection drops, and resumes
    # after the last event it got (the browser sends Last-Event-ID).
    app.config["LIVE_PAGE_RECONNECT_MS"] = 1000
    app.config.from_prefixed_env()  # FLASK_AGENTSTREAM_API_KEY=... also works
    app.config.update(config or {})
    agentstream.init_app(app)

    @app.after_request
    def security_headers(response: Response) -> Response:
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/")
    def index() -> str:
        return render_template("index.html")

    @app.post("/tasks")
    def create_task() -> Any:
        # A real app checks the user here (and a CSRF token).
        prompt = request.form.get("prompt", "").strip() or "Write a haiku about streams"
        task = agentstream.client.create_task(prompt, events_streaming=True)
        return redirect(url_for("task_page", task_id=task.id), code=303)

    @app.get("/tasks/<task_id>")
    def task_page(task_id: str) -> str:
        # A real app checks here that the user may see this task.
        try:
            task = agentstream.client.get_task(task_id)
        except NotFoundError:
            abort(404)
        return render_template("task.html", task=task)

    @app.get("/tasks/<task_id>/events")
    def task_events(task_id: str) -> Response:
        # The same check as the page's: this streams any task it is given.
        return agentstream.live_response(
            task_id,
            heartbeat_seconds=float(app.config["LIVE_PAGE_HEARTBEAT_SECONDS"]),
            retry_ms=int(app.config["LIVE_PAGE_RECONNECT_MS"]),
        )

    return app
