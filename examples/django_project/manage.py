#!/usr/bin/env python
"""The example project's manage.py.

python manage.py migrate
python manage.py agentstream_listen      # the consumer, its own process
python manage.py runserver               # the web app: GET /tasks/, and webhooks:
agentstream serve --webhook http://127.0.0.1:8000/agentstream/webhooks/  # prints a secret
AGENTSTREAM_WEBHOOK_SECRETS=whsec_... python manage.py runserver
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
