"""The SSE encoder (agentstream/sse/_encode.py): what it writes, SSEParser reads back as given."""

from __future__ import annotations

from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstream.server._events import StoredEvent
from agentstream.sse import Comment, ServerSentEvent, SSEParser
from agentstream.sse._encode import encode_comment, encode_event, encode_retry


def parse(data: bytes) -> list[object]:
    parser = SSEParser()
    return [*parser.feed(data)]


def test_an_event_has_its_id_type_and_data_lines_then_a_blank_line() -> None:
    assert encode_event('{"a":1}', event="task.shipped", id="evt_1") == (
        b'id: evt_1\nevent: task.shipped\ndata: {"a":1}\n\n'
    )
    assert encode_event("x") == b"data: x\n\n"
    assert encode_event("", retry=1500) == b"retry: 1500\ndata: \n\n"


def test_the_servers_frames_are_the_encoders() -> None:
    stored = StoredEvent(7, "evt_7", "message.chunk", "task_1", "org_1", '{"data":"hi"}')
    assert stored.frame == b'id: evt_7\nevent: message.chunk\ndata: {"data":"hi"}\n\n'


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        ("one\ntwo", b"data: one\ndata: two\n"),
        ("one\r\ntwo", b"data: one\ndata: two\n"),
        ("one\rtwo", b"data: one\ndata: two\n"),
        ("end\n", b"data: end\ndata: \n"),
    ],
)
def test_line_breaks_in_data_become_data_lines(data: str, lines: bytes) -> None:
    assert encode_event(data) == lines + b"\n"


@given(
    data=st.text(),
    event=st.one_of(st.none(), st.text(min_size=1).filter(lambda t: not {"\r", "\n"} & set(t))),
    id=st.one_of(st.none(), st.text().filter(lambda t: not {"\r", "\n", "\0"} & set(t))),
)
def test_what_is_written_is_read_back(data: str, event: Optional[str], id: Optional[str]) -> None:
    (parsed,) = parse(encode_event(data, event=event, id=id))
    assert isinstance(parsed, ServerSentEvent)
    expected_data = data.replace("\r\n", "\n").replace("\r", "\n")
    assert parsed.data == expected_data
    assert parsed.event == (event or "message")
    assert parsed.id == (id or None)  # an empty id resets the last event ID


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"id": "a\nb"}, "id"),
        ({"id": "a\0b"}, "id"),
        ({"event": "a\rb"}, "type"),
        ({"retry": -1}, "retry"),
        ({"retry": True}, "retry"),
    ],
)
def test_what_a_reader_could_not_read_back_is_refused(
    kwargs: dict[str, object], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        encode_event("x", **kwargs)  # type: ignore[arg-type]


def test_comments_and_retry_blocks_dispatch_no_event() -> None:
    assert encode_comment("heartbeat") == b": heartbeat\n\n"
    assert encode_comment() == b":\n\n"
    assert encode_comment("a\nb") == b": a\n: b\n\n"
    parser = SSEParser()
    assert parser.feed(encode_retry(250) + encode_comment("hello")) == [Comment("hello")]
    assert parser.retry == 250
    with pytest.raises(ValueError, match="retry"):
        encode_retry(-5)
