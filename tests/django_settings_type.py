"""The type of pytest-django's ``settings`` fixture, under both of its names.

The dev extra's pytest-django exports it as ``pytest_django.Settings``; 4.11.1,
the last release for Python 3.9 (``make test-compat``), has it only as
``pytest_django.fixtures.SettingsWrapper``.
"""

try:
    from pytest_django import Settings as SettingsWrapper
except ImportError:  # pytest-django 4.11
    from pytest_django.fixtures import SettingsWrapper  # type: ignore[attr-defined,no-redef]

__all__ = ["SettingsWrapper"]
