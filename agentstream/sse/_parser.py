"""Bytes in, :class:`ServerSentEvent` out: the SSE parser.

:class:`SSEParser` subclasses sseclient-py's ``SSEClient`` and keeps its
interface (``SSEParser(byte_chunks).events()``, ``close()``), but replaces
both of its parsing methods, because sseclient-py 1.9 departs from the WHATWG
EventSource rules in ways that lose or corrupt events (each gap is measured
in ``tests/test_sseclient_gaps.py`` and described in ``docs/wire.md``):

* ``_read`` buffers with ``data += line`` (quadratic: a 7 MB event takes
  seconds), drops the first event after a UTF-8 BOM, merges two events whose
  separating blank line mixes ``\\n`` and ``\\r\\n``, and dispatches an event cut
  off by EOF as if it were complete;
* ``events`` forgets the last event ID between events and never updates it
  from an event without data, accepts ids containing NUL and non-numeric
  ``retry`` values, concatenates multi-line data quadratically, raises on
  invalid UTF-8 and hides comments.

The parser here is incremental (:meth:`SSEParser.feed` takes chunks of any
size, split anywhere), linear in the input, and bounds the size of one event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import chain, starmap
from typing import Optional, Union, cast

import sseclient

from ..errors import EventTooLargeError
from ._events import Comment, ServerSentEvent

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "MAX_RETRY_MS", "SSEParser"]

DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024
"""Default bound on one event's size in bytes (16 MiB)."""

_BOM = b"\xef\xbb\xbf"

MAX_RETRY_MS = 10**18 - 1
"""The largest ``retry:`` value kept (ms); longer runs of digits are clamped to it.

Python refuses ``int()`` of more than 4,300 digits, and no wait needs more
than 18; the stream's :class:`RetryPolicy` caps the wait at ``max_delay``."""

Parsed = Union[ServerSentEvent, Comment]

# The block layout of the reference server and most others: one id (no NUL),
# one type, one data line, a blank line. Runs of such blocks are parsed with
# one regex call instead of line by line (see SSEParser._canonical_events).
_CANONICAL_BLOCK = re.compile(r"id: ([^\n\x00]+)\nevent: ([^\n]+)\ndata: ([^\n]*)\n\n")
_CANONICAL_FRAMING = len("id: \nevent: \ndata: \n\n")
# After a chunk the regex path could not take (a comment among the blocks,
# say), the next chunks go straight to the line path: 2, 4, ... up to this
# many after consecutive misses, none once it succeeds again. A stream that
# mixes in other blocks all the time would otherwise pay for both paths
# (2.60 against 1.84 µs per event with a comment every 50 events).
_MAX_FAST_PATH_PAUSE = 64


