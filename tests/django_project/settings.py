"""Settings of the test project.

The database is ``DJANGO_PROJECT_DB`` (a file per test); pytest-django's
test database is a file too, so that listener threads and the test share it.
The server and key come from ``AGENTSTREAM_BASE_URL`` / ``AGENTSTREAM_API_KEY``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
ROOT_URLCONF = "tests.django_project.urls"
STATIC_URL = "/static/"  # the live server's static files handler needs one

# CSRF on, as in a real project: the webhook view is exempt (its signature is the proof).
MIDDLEWARE = ["django.middleware.csrf.CsrfViewMiddleware"]

INSTALLED_APPS = [
    "agentstream.contrib.django",
    "tests.django_project.shipments",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_PROJECT_DB", str(BASE_DIR / "db.sqlite3")),
        # Views run in a transaction; the webhook view must not (its claims are
        # for other processes to see at once).
        "ATOMIC_REQUESTS": True,
        # A test database need not survive a power cut: without fsyncs a lease
        # operation takes about 1 ms instead of 28 (Django 5.1+ has init_command).
        "OPTIONS": {"init_command": "PRAGMA synchronous=OFF"} if django.VERSION >= (5, 1) else {},
        "TEST": {
            "NAME": str(Path(tempfile.gettempdir()) / f"agentstream-django-test-{os.getpid()}.db")
        },
    }
}

AGENTSTREAM = {
    "LISTENER_NAME": "shipments",
    "HEARTBEAT_SECONDS": 5,
    "REGISTRY": "tests.django_project.shipments.events.registry",
}
