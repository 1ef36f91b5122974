"""The transport of an :class:`~agentstream.sse.EventSource`: requests and urllib3 specifics.

What the connection loop (``_source``) needs from HTTP, and nothing else:

* a session whose new sockets are reported before they connect
  (:class:`Transport`), so that ``close()`` and ``restart()`` from another
  thread can abort a connect, a wait for the response headers or a read by
  shutting the socket down, also when the caller passed their own session;
* a ``read1`` for the body (:func:`read1_of`) that returns what has arrived
  instead of waiting for a full buffer;
* bounded reads of error bodies, and one translation of transport errors.

Private internals of urllib3 and http.client are reached through
:mod:`agentstream._compat` only.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import logging
import socket
from collections import OrderedDict
from typing import Any, Callable, Optional

import requests
import requests.adapters
import urllib3
import urllib3.exceptions

from .._bodies import READ_ERRORS, read_body_prefix
from .._compat import URLLIB3_READ1, body_reader, reporting_connection_class, socket_of
from ..errors import ConnectionLostError, ContentTypeError
from ._chunked import ChunkedReader

__all__ = [
    "ERROR_BODY_LIMIT",
    "READ_ERRORS",
    "Transport",
    "connection_lost",
    "read1_of",
    "read_error_body",
    "shutdown",
    "shutdown_socket",
]

logger = logging.getLogger(__name__)


ERROR_BODY_LIMIT = 64 * 1024
"""Most bytes of a non-200 body read (decompressed), for the error message."""

SocketReport = Callable[[socket.socket], None]

# The Session attributes that decide how a request is sent (requests.Session.__attrs__
# less adapters, which are rebuilt).
_SESSION_SETTINGS = (
    "headers",
    "cookies",
    "auth",
    "proxies",
    "hooks",
    "params",
    "verify",
    "cert",
    "stream",
    "trust_env",
    "max_redirects",
)


class Transport:
    """The session of one stream, whose new sockets go to ``report`` before they connect.

    Without ``session`` it is a fresh ``requests.Session``. With a plain
    ``requests.Session`` it is a new session with the same settings (headers,
    cookie jar, auth, proxies, hooks, verify, cert, ...), so that the
    caller's session is used as configured but never changed: each of its
    stock ``HTTPAdapter`` mounts is replaced by a reporting one with the same
    ``max_retries``, and a custom adapter is kept as it is. Sockets of custom
    adapters and of a ``Session`` subclass (used as it is) are not reported:
    their connect and wait for headers end only at the timeouts.
    """

    def __init__(self, session: Optional[requests.Session], report: SocketReport) -> None:
        self._adapters: list[requests.adapters.HTTPAdapter] = []
        if session is not None and type(session) is not requests.Session:
            logger.debug("%s is used as is: close() cannot abort its connects", type(session))
            self.session = session
            return
        own = requests.Session()
        if session is not None:
            for name in _SESSION_SETTINGS:
                setattr(own, name, getattr(session, name))
            mounts = session.adapters.items()
        else:
            mounts = own.adapters.items()
        own.adapters = OrderedDict()
        for prefix, adapter in list(mounts):
            if type(adapter) is requests.adapters.HTTPAdapter:
                reporting = _SocketReportingAdapter(report, max_retries=adapter.max_retries)
                self._adapters.append(reporting)
                own.mount(prefix, reporting)
            else:
                own.mount(prefix, adapter)  # the caller's own adapter: theirs to close
        self.session = own

    def close(self) -> None:
        """Release the connections of the adapters this transport created."""
        for adapter in self._adapters:
            adapter.close()  # type: ignore[no-untyped-call,unused-ignore]


class _SocketReportingAdapter(requests.adapters.HTTPAdapter):
    """An ``HTTPAdapter`` whose new connections hand their socket to ``report``
    before connecting (not through a proxy: requests builds proxy pools apart)."""

    def __init__(self, report: SocketReport, **kwargs: Any) -> None:
        self._report = report
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        # untyped in the types-requests that the oldest pins (urllib3 1.26) allow
        super().init_poolmanager(*args, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
        self.poolmanager.pool_classes_by_scheme = {
            "http": _reporting_pool(urllib3.HTTPConnectionPool, self._report),
            "https": _reporting_pool(urllib3.HTTPSConnectionPool, self._report),
        }


def _reporting_pool(base: Any, report: SocketReport) -> Any:
    class Pool(base):  # type: ignore[misc]
        ConnectionCls = reporting_connection_class(base.ConnectionCls, report)

    return Pool


def read1_of(response: requests.Response) -> Callable[[int], bytes]:
    """The function that reads what has arrived, at most one socket read per call.

    With no Content-Encoding (what the stream asks for) the body is read below
    urllib3: a chunked body through :class:`ChunkedReader` over the socket's
    buffered reader (``http.client`` decodes one chunk per call, with several
    Python calls each), anything else through ``http.client``'s own ``read1``.
    A server that compresses anyway is read through urllib3's ``read1`` with
    decoding on, which needs urllib3 2.3 or later. Measured in
    ``docs/decisions.md``.
    """
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        http_response, chunked, reader = body_reader(response.raw)
        if chunked and reader is not None:
            return ChunkedReader(reader).read1
        read1: Callable[[int], bytes] = http_response.read1
        return read1
    if not URLLIB3_READ1:
        raise ContentTypeError(
            f"the server compressed the stream (Content-Encoding: {encoding}) although "
            "identity was asked for; reading it needs urllib3 2.3 or later",
            status=response.status_code,
            code="bad_content_encoding",
        )
    return functools.partial(response.raw.read1, decode_content=True)


def read_error_body(response: requests.Response) -> bytes:
    """At most :data:`ERROR_BODY_LIMIT` decompressed bytes of the body, read
    with a bound on memory (see :mod:`agentstream._bodies`); the response is
    closed after. A failed read gives what arrived, or ``b""``."""
    try:
        return read_body_prefix(response, ERROR_BODY_LIMIT)
    finally:
        response.close()


def shutdown(response: requests.Response) -> None:
    """Wake a thread blocked reading ``response`` by shutting its socket down."""
    sock = socket_of(response.raw)
    if sock is not None:
        shutdown_socket(sock)


def shutdown_socket(sock: socket.socket) -> None:
    """Shut ``sock`` down, waking a thread blocked on it (a connect in progress too)."""
    with contextlib.suppress(OSError):  # already closed or not connected
        sock.shutdown(socket.SHUT_RDWR)


def connection_lost(exc: BaseException, read_timeout: Optional[float]) -> ConnectionLostError:
    """Translate a mid-stream transport error, in one place."""
    if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, socket.timeout)):
        return ConnectionLostError(f"no data for {read_timeout}s (read timeout)")
    if isinstance(exc, (urllib3.exceptions.ProtocolError, http.client.IncompleteRead)):
        return ConnectionLostError(f"connection broken mid-stream: {exc}")
    return ConnectionLostError(f"connection error: {exc}")
