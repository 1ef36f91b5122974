"""The example live page (examples/live_page) in a real browser.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``), driven by
Selenium, opens the example Flask app's page, served on 127.0.0.1 in a thread
and pointed at a reference server. The tests wait, with a bound, on what the
page shows, and check what a person sees: the chunks of the answer, the tool
calls with their results, the sign-in prompt as a link, the final status.
``make test`` installs Chromium when it is missing and it can
(tools/install_chromium.sh); where it cannot, these tests are skipped, saying why.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from flask import Flask, request

from agentstream import Client, EventType
from agentstream.server import ReferenceServer
from agentstream.server._agent import ANSWER_CHUNKS

from .live_page_example import example
from .server_fixtures import ServerFactory, wait_until
from .wsgi_server import WSGIServer

CHROMIUM = os.environ.get("AGENTSTREAM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("AGENTSTREAM_CHROMEDRIVER", "/usr/bin/chromedriver")
# As root, in a machine with no network beyond 127.0.0.1: no sandbox (it needs
# user namespaces), no GPU, and none of Chromium's own connections to Google.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1000,1600",
)
IDLE_AGENT = 3600.0
WAIT = 30.0  # seconds a page may take to show something (it takes well under 1)


def _why_no_browser() -> Optional[str]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        return (
            f"headless Chromium is not installed ({', '.join(missing)} missing): install "
            "Debian's chromium and chromium-driver (`make test` does it as root with apt-get, "
            "tools/install_chromium.sh)"
        )
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (it is in the dev extra: pip install -e '.[dev]')"
    return None


pytestmark = pytest.mark.skipif(_why_no_browser() is not None, reason=_why_no_browser() or "")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def example_app(
    server: ReferenceServer, before_request: Optional[Callable[[], None]] = None
) -> Iterator[tuple[Flask, str]]:
    """The example app on 127.0.0.1, pointed at ``server``; yields it and its URL."""
    app: Flask = example.create_app(
        {
            "AGENTSTREAM_BASE_URL": server.url,
            "AGENTSTREAM_API_KEY": server.api_key,
            "LIVE_PAGE_HEARTBEAT_SECONDS": 0.5,
            "LIVE_PAGE_RECONNECT_MS": 200,
        }
    )
    if before_request is not None:
        app.before_request(before_request)
    try:
        with WSGIServer(app) as web:
            yield app, web.url
    finally:
        with app.app_context():
            example.agentstream.client.close()


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # A page that is being replaced (a form posted, a link followed) has elements
    # that vanish under the check: look again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(driver, WAIT, poll_frequency=0.02, ignored_exceptions=ignored)
    return wait.until(condition, message=what)


def text_of(driver: Any, selector: str) -> str:
    """What the element shows, as the DOM has it (textContent, spaces kept)."""
    from selenium.webdriver.common.by import By

    value: str = driver.find_element(By.CSS_SELECTOR, selector).get_attribute("textContent")
    return value


def finished(driver: Any) -> bool:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-finished") == "true"


def subscriptions(app: Flask) -> int:
    with app.app_context():
        count: int = example.agentstream.client.task_streams.subscriptions()
        return count


def browser_errors(driver: Any) -> list[str]:
    """The errors the browser reported since the last call: a script that failed, a
    content-security-policy violation. Not those of the network (the example has
    no favicon; a stream that the test cuts, or that a page closes, ends unfinished)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and entry.get("source") != "network"
    ]


