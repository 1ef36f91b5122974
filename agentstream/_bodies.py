"""Reading HTTP response bodies with a bound, counted after decompression.

``requests``' ``response.content`` reads a body whole, however large, and
decompresses it whole: a gzip bomb of a few MB or an endless body takes all
the memory there is. Every body agentstream reads goes through here instead.
Bodies are read through urllib3 in blocks of :data:`BLOCK` compressed bytes;
gzip and deflate expand by at most about 1,032 times, so memory stays below
the limit plus ~8 MiB whatever the server sends. Encodings that expand without
such a bound (brotli, zstd) and layered encodings are refused: agentstream
asks for gzip and deflate only (:data:`ACCEPT_ENCODING`).
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Optional

import requests
import urllib3.exceptions

from .errors import ResponseBodyError, ResponseTooLargeError

__all__ = ["ACCEPT_ENCODING", "BLOCK", "READ_ERRORS", "read_body", "read_body_prefix"]

ACCEPT_ENCODING = "gzip, deflate"
"""What agentstream's API calls ask for; the only encodings :func:`read_body` accepts."""

BLOCK = 8 * 1024
"""Compressed bytes read at a time."""

_READABLE_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate"})
READ_ERRORS = (
    OSError,
    http.client.HTTPException,
    urllib3.exceptions.HTTPError,
    ValueError,  # "I/O operation on closed file" once the socket is shut down
)
"""What reading a response can raise when the connection fails (or is shut down)."""


def read_body(response: requests.Response, limit: int) -> bytes:
    """The body of a ``stream=True`` response, decompressed, or raise
    :class:`ResponseTooLargeError` as soon as it is known to exceed ``limit``
    bytes (from its Content-Length, before reading, or while reading), or
    :class:`ResponseBodyError` for an encoding it will not read. Transport
    errors while reading are requests' own (``requests.ConnectionError``)."""
    status = response.status_code
    encoding = _check_encoding(response)
    declared = _content_length(response)
    if encoding is None and declared is not None and declared > limit:
        raise ResponseTooLargeError(
            f"the response body is {declared} bytes (Content-Length), over max_body_size "
            f"of {limit} bytes; raise max_body_size if bodies this large are expected",
            status=status,
            size=declared,
            limit=limit,
        )
    parts: list[bytes] = []
    size = 0
    for block in _blocks(response):
        size += len(block)
        if size > limit:
            raise ResponseTooLargeError(
                f"the response body exceeds max_body_size of {limit} bytes (decompressed; "
                f"stopped after {size}); raise max_body_size if bodies this large are expected",
                status=status,
                size=size,
                limit=limit,
            )
        parts.append(block)
    return b"".join(parts)


def read_body_prefix(response: requests.Response, limit: int) -> bytes:
    """At most the first ``limit`` decompressed bytes of the body, for an error
    message; ``b""`` for an encoding :func:`read_body` refuses or a failed read."""
    parts: list[bytes] = []
    size = 0
    try:
        _check_encoding(response)
        for block in _blocks(response):
            parts.append(block[: limit - size])
            size += len(parts[-1])
            if size >= limit:
                break
    except (ResponseBodyError, requests.RequestException, *READ_ERRORS):
        pass  # what arrived, if anything, is all there is
    return b"".join(parts)


def _blocks(response: requests.Response) -> Iterator[bytes]:
    raw = response.raw
    while True:
        try:
            block = raw.read(BLOCK, decode_content=True)
        except urllib3.exceptions.HTTPError as exc:
            raise requests.ConnectionError(f"reading the response body failed: {exc}") from exc
        if not block:
            return
        yield block


def _check_encoding(response: requests.Response) -> Optional[str]:
    """The one coding the body is in (None: identity), or raise ResponseBodyError."""
    header = response.headers.get("Content-Encoding", "")
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in _READABLE_ENCODINGS:
        return codings[0]
    raise ResponseBodyError(
        f"the response body is in Content-Encoding {header[:100]!r}, which was not asked "
        f"for: only one layer of gzip or deflate is read",
        status=response.status_code,
        code="bad_content_encoding",
    )


def _content_length(response: requests.Response) -> Optional[int]:
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() and len(value) < 20 else None
