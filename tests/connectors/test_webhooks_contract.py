"""Every connector says whether its app sends webhooks, and the ones that do
own them in ``connectors/<app>/webhooks.py``."""

from __future__ import annotations

import pytest

from connectors import registry
from connectors.webhooks import Scope, WebhookApp


@pytest.mark.parametrize("key", list(registry.CONNECTORS))
def test_a_connector_declares_its_webhooks_as_its_capabilities_say(key: str) -> None:
    connector = registry.get(key)
    app = connector.webhooks
    if not connector.capabilities.webhooks:
        assert app is None, f"{key} sends no webhooks: Connector.webhooks is None"
        return
    assert isinstance(app, WebhookApp)
    assert (app.key, app.name) == (key, connector.name)
    assert app.__class__.__module__ == "connectors.webhooks"
    assert app.verify.__module__ == app.parse.__module__ == f"connectors.{key}.webhooks"
    if app.scope == Scope.ACCOUNT:
        assert app.secret_setting, "an app-wide URL is checked against a setting"
