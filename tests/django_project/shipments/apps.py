from __future__ import annotations

from django.apps import AppConfig


class ShipmentsConfig(AppConfig):
    name = "tests.django_project.shipments"
    label = "shipments"
    default_auto_field = "django.db.models.BigAutoField"
