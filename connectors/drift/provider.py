"""The Drift provider for django-allauth: one social account per Drift org."""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.providers.base import ProviderAccount
from allauth.socialaccount.providers.oauth2.provider import OAuth2Provider

from .views import DriftOAuth2Adapter, org_id_from_token_info


class DriftAccount(ProviderAccount):
    def to_str(self) -> str:
        return f"Drift org {self.account.uid}"


class DriftProvider(OAuth2Provider):
    id = "drift"
    name = "Drift"
    account_class = DriftAccount
    oauth2_adapter_class = DriftOAuth2Adapter

    def get_default_scope(self) -> list[str]:
        # scopes are chosen in the Drift app's settings, not in the URL
        return []

    def extract_uid(self, data: dict[str, Any]) -> str:
        return org_id_from_token_info(data)

    def extract_common_fields(self, data: dict[str, Any]) -> dict[str, Any]:
        return {}


provider_classes = [DriftProvider]
