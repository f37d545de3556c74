"""Signal receivers, connected when the app is ready."""

from __future__ import annotations

import logging

from allauth.socialaccount.models import SocialToken
from allauth.socialaccount.signals import social_account_added, social_account_updated
from django.dispatch import receiver

from . import (
    schedule_signals,  # noqa: F401  (schedules follow their connection)
    scope_signals,  # noqa: F401  (widened scope → full sync)
)
from .oauth import install_endpoint_overrides

log = logging.getLogger(__name__)

install_endpoint_overrides()


@receiver(social_account_added)
@receiver(social_account_updated)
def drop_allauth_tokens(sender, request, sociallogin, **kwargs) -> None:
    """Belt and braces: the social adapter ends every flow before allauth
    saves a social account. Should one be saved anyway (another adapter, or
    SOCIALACCOUNT_STORE_TOKENS turned on), its tokens do not stay in
    allauth's plaintext table."""
    if sociallogin.account.pk:
        deleted, _ = SocialToken.objects.filter(account=sociallogin.account).delete()
        if deleted:
            log.warning("removed %s token(s) allauth stored for a social account", deleted)
