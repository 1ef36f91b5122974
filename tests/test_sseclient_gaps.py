"""The measured gaps of sseclient-py 1.9, each shown upstream and closed here.

Each test runs the same bytes through plain ``sseclient.SSEClient`` and
through :class:`agentstream.sse.SSEParser`. The upstream half documents why
the pin ``sseclient-py>=1.9.0,<1.10`` exists: when a new release fixes a gap,
its upstream assertion fails, and the override can be reconsidered.
"""

from __future__ import annotations

import time

import sseclient

from agentstream.sse import SSEParser


def upstream(chunks: list[bytes]) -> list[tuple[str, str, object]]:
    return [(e.event, e.data, e.id) for e in sseclient.SSEClient(iter(chunks)).events()]


def ours(chunks: list[bytes]) -> list[tuple[str, str, object]]:
    return [(e.event, e.data, e.id) for e in SSEParser(chunks).events()]


def test_bom_at_stream_start() -> None:
    chunks = [b"\xef\xbb\xbfdata: first\n\ndata: second\n\n"]
    assert upstream(chunks) == [("message", "second", None)]  # first event lost
    assert ours(chunks) == [("message", "first", None), ("message", "second", None)]


def test_blank_line_of_mixed_endings() -> None:
    chunks = [b"data: a\n\r\ndata: b\n\n"]
    assert upstream(chunks) == [("message", "a\nb", None)]  # two events merged
    assert ours(chunks) == [("message", "a", None), ("message", "b", None)]


def test_event_cut_off_by_eof() -> None:
    chunks = [b"data: complete\n\ndata: cut off"]
    assert upstream(chunks) == [("message", "complete", None), ("message", "cut off", None)]
    assert ours(chunks) == [("message", "complete", None)]


def test_last_event_id_persistence() -> None:
    chunks = [b"id: 1\ndata: a\n\ndata: b\n\nid: 2\n\ndata: c\n\n"]
    assert upstream(chunks) == [
        ("message", "a", "1"),
        ("message", "b", None),
        ("message", "c", None),
    ]
    assert ours(chunks) == [("message", "a", "1"), ("message", "b", "1"), ("message", "c", "2")]


def test_id_with_nul_and_bad_retry() -> None:
    chunks = [b"id: a\x00b\nretry: soon\ndata: x\n\n"]
    (event,) = list(sseclient.SSEClient(iter(chunks)).events())
    assert (event.id, event.retry) == ("a\x00b", "soon")
    (mine,) = list(SSEParser(chunks).events())
    assert (mine.id, mine.retry) == (None, None)


def test_invalid_utf8() -> None:
    chunks = [b"data: \xff\n\n"]
    try:
        upstream(chunks)
    except UnicodeDecodeError:
        pass
    else:  # pragma: no cover - would mean upstream changed
        raise AssertionError("sseclient-py now tolerates invalid UTF-8")
    assert ours(chunks) == [("message", "\ufffd", None)]


def test_quadratic_buffering() -> None:
    # 3 MB in 1 KiB pieces: enough to show the curve without slowing the suite.
    body = b"data: " + b"x" * 3_000_000 + b"\n\n"
    chunks = [body[i : i + 1024] for i in range(0, len(body), 1024)]
    start = time.perf_counter()
    assert len(upstream(chunks)[0][1]) == 3_000_000
    upstream_seconds = time.perf_counter() - start
    start = time.perf_counter()
    assert len(ours(chunks)[0][1]) == 3_000_000
    our_seconds = time.perf_counter() - start
    assert our_seconds * 5 < upstream_seconds, (our_seconds, upstream_seconds)
