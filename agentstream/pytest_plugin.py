"""agentstream's pytest plugin: fixtures for testing your own handlers.

pytest loads it by itself wherever agentstream is installed (entry point
``pytest11``, plugin name ``agentstream``; ``-p no:agentstream`` turns it
off). Loading it imports nothing but this module: every fixture imports what
it needs when a test asks for it, so a project that never uses them does not
pay for them (docs/testing.md gives the measured cost).

``agentstream_server``
    a :class:`~agentstream.server.ReferenceServer` on a free port of
    127.0.0.1, its simulated agent running at full speed; stopped after the
    test. Needs the ``server`` extra: without it the test fails saying so.
``agentstream_client``
    a :class:`~agentstream.Client` for it, with
    :data:`~agentstream.testing.FAST_RETRY`.
``agentstream_registry``
    an empty :class:`~agentstream.Registry` to register the handlers under
    test on (so the default registry is left alone).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .client import Client
    from .dispatch import Registry
    from .server import ReferenceServer

__all__ = ["agentstream_client", "agentstream_registry", "agentstream_server"]


@pytest.fixture
def agentstream_server() -> Iterator[ReferenceServer]:
    """A reference server on a free port of 127.0.0.1 (needs ``agentstream[server]``)."""
    with _server_module().ReferenceServer(agent_pace=0.0) as server:
        yield server


def _server_module() -> ModuleType:
    from ._extras import MissingExtraError, import_server

    try:
        return import_server("the agentstream_server fixture")
    except MissingExtraError as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)  # outside the except: no chained traceback in the report


@pytest.fixture
def agentstream_client(agentstream_server: ReferenceServer) -> Iterator[Client]:
    """A client for :func:`agentstream_server`, with :data:`~agentstream.testing.FAST_RETRY`."""
    from .client import Client
    from .testing import FAST_RETRY

    with Client(agentstream_server.url, agentstream_server.api_key, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture
def agentstream_registry() -> Registry:
    """An empty registry for the handlers under test."""
    from .dispatch import Registry

    return Registry()
