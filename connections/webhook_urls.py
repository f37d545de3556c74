"""``/webhooks/``: included from ``driftsync.urls``."""

from django.urls import path

from . import webhooks

app_name = "webhooks"

urlpatterns = [
    path("drift/", webhooks.drift_webhook, name="drift"),
    path(
        "mailchimp/<int:connection_id>/<str:secret>/",
        webhooks.mailchimp_webhook,
        name="mailchimp",
    ),
]
