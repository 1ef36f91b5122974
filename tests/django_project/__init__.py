"""A real Django project for the integration's tests (run by pytest-django
and as ``manage.py`` subprocesses)."""

from __future__ import annotations

import os

SETTINGS = "tests.django_project.settings"


def setup() -> None:
    """Configure Django with this project (what a test module calls at import,
    so that pytest-django finds settings and the app registry is ready)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    import django

    django.setup()
