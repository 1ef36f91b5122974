"""The project's own registry (AGENTSTREAM["REGISTRY"]), so that its handlers
stay out of the default registry the rest of the test suite uses."""

from __future__ import annotations

from agentstream import Registry

registry = Registry()