def test_the_example_page_shows_a_whole_transcript_as_a_person_sees_it(
    browser: Any, servers: ServerFactory, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    server = servers.start(agent_pace=0.05)  # the run takes about a second: most of it live
    with example_app(server) as (app, url):
        browser.get(url + "/")
        browser.find_element(By.ID, "prompt").send_keys("Summarise the streaming docs")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_for(browser, lambda d: "/tasks/task_" in d.current_url, "the task's page")
        wait_for(browser, finished, "the page to show the task finished")
        screenshot = tmp_path / "live_page.png"
        assert browser.save_screenshot(str(screenshot))
        assert screenshot.read_bytes().startswith(b"\x89PNG")

        assert text_of(browser, "#prompt") == "Summarise the streaming docs"
        status = browser.find_element(By.ID, "status")
        assert (status.text, status.get_attribute("data-state")) == ("done", "final")
        # The answer, chunk by chunk, as streamed.
        chunks = browser.find_elements(By.CSS_SELECTOR, "#answer .chunk")
        assert [c.get_attribute("textContent") for c in chunks] == list(ANSWER_CHUNKS)
        answer = "".join(ANSWER_CHUNKS)
        assert browser.find_element(By.ID, "answer").text == answer.strip()
        # Each tool call with its result.
        calls = browser.find_elements(By.CSS_SELECTOR, "#tools .tool-call")
        assert [c.find_element(By.CLASS_NAME, "tool-name").text for c in calls] == [
            "web_search",
            "fetch_url",
        ]
        search, fetch = (c.find_element(By.CLASS_NAME, "tool-result").text for c in calls)
        assert search.startswith("result: ")
        assert "A relevant page" in search
        assert fetch == 'failed: {"error":"HTTP 503 from example.com"}'
        assert "succeeded" in (calls[0].get_attribute("class") or "")
        assert "failed" in (calls[1].get_attribute("class") or "")
        # The sign-in prompt as a link a person can follow.
        link = browser.find_element(By.CSS_SELECTOR, "#auth a.auth-link")
        assert link.is_displayed()
        assert link.text == "Sign in to GitHub so the agent can open a pull request."
        href = link.get_attribute("href") or ""
        assert href.startswith("https://github.com/login/oauth/authorize?client_id=agentstream-")
        # The plan, what else happened, and the final status with the result.
        assert len(browser.find_elements(By.CSS_SELECTOR, "#plan li")) == 3
        activity = browser.find_element(By.ID, "activity").text
        assert "Shipped to staging: succeeded" in activity
        assert "Review: approved." in activity
        assert browser.find_element(By.ID, "final-status").text == "Finished: done"
        assert browser.find_element(By.ID, "result").text == answer
        # No key in what the browser got, and nothing went wrong in it.
        assert server.api_key not in browser.page_source
        assert browser_errors(browser) == []
        # The page closed its EventSource at task.finished: nothing is held open.
        assert wait_until(lambda: subscriptions(app) == 0)


def test_chunks_appear_one_by_one_and_a_dropped_page_resumes_where_it_was(
    browser: Any, servers: ServerFactory
) -> None:
    from selenium.webdriver.common.by import By

    server = servers.start(agent_pace=IDLE_AGENT)  # the test publishes every event itself
    requests_seen: list[tuple[Optional[str], socket.socket]] = []

    def record() -> None:
        if request.path.endswith("/events"):
            requests_seen.append(
                (request.headers.get("Last-Event-ID"), request.environ["werkzeug.socket"])
            )

    with Client(server.url, server.api_key) as client, example_app(server, record) as (app, url):
        task = client.create_task("Stream to me", events_streaming=True)
        page = f"{url}/tasks/{task.id}"
        browser.get(page)
        wait_for(browser, lambda d: text_of(d, "#status") == "todo", "task.created on the page")

        shown = ""
        chunk_ids = []
        for text in ["Streams ", "arrive ", "live."]:
            chunk_ids.append(client.publish_event(EventType.CHUNK, text, task_id=task.id).id)
            shown += text
            # Each chunk shows while it is the task's last event: it came live.
            wait_for(browser, lambda d, s=shown: text_of(d, "#answer") == s, f"{shown!r}")

        # The connection drops (the server side cuts it); the task goes on.
        (first_request,) = requests_seen
        first_request[1].shutdown(socket.SHUT_RDWR)
        client.publish_event(EventType.CHUNK, " Again.", task_id=task.id)
        shown += " Again."
        wait_for(browser, lambda d: text_of(d, "#answer") == shown, "the chunk sent meanwhile")
        # The browser came back by itself with the last id it had: nothing missed or repeated.
        assert [last for last, _ in requests_seen] == [None, chunk_ids[-1]]
        assert len(browser.find_elements(By.CSS_SELECTOR, "#answer .chunk")) == 4
        assert browser_errors(browser) == []

        # A person leaves the page: the server notices and lets go of its upstream.
        assert subscriptions(app) == 1
        browser.get("about:blank")
        # (The page closes its stream on pagehide: Chromium keeps a page in its
        # back/forward cache, and would keep the stream open with it.)
        assert wait_until(lambda: subscriptions(app) == 0, timeout=10)
        assert not [t for t in threading.enumerate() if t.name == f"agentstream-live-{task.id}"]

        # Back: the page shows everything so far, once, then the end.
        browser.back()
        wait_for(browser, lambda d: text_of(d, "#answer") == shown, "the transcript so far")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#answer .chunk")) == 4
        client.stop_task(task.id)
        wait_for(browser, finished, "the page to show the task finished")
        assert text_of(browser, "#status") == "cancelled"
        assert text_of(browser, "#final-status") == "Finished: cancelled"
        assert browser_errors(browser) == []


def test_what_an_agent_writes_is_shown_as_text_never_run_as_markup(
    browser: Any, servers: ServerFactory
) -> None:
    from selenium.webdriver.common.by import By

    server = servers.start(agent_pace=IDLE_AGENT)
    attack = "<img src=x onerror=\"document.title='pwned'\">"
    with Client(server.url, server.api_key) as client, example_app(server) as (_, url):
        task = client.create_task("Hostile output", events_streaming=True)
        browser.get(f"{url}/tasks/{task.id}")
        wait_for(browser, lambda d: text_of(d, "#status") == "todo", "task.created on the page")
        client.publish_event(EventType.CHUNK, attack, task_id=task.id)
        client.publish_event(
            EventType.AUTH_REQUIRED,
            {"provider": "evil", "authUrl": "javascript:document.title='pwned'", "message": attack},
            task_id=task.id,
        )
        client.publish_event(
            EventType.TOOL_CALL_REQUESTED,
            {"operationId": "op", "toolCallId": attack, "toolName": attack, "payload": {}},
            task_id=task.id,
        )
        client.stop_task(task.id)
        wait_for(browser, finished, "the page to show the task finished")
        assert text_of(browser, "#answer") == attack  # shown, as text
        assert text_of(browser, "#auth") == attack
        assert text_of(browser, "#tools .tool-name") == attack
        assert browser.find_elements(By.CSS_SELECTOR, "main img, #auth a") == []
        assert "pwned" not in browser.title
        assert browser_errors(browser) == []
