"""Framework integrations, each an optional extra imported only when used.

- :mod:`agentstream.contrib.flask` (``pip install agentstream[flask]``): the
  ``AgentStream`` extension and the ``flask agentstream`` commands.
- :mod:`agentstream.contrib.django` (``pip install agentstream[django]``): an
  app for ``INSTALLED_APPS``, ``manage.py agentstream_listen`` and
  ``agentstream_tail``, system checks, and ``DjangoCursorStore``.

``import agentstream`` imports neither framework.
"""
