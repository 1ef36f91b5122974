"""agentstream for Django: add ``"agentstream.contrib.django"`` to ``INSTALLED_APPS``.

::

    AGENTSTREAM = {
        "API_KEY": env("AGENTSTREAM_API_KEY"),
        "CURSOR_STORE": "django",  # cursors and leases in this project's database
    }

Handlers live in each app's ``agentstream_handlers.py``, found when Django
starts (as the admin finds ``admin.py``). The listener runs as its own
process: ``python manage.py agentstream_listen``; ``agentstream_tail``
prints the stream. Signed webhooks come in through
:func:`agentstream.contrib.django.views.webhook` (route it in ``urls.py``,
set ``AGENTSTREAM["WEBHOOK_SECRETS"]``), into the same handlers, each event
once across both paths. ``manage.py check`` reports a missing key or a bad URL.
Every key is in :mod:`agentstream.contrib.django.conf` and ``docs/django.md``.

Importing this package imports nothing from Django's model layer: the
listener, the store and the settings are in their own modules.
"""
