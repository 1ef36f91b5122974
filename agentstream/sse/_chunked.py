"""HTTP/1.1 chunked transfer decoding for a streaming body, one block read at a time.

``http.client``'s own ``read1`` returns at most one HTTP chunk per call and
spends several Python calls on each chunk's size line; with one chunk per
event (a common server style) that was most of the cost of reading. This
decoder reads up to 64 KiB from the socket's buffered reader and strips the
framing of every chunk in it with ``bytes.find`` and slicing, so a read
returns the data of all the chunks that have arrived, and nothing is held:
the data of a chunk is returned as soon as it arrives, even partially.
"""

from __future__ import annotations

import http.client
from typing import Protocol

__all__ = ["ChunkedReader"]

_MAX_SIZE_LINE = 4096


class _Reader(Protocol):
    def read1(self, size: int = ..., /) -> bytes: ...


class ChunkedReader:
    """``read1(n)`` over a chunked body: the payload bytes that have arrived.

    Returns ``b""`` after the last (zero-size) chunk. A connection that ends
    before it raises ``http.client.IncompleteRead``; a malformed size line
    raises ``http.client.HTTPException``. Trailers are ignored.
    """

    def __init__(self, fp: _Reader) -> None:
        self._fp = fp
        self._pending = b""  # an incomplete size line or CRLF, kept for the next read
        self._left = 0  # payload bytes still due in the current chunk
        self._crlf = False  # the CRLF after a chunk's payload is due
        self._done = False

    def read1(self, size: int = 65536) -> bytes:
        while not self._done:
            block = self._fp.read1(size)
            if not block:
                raise http.client.IncompleteRead(b"")
            if self._pending:
                block = self._pending + block
                self._pending = b""
            data = self._decode(block)
            if data:
                return data
        return b""

    def _decode(self, block: bytes) -> bytes:
        parts: list[bytes] = []
        pos, end = 0, len(block)
        while pos < end:
            if self._left:
                take = min(self._left, end - pos)
                parts.append(block[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._crlf = True
                continue
            if self._crlf:
                if end - pos < 2:
                    self._pending = block[pos:]
                    break
                if block[pos : pos + 2] != b"\r\n":
                    raise http.client.HTTPException("chunked body: missing CRLF after a chunk")
                self._crlf = False
                pos += 2
                continue
            line_end = block.find(b"\r\n", pos)
            if line_end < 0:
                if end - pos > _MAX_SIZE_LINE:
                    raise http.client.HTTPException("chunked body: chunk size line too long")
                self._pending = block[pos:]
                break
            try:
                chunk_size = int(block[pos:line_end], 16)  # hex digits only: the common case
            except ValueError:
                chunk_size = _size_with_extensions(block[pos:line_end])
            if chunk_size < 0:
                raise http.client.HTTPException("chunked body: negative chunk size")
            pos = line_end + 2
            if chunk_size == 0:
                self._done = True  # trailers, if any, are not read
                break
            data_end = pos + chunk_size
            if block[data_end : data_end + 2] == b"\r\n":
                # The whole chunk is here (the common case): take it at once.
                parts.append(block[pos:data_end])
                pos = data_end + 2
            else:
                self._left = chunk_size
        return b"".join(parts) if len(parts) != 1 else parts[0]


def _size_with_extensions(line: bytes) -> int:
    """The size in a size line that is not bare hex digits (``1a;name=value``)."""
    field = line.split(b";", 1)[0].strip()
    try:
        return int(field, 16)
    except ValueError:
        raise http.client.HTTPException(f"chunked body: bad chunk size {field[:20]!r}") from None
