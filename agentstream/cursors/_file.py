"""Cursors in a JSON file: one process, crash-safe."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

from ..errors import ConfigurationError, LeaseLostError

__all__ = ["FileCursorStore"]

logger = logging.getLogger("agentstream.cursors")

_FORMAT = 2  # {"format": 2, "cursors": {name: cursor}, "tokens": {name: last token}}


class _Lease(NamedTuple):
    holder: str
    token: int
    expires_at: float  # time.monotonic()


def _lock_exclusively(fd: int) -> bool:
    """Take an exclusive, non-blocking OS lock on ``fd``; False if another holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _fsync_directory(directory: Path) -> None:
    if sys.platform == "win32":  # no directory handles to fsync there
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileCursorStore:
    """Cursors in a small JSON file, for one process that restarts.

    Crash-safe: every write goes to a temporary file in the same directory,
    which is fsynced, renamed over the file with ``os.replace`` and followed by
    an fsync of the directory, so after a power loss the file holds either the
    old or the new cursors. A file that is empty, truncated or not JSON is
    moved aside to ``<path>.corrupt`` with a WARNING and read as "no cursors";
    temporary files left by a crash are removed when the store opens.

    One process only: the constructor takes an exclusive OS lock on
    ``<path>.lock`` (``fcntl.flock``; ``msvcrt.locking`` on Windows) and raises
    :class:`~agentstream.errors.ConfigurationError` if another process holds
    it. Leases (:class:`~agentstream.cursors.LeaseStore`) are kept for the
    listeners of that one process; their fencing tokens are written to the
    file, so they keep growing across restarts.
    """

    def __init__(self, path: Union[str, os.PathLike[str]]) -> None:
        self.path: Path = Path(path)
        self._lock = threading.Lock()
        self._release_os_lock: Optional[weakref.finalize[Any, Any]] = None
        self._take_os_lock()
        self._remove_stray_temporaries()
        self._cursors, self._tokens = self._read()
        self._leases: dict[str, _Lease] = {}

    def __repr__(self) -> str:
        return f"FileCursorStore({str(self.path)!r})"

    # -- the one-process lock ------------------------------------------------

    def _take_os_lock(self) -> None:
        if self._release_os_lock is not None:
            # Inherited across fork(): the lock belongs to the open file the parent
            # shares; a fresh one must be taken, and fails while the parent holds it.
            self._release_os_lock()
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _lock_exclusively(fd):
            os.close(fd)
            self._release_os_lock = None
            raise ConfigurationError(
                f"another process holds {self.path}; use SQLiteCursorStore or "
                "RedisCursorStore for several processes"
            )
        # Closing the descriptor drops the lock: on close(), or when the store is
        # garbage-collected, so a forgotten store does not keep the file locked.
        self._release_os_lock = weakref.finalize(self, os.close, fd)
        self._pid = os.getpid()

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            self._take_os_lock()

    def close(self) -> None:
        """Release the OS lock: another store or process may open the file afterwards."""
        with self._lock:
            if self._release_os_lock is not None:
                self._release_os_lock()

    # -- reading and writing the file ----------------------------------------

    def _temporary_prefix(self) -> str:
        return self.path.name + "."

    def _remove_stray_temporaries(self) -> None:
        directory = self.path.parent
        # "<name>*.tmp" also matches the older temporaries named "<name>XXXX.tmp".
        for stray in directory.glob(self.path.name + "*.tmp"):
            logger.warning("removing %s, left by a save that did not finish", stray)
            stray.unlink(missing_ok=True)

    def _read(self) -> tuple[dict[str, str], dict[str, int]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}, {}
        try:
            data: Any = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
        if not isinstance(data, dict):
            return self._set_aside(len(raw))
        if data.get("format") != _FORMAT:
            # The format before leases: {name: cursor}.
            return {k: v for k, v in data.items() if isinstance(v, str)}, {}
        cursors, tokens = data.get("cursors"), data.get("tokens")
        if not isinstance(cursors, dict) or not isinstance(tokens, dict):
            return self._set_aside(len(raw))
        return (
            {k: v for k, v in cursors.items() if isinstance(v, str)},
            {k: v for k, v in tokens.items() if isinstance(v, int)},
        )

    def _set_aside(self, size: int) -> tuple[dict[str, str], dict[str, int]]:
        corrupt = self.path.with_name(self.path.name + ".corrupt")
        os.replace(self.path, corrupt)
        logger.warning(
            "%s is not a valid cursor file (%d bytes, empty or cut short by a crash): "
            "moved to %s; starting with no saved cursors",
            self.path,
            size,
            corrupt,
        )
        return {}, {}

    def _write(self) -> None:
        body = json.dumps({"format": _FORMAT, "cursors": self._cursors, "tokens": self._tokens})
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=self._temporary_prefix(), suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_directory(self.path.parent)

    # -- CursorStore ---------------------------------------------------------

    def load(self, name: str) -> Optional[str]:
        with self._lock:
            self._check_process()
            return self._cursors.get(name)

    def save(self, name: str, cursor: str) -> None:
        with self._lock:
            self._check_process()
            self._cursors[name] = cursor
            self._write()

    # -- LeaseStore (one process) --------------------------------------------

    def acquire(self, name: str, holder: str, ttl: float) -> Optional[int]:
        with self._lock:
            self._check_process()
            now = time.monotonic()
            lease = self._leases.get(name)
            if lease is not None and lease.expires_at > now:
                if lease.holder != holder:
                    return None
                self._leases[name] = lease._replace(expires_at=now + ttl)
                return lease.token
            token = self._tokens.get(name, 0) + 1
            self._tokens[name] = token
            self._write()  # the token is durable before anyone can use it
            self._leases[name] = _Lease(holder, token, now + ttl)
            return token

    def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        with self._lock:
            lease = self._leases.get(name)
            if lease is None or lease.holder != holder or lease.token != token:
                return False
            self._leases[name] = lease._replace(expires_at=time.monotonic() + ttl)
            return True

    def release(self, name: str, holder: str, token: int) -> None:
        with self._lock:
            lease = self._leases.get(name)
            if lease is not None and lease.holder == holder and lease.token == token:
                del self._leases[name]

    def save_fenced(self, name: str, cursor: str, token: int) -> None:
        with self._lock:
            self._check_process()
            current = self._tokens.get(name)
            if current != token:
                raise LeaseLostError(name, token, current)
            self._cursors[name] = cursor
            self._write()

    def lease_holder(self, name: str) -> Optional[tuple[str, int, float]]:
        with self._lock:
            lease = self._leases.get(name)
            if lease is None:
                return None
            left = lease.expires_at - time.monotonic()
        return (lease.holder, lease.token, left) if left > 0 else None
