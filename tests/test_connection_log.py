"""ConnectionLog: a WARNING at the first failure, then one per interval, INFO when back."""

from __future__ import annotations

import logging

import pytest

from agentstream._connection_log import ConnectionLog
from agentstream.errors import ConnectionLostError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_are_logged_at_once_then_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = ConnectionLog("billing", logging.getLogger("test.connlog"), interval=60, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.connlog"):
        for _ in range(30):  # 30 attempts within 29 s: one line
            log.failed(ConnectionLostError("connection refused"), delay=1.0)
            clock.now += 1
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "lost its connection" in caplog.records[0].getMessage()
        clock.now += 31  # past the interval: one more line, with the count
        log.failed(ConnectionLostError("still refused"), delay=2.0)
        assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
        summary = caplog.records[1].getMessage()
        assert "31 failed attempts over 61s" in summary
        assert "still refused" in summary
        log.connected("http://127.0.0.1:8787/task-events/stream", "evt_41")
    back = caplog.records[-1]
    assert back.levelname == "INFO"
    assert "connected again" in back.getMessage()
    assert "31 failed attempt(s)" in back.getMessage()
    assert "resuming after evt_41" in back.getMessage()


def test_after_a_connection_the_next_failure_warns_again(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = ConnectionLog("x", logging.getLogger("test.connlog2"), interval=60, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.connlog2"):
        log.failed(None, delay=1.0)
        log.connected("http://h/s", None)
        log.failed(None, delay=1.0)
    levels = [r.levelname for r in caplog.records]
    assert levels == ["WARNING", "INFO", "WARNING"]
    assert "from the live end" in caplog.records[1].getMessage()