class SSEParser(sseclient.SSEClient):
    """An incremental, WHATWG-conformant parser for ``text/event-stream`` bytes.

    Push bytes with :meth:`feed` (any chunking, down to one byte at a time)
    and get back the events and comments they complete; call :meth:`reset`
    when a connection ends, so that a half-received event is discarded, id
    included. Or, like sseclient-py, pass an iterable of byte chunks and
    iterate :meth:`events`.

    :param event_source: byte chunks for :meth:`events` (optional).
    :param max_event_size: largest event accepted, in bytes of ``data``
        lines plus the unfinished line; a larger one raises
        :class:`~agentstream.errors.EventTooLargeError`.
    :param last_event_id: the last event ID to start from (ids persist
        across events, as in a browser's ``EventSource``).
    :param on_comment: called with each :class:`Comment` as it is parsed,
        before the events of the same :meth:`feed` call are returned (so out
        of wire order); :meth:`feed` then returns events only. Without it,
        comments come back among the events, in wire order.
    """

    _event_source: Iterable[bytes]  # set by sseclient-py's __init__

    def __init__(
        self,
        event_source: Iterable[bytes] = (),
        *,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        last_event_id: Optional[str] = None,
        on_comment: Optional[Callable[[Comment], object]] = None,
    ) -> None:
        super().__init__(cast("Iterator[bytes]", event_source))  # kept as _event_source
        if max_event_size <= 0:
            raise ValueError("max_event_size must be a positive number of bytes")
        self.max_event_size = max_event_size
        self.last_event_id: Optional[str] = last_event_id
        """The ID of the last dispatched event block (``id:`` persists until changed)."""
        self.retry: Optional[int] = None
        """The last valid ``retry:`` value in milliseconds, or None."""
        self._id_buffer = last_event_id
        self._started = False
        self._head = b""
        self._skip_lf = False
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._data: list[bytes] = []
        self._data_size = 0
        self._event_type = b""
        self._block_retry: Optional[int] = None
        self._types: dict[bytes, str] = {b"": "message"}
        self._block_start = True  # nothing of an unfinished block is buffered
        self._fast_path_pause = 0  # chunks left before the regex path is tried again
        self._fast_path_misses = 0  # consecutive chunks it could not take
        self._on_comment = on_comment
        self.comments: int = 0
        """How many comments :meth:`feed` has returned (without ``on_comment``): a
        caller that sees it unchanged after a call knows the result holds events only."""
        self.failure: Optional[EventTooLargeError] = None
        """The error that ended parsing, once an event was too large."""

    def feed(self, chunk: bytes) -> list[Parsed]:
        """Parse ``chunk`` and return the events and comments it completes, in order.

        Raises :class:`~agentstream.errors.EventTooLargeError` for an event over
        ``max_event_size``; complete events of the same chunk before it are
        returned first, and the error is raised by the next call.
        """
        if self.failure is not None:
            raise self.failure
        if not self._started:
            chunk = self._head + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._head = chunk  # could still be a BOM: wait for more bytes
                return []
            self._head = b""
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._skip_lf and chunk:
            # The previous chunk ended in CR; an LF here completes that CRLF.
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        if not chunk:
            return []
        if b"\r" in chunk:
            self._skip_lf = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        parsed: list[Parsed] = []
        try:
            if not self._block_start:
                # Finish the block under way line by line, up to its blank line.
                if not self._partial and chunk[0] == 0x0A:
                    head_end = 1  # the previous chunk ended a line; this is a blank one
                else:
                    head_end = chunk.find(b"\n\n") + 2
                    if head_end == 1:  # no block ends in this chunk
                        self._feed_lines(chunk, parsed)
                        return parsed
                self._feed_lines(chunk[:head_end], parsed)
                chunk = chunk[head_end:]
            if chunk[:4] == b"id: ":
                if self._fast_path_pause:
                    self._fast_path_pause -= 1
                else:
                    chunk = self._canonical_events(chunk, parsed)
            if chunk:
                self._feed_lines(chunk, parsed)
        except EventTooLargeError as exc:
            # Complete events before the oversized one are still handed out;
            # the error is raised by the next feed() (see `failure`).
            self.failure = exc
            if not parsed:
                raise
        return parsed

    def _feed_lines(self, chunk: bytes, parsed: list[Parsed]) -> None:
        """The general path: split ``chunk`` into lines, the last one possibly
        unfinished, and process them."""
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if lines:
            if self._partial:
                self._partial.append(lines[0])
                lines[0] = b"".join(self._partial)
                self._partial = []
                self._partial_size = 0
            self._process(lines, parsed)
        if tail:
            self._block_start = False
            self._partial.append(tail)
            self._partial_size += len(tail)
            if self._data_size + self._partial_size > self.max_event_size:
                self._fail(self._data_size + self._partial_size)
        else:
            self._block_start = not lines[-1]  # the last line was a blank one

    def close(self) -> None:
        """Close the byte source given at construction, if it can be closed (a
        response can, a list cannot)."""
        close = getattr(self._event_source, "close", None)
        if close is not None:
            close()

    def reset(self) -> None:
        """Forget the unfinished event (its id too): the connection ended.

        The next bytes fed are the start of a new stream (a BOM is stripped
        again). :attr:`last_event_id` and :attr:`retry` are kept.
        """
        self._id_buffer = self.last_event_id
        self._started = False
        self._head = b""
        self._skip_lf = False
        self._partial = []
        self._partial_size = 0
        self._data = []
        self._data_size = 0
        self._event_type = b""
        self._block_retry = None
        self._block_start = True

    def events(self) -> Generator[ServerSentEvent, None, None]:
        """Iterate the events of the byte chunks given at construction.

        An event cut off by the end of the input is discarded.
        """
        try:
            for chunk in self._event_source:
                for item in self.feed(chunk):
                    if isinstance(item, ServerSentEvent):
                        yield item
        finally:
            self.reset()

    def _canonical_events(self, chunk: bytes, parsed: list[Parsed]) -> bytes:
        """The fast path: parse the complete blocks at the start of ``chunk``
        into ``parsed`` at once, if every one of them has the canonical layout,
        and return the rest of ``chunk``; else parse nothing and return it all.

        Called at a block boundary only (nothing of a block buffered), with a
        chunk that starts with ``id: ``. Produces exactly
        what the line-by-line path would: UTF-8 never encodes a newline inside
        a multi-byte sequence, so decoding the blocks together replaces the
        same invalid bytes as decoding field by field.
        """
        end = chunk.rfind(b"\n\n") + 2
        if end < _CANONICAL_FRAMING or end > self.max_event_size:
            return chunk
        text = chunk[:end].decode("utf-8", "replace")
        blocks = _CANONICAL_BLOCK.findall(text)
        # The blocks cover the text exactly when their lengths add up to it
        # (findall skips what does not match).
        if not blocks or (
            _CANONICAL_FRAMING * len(blocks) + sum(map(len, chain.from_iterable(blocks)))
            != len(text)
        ):
            self._fast_path_misses += 1
            self._fast_path_pause = min(1 << self._fast_path_misses, _MAX_FAST_PATH_PAUSE)
            return chunk
        self._fast_path_misses = 0
        parsed.extend(starmap(ServerSentEvent, blocks))
        self.last_event_id = self._id_buffer = blocks[-1][0]
        return chunk[end:]

    def _process(self, lines: list[bytes], parsed: list[Parsed]) -> None:
        # The hot loop. The common field spellings ("data: ", "id: ", "event: ")
        # are tested first, with one startswith and one slice each; anything
        # else takes the general path. Decoding happens once per event.
        data = self._data
        types = self._types
        for line in lines:
            if line[:6] == b"data: ":
                data.append(line[6:])
                self._data_size += len(line) - 5
                if self._data_size > self.max_event_size:
                    self._fail(self._data_size)
            elif not line:
                self.last_event_id = self._id_buffer
                if data:
                    parsed.append(
                        ServerSentEvent(
                            self.last_event_id,
                            types.get(self._event_type) or self._decode_type(self._event_type),
                            (data[0] if len(data) == 1 else b"\n".join(data)).decode(
                                "utf-8", "replace"
                            ),
                            self._block_retry,
                        )
                    )
                    data.clear()
                    self._data_size = 0
                self._event_type = b""
                self._block_retry = None
            elif line[:4] == b"id: " and b"\x00" not in line:
                self._id_buffer = line[4:].decode("utf-8", "replace") or None
            elif line[:7] == b"event: ":
                self._event_type = line[7:]
            else:
                comment = self._field(line)
                if comment is None:
                    pass
                elif self._on_comment is not None:
                    self._on_comment(comment)
                else:
                    parsed.append(comment)
                    self.comments += 1

    def _field(self, line: bytes) -> Optional[Comment]:
        """Any line but the common spellings: the general WHATWG field rules."""
        if line[0] == 0x3A:  # ":" starts a comment
            text = line[2:] if line[1:2] == b" " else line[1:]
            return Comment(text.decode("utf-8", "replace"))
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value)
            self._data_size += len(value) + 1
            if self._data_size > self.max_event_size:
                self._fail(self._data_size)
        elif field == b"event":
            self._event_type = value
        elif field == b"id":
            if b"\x00" not in value:
                self._id_buffer = value.decode("utf-8", "replace") or None
        elif field == b"retry" and value.isdigit():  # bytes: ASCII digits only
            digits = value.lstrip(b"0") or b"0"
            retry = int(digits) if len(digits) < 19 else MAX_RETRY_MS
            self.retry = self._block_retry = retry
        # any other field is ignored
        return None

    def _decode_type(self, raw: bytes) -> str:
        """A type not in ``_types`` yet, decoded and remembered: streams use a
        handful of distinct types, so each is decoded once."""
        if len(self._types) > 256:
            self._types.clear()
            self._types[b""] = "message"
        text = self._types[raw] = raw.decode("utf-8", "replace")
        return text

    def _fail(self, size: int) -> None:
        limit = self.max_event_size
        self.reset()
        raise EventTooLargeError(size, limit)
