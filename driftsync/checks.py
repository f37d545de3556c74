"""driftsync's own system checks (``manage.py check``; ``--deploy`` for the
ones about production)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register

from connectors.hosts import OVERRIDE_SETTING


@register(Tags.security, deploy=True)
def check_base_url_override(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not getattr(settings, OVERRIDE_SETTING, False):
        return []
    return [
        Warning(
            f"{OVERRIDE_SETTING} is on: staff who may change an account can point it at "
            "any host, and its credentials are sent there.",
            hint="It is for the sandboxes. Turn it off in production; accounts then only "
            "talk to the apps' own hosts.",
            id="driftsync.W001",
        )
    ]
