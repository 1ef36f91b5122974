"""ChunkedReader: chunked transfer decoding, whatever the read boundaries."""

from __future__ import annotations

import http.client

import pytest

from agentstream.sse._chunked import ChunkedReader


class Pieces:
    """A buffered reader that returns the given pieces, one per read1."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    def read1(self, size: int = 65536) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


def chunked(*payloads: bytes, ext: bytes = b"", trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in payloads)
    return body + b"0\r\n" + trailer + b"\r\n"


def read_all(pieces: list[bytes]) -> bytes:
    reader = ChunkedReader(Pieces(pieces))
    out = []
    while True:
        data = reader.read1(65536)
        if not data:
            return b"".join(out)
        out.append(data)


PAYLOADS = [b"id: 1\ndata: one\n\n", b"data: t", b"wo\n\n", b"x" * 300]


@pytest.mark.parametrize(
    "encoded",
    [
        chunked(*PAYLOADS),
        chunked(*PAYLOADS, ext=b";name=value"),
        chunked(*PAYLOADS, trailer=b"X-T: 1\r\n"),
    ],
)
def test_payload_survives_every_split(encoded: bytes) -> None:
    payload = b"".join(PAYLOADS)
    assert read_all([encoded]) == payload
    for cut in range(1, len(encoded)):
        assert read_all([encoded[:cut], encoded[cut:]]) == payload, cut
    assert read_all([encoded[i : i + 1] for i in range(len(encoded))]) == payload
    assert read_all([encoded[i : i + 3] for i in range(0, len(encoded), 3)]) == payload


def test_partial_chunk_data_is_returned_at_once() -> None:
    reader = ChunkedReader(Pieces([b"20\r\nid: 1\ndata: half", b" more\n\n...."]))
    assert reader.read1() == b"id: 1\ndata: half"  # not held for the rest of the chunk
    assert reader.read1() == b" more\n\n...."


def test_many_chunks_in_one_read_come_back_together() -> None:
    encoded = chunked(*[b"data: %d\n\n" % n for n in range(100)])
    reader = ChunkedReader(Pieces([encoded]))
    assert reader.read1() == b"".join(b"data: %d\n\n" % n for n in range(100))
    assert reader.read1() == b""


def test_a_body_cut_before_the_last_chunk_is_an_incomplete_read() -> None:
    encoded = chunked(b"data: x\n\n")
    for cut in range(len(encoded) - 5):  # anything short of the terminating chunk
        pieces = [encoded[:cut]] if cut else []
        with pytest.raises(http.client.IncompleteRead):
            read_all(pieces)


@pytest.mark.parametrize(
    "bad", [b"zz\r\ndata\r\n", b"5\r\nhelloXX0\r\n\r\n", b"-5\r\nhello\r\n", b"1" * 5000]
)
def test_malformed_framing_is_an_http_error(bad: bytes) -> None:
    with pytest.raises(http.client.HTTPException):
        read_all([bad, b"more"])
