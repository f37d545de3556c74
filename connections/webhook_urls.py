"""``/webhooks/``: included from ``driftsync.urls``. One URL per app that
sends webhooks, shaped by its scope (see ``connections.webhooks``); each is
named after the app's key (``webhooks:drift``, ``webhooks:mailchimp``)."""

from django.urls import URLPattern, path

from connectors.webhooks import Scope

from . import webhooks

app_name = "webhooks"


def _pattern(key: str, scope: Scope) -> URLPattern:
    if scope == Scope.ACCOUNT:
        return path(f"{key}/", webhooks.app_webhook, {"key": key}, name=key)
    return path(
        f"{key}/<int:connection_id>/<str:secret>/",
        webhooks.connection_webhook,
        {"key": key},
        name=key,
    )


urlpatterns = [_pattern(key, app.scope) for key, app in webhooks.webhook_apps().items()]
