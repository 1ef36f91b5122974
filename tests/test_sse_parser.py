"""SSEParser against the WHATWG EventSource parsing rules.

Every case is fed whole, split at every position, one byte at a time and two
bytes at a time; a property test compares random streams, randomly chunked,
with a literal transcription of the specification's algorithm.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentstream.errors import EventTooLargeError
from agentstream.sse import Comment, ServerSentEvent, SSEParser


def E(
    event: str = "message", data: str = "", id: Optional[str] = None, retry: Optional[int] = None
) -> ServerSentEvent:
    """An expected event, type and data first as the tables read best."""
    return ServerSentEvent(id, event, data, retry)


def chunkings(data: bytes) -> list[list[bytes]]:
    """Whole, every two-piece split, 1 byte at a time, 2 bytes at a time."""
    out = [[data]]
    out += [[data[:i], data[i:]] for i in range(1, len(data))]
    out.append([data[i : i + 1] for i in range(len(data))])
    out.append([data[i : i + 2] for i in range(0, len(data), 2)])
    return out


def parse(chunks: list[bytes], **kwargs: object) -> tuple[list[object], SSEParser]:
    parser = SSEParser(**kwargs)  # type: ignore[arg-type]
    out: list[object] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out, parser


def assert_parses(data: bytes, expected: list[object], last_id: Optional[str] = None) -> None:
    for chunks in chunkings(data):
        got, parser = parse(chunks)
        assert got == expected, chunks
        assert parser.last_event_id == last_id, chunks


CASES = {
    "two data lines joined with LF": (b"data: a\ndata: b\n\n", [E("message", "a\nb")]),
    "data without colon is an empty line of data": (
        b"data\ndata\ndata: x\n\n",
        [E("message", "\n\nx")],
    ),
    "lone data line dispatches empty data": (b"data\n\n", [E("message", "")]),
    "only one leading space stripped": (b"data:  two\n\n", [E("message", " two")]),
    "no space after colon": (b"data:x\n\n", [E("message", "x")]),
    "unknown fields ignored": (b"foo: bar\ndata: x\nDATA: y\n\n", [E("message", "x")]),
    "event type set and reset after dispatch": (
        b"event: a\ndata: 1\n\ndata: 2\n\n",
        [E("a", "1"), E("message", "2")],
    ),
    "empty event type is message": (b"event:\ndata: 1\n\n", [E("message", "1")]),
    "no data, no dispatch": (b"event: a\n\n", []),
    "comments are not events": (b": hi\ndata: x\n\n", [Comment("hi"), E("message", "x")]),
    "CR endings": (b"data: a\rdata: b\r\rdata: c\r\r", [E("message", "a\nb"), E("message", "c")]),
    "CRLF endings": (b"data: a\r\n\r\ndata: b\r\n\r\n", [E("message", "a"), E("message", "b")]),
    "mixed LF then CRLF blank line": (
        b"data: a\n\r\ndata: b\n\n",
        [E("message", "a"), E("message", "b")],
    ),
    "mixed CR then LF": (b"data: a\r\ndata: b\n\r", [E("message", "a\nb")]),
    "retry digits only": (b"retry: 1x\nretry: 15\ndata: x\n\n", [E("message", "x", None, 15)]),
    "field name without value": (b"data:\n\n", [E("message", "")]),
    "colon in value kept": (b"data: a: b\n\n", [E("message", "a: b")]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_whatwg_cases(name: str) -> None:
    data, expected = CASES[name]
    assert_parses(data, expected)


def test_id_persists_until_changed_and_empty_id_clears() -> None:
    data = b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n"
    assert_parses(data, [E("message", "a", "1"), E("message", "b", "1"), E("message", "c")])


def test_canonical_blocks_with_empty_id_and_type() -> None:
    data = b"id: 1\nevent: a\ndata: x\n\nid: \nevent: \ndata: y\n\ndata: z\n\n"
    assert_parses(data, [E("a", "x", "1"), E("message", "y"), E("message", "z")])


def test_id_only_event_updates_last_event_id() -> None:
    assert_parses(b"data: a\n\nid: 7\n\n", [E("message", "a")], last_id="7")


def test_id_with_nul_is_ignored() -> None:
    assert_parses(
        b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
        [E("message", "a", "1"), E("message", "b", "1")],
        "1",
    )


def test_event_types_stay_right_past_the_type_cache_limit() -> None:
    # Decoded types are cached, and the cache is emptied past 256 entries.
    parser = SSEParser()
    types = [f"type.{n}" for n in range(600)]
    stream = "".join(f"event: {t}\ndata: x\n\ndata: y\n\n" for t in types).encode()
    events = parser.feed(stream) + parser.feed(b"event: type.0\ndata: z\n\n")
    assert [e.event for e in events] == [name for t in types for name in (t, "message")] + [
        "type.0"
    ]


def test_comments_go_to_on_comment_in_order_and_feed_returns_events() -> None:
    seen: list[object] = []
    parser = SSEParser(on_comment=seen.append)
    events = parser.feed(b": one\ndata: a\n\n:two\ndata: b\n\n")
    assert [e.data for e in events] == ["a", "b"]
    assert seen == [Comment("one"), Comment("two")]
    assert SSEParser().feed(b": one\ndata: a\n\n") == [Comment("one"), ServerSentEvent(data="a")]


def test_server_sent_event_takes_sseclients_positional_order() -> None:
    import sseclient

    theirs = sseclient.Event("7", "task.created", "{}", 1000)
    ours = ServerSentEvent("7", "task.created", "{}", 1000)
    assert isinstance(ours, sseclient.Event)
    assert (ours.id, ours.event, ours.data, ours.retry) == (
        theirs.id,
        theirs.event,
        theirs.data,
        theirs.retry,
    )


def test_close_closes_a_closable_source_and_tolerates_a_list() -> None:
    class Source:
        closed = False

        def __iter__(self) -> Iterator[bytes]:
            yield b"data: a\n\n"

        def close(self) -> None:
            self.closed = True

    source = Source()
    parser = SSEParser(source)
    assert [e.data for e in parser.events()] == ["a"]
    parser.close()
    assert source.closed
    SSEParser([b"data: a\n\n"]).close()
    SSEParser().close()


def test_bom_stripped_once_at_start() -> None:
    assert_parses(b"\xef\xbb\xbfdata: a\n\n", [E("message", "a")])
    # A second BOM is part of the line: the field name is then unknown.
    assert_parses(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n", [E("message", "b")])


def test_bom_like_prefix_that_is_not_a_bom() -> None:
    assert_parses(b"\xef\xbbdata: a\n\ndata: b\n\n", [E("message", "b")])


def test_utf8_split_at_every_byte() -> None:
    text = "héllo wörld ☃ 🎉"
    assert_parses(f"data: {text}\n\n".encode(), [E("message", text)])


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert_parses(b"data: a\xffb\n\n", [E("message", "a\ufffdb")])


def test_event_ending_in_bare_cr_is_delivered_at_once() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r\r") == [E("message", "a")]
    # The LF that may follow is the second half of a CRLF, not a blank line.
    assert parser.feed(b"\ndata: b\r\n\r\n") == [E("message", "b")]


def test_partial_event_discarded_at_eof() -> None:
    parser = SSEParser([b"data: a\n\n", b"id: 9\ndata: cut off"])
    assert list(parser.events()) == [E("message", "a")]
    assert parser.last_event_id is None


def test_reset_discards_half_event_and_its_id() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 1\ndata: a\n\nid: 2\ndata: half") == [E("message", "a", "1")]
    parser.reset()
    assert parser.feed(b"\n\n") == []
    assert parser.last_event_id == "1"
    assert parser.feed(b"data: next\n\n") == [E("message", "next", "1")]


def test_reset_expects_a_new_bom() -> None:
    parser = SSEParser()
    assert parser.feed(b"\xef\xbb\xbfdata: a\n\n") == [E("message", "a")]
    parser.reset()
    assert parser.feed(b"\xef\xbb\xbfdata: b\n\n") == [E("message", "b")]


def test_events_iterates_like_sseclient() -> None:
    chunks = [b"event: x\ndata: 1\n", b"\nid: 5\ndata: 2\n\n"]
    assert [(e.event, e.data, e.id) for e in SSEParser(chunks).events()] == [
        ("x", "1", None),
        ("message", "2", "5"),
    ]


def test_max_event_size_for_data_lines() -> None:
    parser = SSEParser(max_event_size=100)
    assert parser.feed(b"data: " + b"x" * 90 + b"\n\n")
    with pytest.raises(EventTooLargeError) as info:
        parser.feed(b"data: " + b"x" * 60 + b"\ndata: " + b"y" * 60 + b"\n")
    assert info.value.limit == 100
    assert "max_event_size" in str(info.value)


def test_max_event_size_for_one_whole_canonical_event() -> None:
    parser = SSEParser(max_event_size=100)
    assert len(parser.feed(b"id: 1\nevent: e\ndata: " + b"x" * 99 + b"\n\n")) == 1
    with pytest.raises(EventTooLargeError):
        parser.feed(b"id: 2\nevent: e\ndata: " + b"x" * 100 + b"\n\n")


def test_max_event_size_for_an_unfinished_line() -> None:
    parser = SSEParser(max_event_size=1000)
    parser.feed(b"data: ")
    for _ in range(9):
        parser.feed(b"z" * 100)  # 906 bytes so far: within the limit
    with pytest.raises(EventTooLargeError):
        parser.feed(b"z" * 100)


def test_max_event_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_event_size"):
        SSEParser(max_event_size=0)


@pytest.mark.parametrize("lines", [1, 70_000])
def test_a_7mb_event_parses_in_linear_time(lines: int) -> None:
    # Fed in 4 KiB pieces, quadratic buffering (sseclient-py's `data += line`)
    # copies ~6 GB for this event and takes seconds; linear parsing takes a
    # few milliseconds. The bound leaves two orders of magnitude for a slow box.
    line = 7_000_000 // lines - 7
    body = (b"data: " + b"x" * line + b"\n") * lines + b"\n"
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    parser = SSEParser()
    start = time.perf_counter()
    events = [e for c in chunks for e in parser.feed(c)]
    elapsed = time.perf_counter() - start
    assert [len(e.data) for e in events] == [lines * line + lines - 1]
    assert elapsed < 0.75, f"7 MB event took {elapsed:.2f}s"


# --- the specification, transcribed literally, as an oracle ---------------


def reference_parse(data: bytes) -> tuple[list[object], Optional[str]]:
    """WHATWG "Interpreting an event stream", character by character."""
    text = data.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: list[str] = []
    current = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\r":
            lines.append(current)
            current = ""
            if i + 1 < len(text) and text[i + 1] == "\n":
                i += 1
        elif ch == "\n":
            lines.append(current)
            current = ""
        else:
            current += ch
        i += 1
    out: list[object] = []
    data_buf, type_buf, id_buf, last_id = "", "", None, None
    retry = None
    for line in lines:  # the unterminated `current` is never processed
        if line == "":
            last_id = id_buf
            if data_buf == "":
                type_buf = ""
                retry = None
                continue
            out.append(E(type_buf or "message", data_buf[:-1], last_id, retry))
            data_buf, type_buf, retry = "", "", None
        elif line.startswith(":"):
            out.append(Comment(line[2:] if line[1:2] == " " else line[1:]))
        else:
            field, _colon, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "event":
                type_buf = value
            elif field == "data":
                data_buf += value + "\n"
            elif field == "id":
                if "\0" not in value:
                    id_buf = value if value else None
            elif field == "retry" and value and all("0" <= c <= "9" for c in value):
                retry = int(value)
    return out, last_id


FIELDS = [b"data", b"data", b"event", b"id", b"retry", b"foo", b"", b":"]
SEPARATORS = [b"", b":", b": ", b":  "]
VALUES = [b"", b"x", b"7", b"12", b"a\x00b", b"\xc3\xa9", b"\xe2\x98", b"\xef\xbb\xbf", b" y"]
# Whole blocks in the canonical shape (id, event, one data line), which the
# parser takes through its regex fast path, with any value and any line ending.
canonical_st = st.tuples(
    st.sampled_from([b"", b"id: \n", b"id: 7\n", b"id: a\x00b\n", b"id: \xc3\xa9\n"]),
    st.sampled_from([b"", b"event: \n", b"event: x\n", b"event:x\n"]),
    st.sampled_from(VALUES),
    st.sampled_from([b"\n", b"\r", b"\r\n"]),
).map(lambda t: (t[0] + t[1] + b"data: " + t[2] + b"\n\n").replace(b"\n", t[3]))
line_st = st.one_of(
    st.just(b""),
    canonical_st,
    st.tuples(st.sampled_from(FIELDS), st.sampled_from(SEPARATORS), st.sampled_from(VALUES)).map(
        b"".join
    ),
)
stream_st = st.tuples(
    st.sampled_from([b"", b"\xef\xbb\xbf"]),
    st.lists(st.tuples(line_st, st.sampled_from([b"\n", b"\r", b"\r\n"])), max_size=25),
    st.sampled_from([b"", b"data: partial", b"\r"]),
).map(lambda t: t[0] + b"".join(a + b for a, b in t[1]) + t[2])


@settings(max_examples=500, deadline=None)
@given(data=stream_st, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_matches_the_specification_for_any_chunking(data: bytes, cuts: list[int]) -> None:
    assert_matches_the_specification(data, cuts)


def assert_matches_the_specification(data: bytes, cuts: list[int]) -> None:
    """Cut ``data`` at ``cuts`` (modulo its length), parse, compare with the oracle."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    expected, expected_id = reference_parse(data)
    got, parser = parse(chunks)
    assert got == expected
    assert parser.last_event_id == expected_id


