"""Settings of the example project: agentstream's part is INSTALLED_APPS and AGENTSTREAM."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

INSTALLED_APPS = [
    "agentstream.contrib.django",  # settings checks, the commands, DjangoCursorStore
    "tracker",  # its agentstream_handlers.py is found when Django starts
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

# BASE_URL and API_KEY default to the AGENTSTREAM_BASE_URL and
# AGENTSTREAM_API_KEY environment variables (`agentstream serve` prints both).
AGENTSTREAM = {
    "LISTENER_NAME": "tracker",
    "CURSOR_STORE": "django",  # the cursor and the lease live in DATABASES["default"]
    "EVENT_TYPES": ["task.finished"],
    "HEARTBEAT_SECONDS": 15,
    # The webhook view (project/urls.py) verifies deliveries with these secrets
    # (space-separated: the new and the old during a rotation); its claims, and
    # the listener's, are in DATABASES["default"] too ("WEBHOOK_DEDUP": "django").
    "WEBHOOK_SECRETS": os.environ.get("AGENTSTREAM_WEBHOOK_SECRETS", "").split(),
}
