"""signals.send_each: blinker's send() semantics, except that every receiver runs."""

from __future__ import annotations

from typing import Any

import pytest
from blinker import Signal

from agentstream.signals import send_each


def test_send_each_calls_every_receiver_even_if_one_raises() -> None:
    signal = Signal()
    calls: list[str] = []

    def first(sender: Any, **kwargs: Any) -> None:
        calls.append("first")
        raise KeyError("boom")

    def second(sender: Any, **kwargs: Any) -> None:
        calls.append(f"second {kwargs['value']}")

    signal.connect(first, weak=False)
    signal.connect(second, weak=False)
    failures = send_each(signal, "sender", value=1)
    assert sorted(calls) == ["first", "second 1"]
    assert [(receiver, type(exc)) for receiver, exc in failures] == [(first, KeyError)]


def test_send_each_calls_nobody_while_the_signal_is_muted() -> None:
    signal = Signal()
    calls: list[object] = []
    signal.connect(lambda sender, **kwargs: calls.append(sender), weak=False)
    with signal.muted():
        assert send_each(signal, "muted") == []
        assert signal.send("muted") == []  # blinker's own send agrees
    send_each(signal, "unmuted")
    assert calls == ["unmuted"]


def test_send_each_refuses_a_coroutine_receiver_and_still_calls_the_others() -> None:
    signal = Signal()
    calls: list[object] = []

    async def coroutine_receiver(sender: Any, **kwargs: Any) -> None:  # pragma: no cover
        calls.append("async")

    signal.connect(coroutine_receiver, weak=False)
    signal.connect(lambda sender, **kwargs: calls.append("sync"), weak=False)
    with pytest.raises(RuntimeError, match="coroutine"):
        signal.send("x")  # what blinker does
    calls.clear()
    failures = send_each(signal, "x")
    assert calls == ["sync"]  # the coroutine function was never called
    assert len(failures) == 1
    receiver, error = failures[0]
    assert receiver is coroutine_receiver
    assert isinstance(error, RuntimeError)
    assert "coroutine" in str(error)
