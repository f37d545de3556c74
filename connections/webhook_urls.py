"""``/webhooks/``: included from ``driftsync.urls``. One URL per app that
sends webhooks (``Scope.CONNECTION`` apps also keep their old-style URL),
shaped by its scope (see ``connections.webhooks``); each is
named after the app's key (``webhooks:drift``, ``webhooks:mailchimp``)."""

from django.urls import URLPattern, path

from connectors.webhooks import Scope

from . import webhooks

app_name = "webhooks"


def _patterns(key: str, scope: Scope) -> list[URLPattern]:
    if scope == Scope.ACCOUNT:
        return [path(f"{key}/", webhooks.app_webhook, {"key": key}, name=key)]
    return [
        path(f"{key}/<str:token>/", webhooks.connection_webhook, {"key": key}, name=key),
        # the old shape, for webhooks registered with it (``register_webhooks``
        # replaces them); the same answers, the id must match the token's
        path(
            f"{key}/<int:connection_id>/<str:token>/",
            webhooks.connection_webhook,
            {"key": key},
            name=f"{key}-legacy",
        ),
    ]


urlpatterns = [
    pattern for key, app in webhooks.webhook_apps().items() for pattern in _patterns(key, app.scope)
]
