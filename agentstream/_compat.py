"""Every access agentstream makes to another library's private internals, in one place.

requests, urllib3, http.client and pydantic offer no public way to do these
few things; each function below says why it is needed and what it touches.
``tests/test_compat.py`` checks each one against the installed versions, and
``make test-compat`` runs the suite on the lowest versions ``pyproject.toml``
allows (urllib3 1.26 included). When a library changes one of these, this
module is the only place to mend.
"""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

import urllib3
import urllib3.connection
import urllib3.exceptions
import urllib3.response
import urllib3.util.connection

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "URLLIB3_READ1",
    "body_reader",
    "model_private",
    "reporting_connection_class",
    "set_model_private",
    "socket_of",
]

URLLIB3_READ1 = hasattr(urllib3.response.HTTPResponse, "read1")
"""urllib3 >= 2.3 has ``HTTPResponse.read1()`` (public); 1.26 and older 2.x do not."""

SocketReport = Callable[[socket.socket], None]


# -- http.client under urllib3 -----------------------------------------------


def body_reader(raw: urllib3.response.HTTPResponse) -> tuple[Any, bool, Any]:
    """``(http_response, chunked, buffered_reader)`` under a urllib3 response.

    The stream reads below urllib3's own ``read`` (which waits for ``amt``
    bytes, holding a small event) and, for a chunked body, below http.client's
    chunk decoding: ``raw._fp`` is the ``http.client.HTTPResponse``, its
    ``chunked`` flag and ``fp`` (the socket's buffered reader) are
    undocumented attributes. ``buffered_reader`` is None once closed.
    """
    # (the types-urllib3 of the oldest pins lacks it: hence the ignore)
    http_response: Any = raw._fp  # type: ignore[attr-defined,unused-ignore]
    return http_response, bool(http_response.chunked), http_response.fp


def socket_of(raw: urllib3.response.HTTPResponse) -> Optional[socket.socket]:
    """The socket a urllib3 response reads from, or None once it is released.

    Needed to shut it down from another thread (``close()`` must wake a
    blocked read). urllib3 2.x has a public ``connection`` property; 1.26 keeps
    it as ``_connection``; failing both, the socket under http.client's reader.
    """
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    sock = getattr(getattr(fp, "raw", None), "_sock", None)  # socket.SocketIO._sock
    return sock if isinstance(sock, socket.socket) else None


# -- urllib3 connections -----------------------------------------------------


def reporting_connection_class(base: Any, report: SocketReport) -> Any:
    """A subclass of the urllib3 connection class ``base`` whose new sockets are
    handed to ``report`` *before* they connect, so that another thread can
    shut one down to abort a connect (a socket in SYN_SENT), a wait for the
    response headers, or a read.

    It overrides urllib3's private ``_new_conn``, with the same steps as
    ``urllib3.util.connection.create_connection`` (which offers no hook) and
    the same exceptions as urllib3's own ``_new_conn``.
    """

    class ReportingConnection(base):  # type: ignore[misc]
        def _new_conn(self) -> socket.socket:
            try:
                sock = _create_connection(
                    (self._dns_host, self.port),
                    self.timeout,
                    self.source_address,
                    self.socket_options,
                    report,
                )
            except socket.gaierror as exc:
                raise _name_resolution_error(self, exc) from exc
            except socket.timeout as exc:
                raise urllib3.exceptions.ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                ) from exc
            except OSError as exc:
                raise urllib3.exceptions.NewConnectionError(
                    self, f"Failed to establish a new connection: {exc}"
                ) from exc
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock

    ReportingConnection.__name__ = f"Reporting{base.__name__}"
    return ReportingConnection


# "No timeout given": urllib3 2.x's sentinel, and 1.26's (the socket module's).
_DEFAULT_TIMEOUTS = tuple(
    sentinel
    for sentinel in (
        getattr(urllib3.util.connection, "_DEFAULT_TIMEOUT", None),
        getattr(socket, "_GLOBAL_DEFAULT_TIMEOUT", None),
    )
    if sentinel is not None
)


def _create_connection(
    address: tuple[str, int],
    timeout: Any,
    source_address: Optional[tuple[str, int]],
    socket_options: Any,
    report: SocketReport,
) -> socket.socket:
    host, port = address
    if host.startswith("["):
        host = host.strip("[]")
    family = urllib3.util.connection.allowed_gai_family()  # type: ignore[attr-defined,unused-ignore]
    error: Optional[OSError] = None
    for af, socktype, proto, _, sockaddr in socket.getaddrinfo(
        host, port, family, socket.SOCK_STREAM
    ):
        sock = socket.socket(af, socktype, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if not any(timeout is default for default in _DEFAULT_TIMEOUTS):
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            report(sock)  # from here on, a shutdown from another thread aborts the connect
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError("getaddrinfo returned an empty list")


def _name_resolution_error(connection: Any, exc: socket.gaierror) -> Exception:
    # urllib3 2.x raises NameResolutionError; 1.26 a NewConnectionError.
    name_resolution_error = getattr(urllib3.exceptions, "NameResolutionError", None)
    if name_resolution_error is not None:
        error: Exception = name_resolution_error(connection.host, connection, exc)
        return error
    return urllib3.exceptions.NewConnectionError(
        connection, f"Failed to establish a new connection: {exc}"
    )


# -- pydantic ----------------------------------------------------------------

# Pydantic's per-instance private storage is the ``__pydantic_private__`` slot
# of BaseModel. agentstream's events set it directly: declaring private
# attributes would make pydantic call an initialiser on every validation,
# which measured at ~2 µs per event (docs/decisions.md).
# pydantic is imported only on first use of this part (by the models): the wire
# layer imports this module and must not import pydantic (tests/test_packaging.py).
if TYPE_CHECKING:
    set_model_private: Callable[[BaseModel, Optional[dict[str, Any]]], None]
    """Store a dict (or None) as a model instance's private storage."""
else:

    def __getattr__(name: str) -> Any:
        if name != "set_model_private":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from pydantic import BaseModel

        value = BaseModel.__dict__["__pydantic_private__"].__set__
        globals()[name] = value
        return value


def model_private(model: BaseModel) -> Optional[dict[str, Any]]:
    """A model instance's private storage: the dict last stored, or None."""
    private: Optional[dict[str, Any]] = getattr(model, "__pydantic_private__", None)
    return private
