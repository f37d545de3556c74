from django.apps import AppConfig


class DriftProviderConfig(AppConfig):
    """Makes the Drift allauth provider discoverable (allauth imports
    ``<app>.provider`` of every installed app)."""

    name = "connectors.drift"
    label = "drift_provider"
    verbose_name = "Drift OAuth provider"