# Runs of canonical blocks, the fast path's input, with now and then a block it
# does not take (a comment, a retry, an empty id or type, a NUL in the id, a
# second data line) and an unfinished block at the end.
canonical_run_st = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from([b"7", b"evt_1", b"\xc3\xa9", b"\xe2\x98", b"", b"a\x00b"]),
            st.sampled_from([b"task.updated", b"x", b""]),
            st.sampled_from([b"{}", b"", b"\xef\xbb\xbf", b"a: b", b"x\ndata: y"]),
        ).map(lambda t: b"id: " + t[0] + b"\nevent: " + t[1] + b"\ndata: " + t[2] + b"\n\n"),
        st.sampled_from([b": ping\n\n", b"retry: 5\n\n", b"data: plain\n\n", b"\n"]),
    ),
    max_size=30,
).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(
    data=canonical_run_st,
    tail=st.sampled_from([b"", b"id: 9\nevent: t\nda", b"id: 9\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
)
def test_runs_of_canonical_blocks_match_the_specification(
    data: bytes, tail: bytes, cuts: list[int]
) -> None:
    assert_matches_the_specification(data + tail, cuts)


def test_canonical_blocks_are_parsed_without_the_line_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The property tests pass whichever path runs; this one shows the fast
    # path is taken for whole canonical blocks, also right after the end of
    # a block that began in an earlier chunk.
    parser = SSEParser()
    first = parser.feed(b"id: 1\nevent: a\ndata: {}\n\nid: 2\nevent: a\nda")
    lines_seen: list[bytes] = []
    process = parser._process

    def counting(lines: list[bytes], parsed: list[object]) -> None:
        lines_seen.extend(lines)
        process(lines, parsed)  # type: ignore[arg-type]

    monkeypatch.setattr(parser, "_process", counting)
    second = parser.feed(
        b"ta: 2\n\nid: 3\nevent: b\ndata: [1]\n\nid: 4\nevent: b\ndata: \xc3\xa9\n\n"
    )
    assert first == [E("a", "{}", "1")]
    assert second == [E("a", "2", "2"), E("b", "[1]", "3"), E("b", "\u00e9", "4")]
    assert lines_seen == [b"data: 2", b""]  # only the end of the unfinished block
    assert parser.last_event_id == "4"


def test_after_a_chunk_it_cannot_take_the_fast_path_pauses_then_resumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A heartbeat among the blocks sends that chunk line by line, and the next
    # two (so a stream full of such chunks does not pay for both paths); then
    # canonical chunks take the fast path again.
    parser = SSEParser()
    lines_seen: list[int] = []
    process = parser._process

    def counting(lines: list[bytes], parsed: list[object]) -> None:
        lines_seen[-1] += len(lines)
        process(lines, parsed)  # type: ignore[arg-type]

    monkeypatch.setattr(parser, "_process", counting)
    got: list[object] = []
    chunks = [b"id: 1\nevent: a\ndata: 1\n\n: ping\n\n"]
    chunks += [b"id: %d\nevent: a\ndata: %d\n\n" % (n, n) for n in range(2, 6)]
    for chunk in chunks:
        lines_seen.append(0)
        got.extend(parser.feed(chunk))
    assert got == [E("a", "1", "1"), Comment("ping")] + [
        E("a", str(n), str(n)) for n in range(2, 6)
    ]
    assert lines_seen == [6, 4, 4, 0, 0]


def test_events_before_an_oversized_one_are_still_delivered() -> None:
    parser = SSEParser(max_event_size=100)
    got = parser.feed(b"data: ok\n\ndata: " + b"x" * 200 + b"\n\n")
    assert got == [E("message", "ok")]
    assert isinstance(parser.failure, EventTooLargeError)
    with pytest.raises(EventTooLargeError):
        parser.feed(b"data: later\n\n")


def test_a_retry_of_5000_digits_is_a_long_delay_not_an_error() -> None:
    # Python refuses int() of more than 4300 digits; the field is still a
    # reconnection time (clamped), and leading zeros do not count.
    parser = SSEParser()
    events = parser.feed(b"retry: " + b"9" * 5000 + b"\ndata: a\n\n")
    [event] = events
    assert event.data == "a"
    assert event.retry is not None
    assert event.retry >= 10**15  # over 30,000 years: RetryPolicy caps the wait at max_delay
    assert parser.retry == event.retry
    events = parser.feed(b"retry: " + b"0" * 5000 + b"1500\ndata: b\n\n")
    assert [(e.data, e.retry) for e in events] == [("b", 1500)]
    assert parser.retry == 1500
    assert parser.feed(b"retry: 000\ndata: c\n\n")[0].retry == 0
