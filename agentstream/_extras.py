"""The optional extras, imported on demand with a clear error when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "import_server"]


class MissingExtraError(ImportError):
    """An optional extra that a feature needs is not installed; the message says what to run."""


def import_server(feature: str) -> ModuleType:
    """Import :mod:`agentstream.server`, or raise :class:`MissingExtraError` naming ``feature``.

    The reference server needs the ``server`` extra (werkzeug, httptools, standardwebhooks).
    """
    try:
        return importlib.import_module("agentstream.server")
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if not missing or missing == "agentstream":
            raise  # a bug of ours, not a missing extra
        raise MissingExtraError(
            f'{feature} needs the reference server: pip install "agentstream[server]" '
            f"(module {missing!r} is not installed)",
            name=missing,
        ) from exc
