"""allauth adapters: staff log in to the admin; nobody signs up from outside.

Social accounts are only ever *connected* by a signed-in staff member to
authorize an app; the tokens land encrypted on an ``Account`` (see
``connections.oauth``), never in allauth's own tables: ``pre_social_login``
stores the Account and ends the flow before allauth would save anything.
"""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter


class NoSignupAccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        return False


class ConnectOnlySocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request, sociallogin) -> bool:
        return False

    def pre_social_login(self, request, sociallogin) -> None:
        from .oauth import finish_connect

        finish_connect(request, sociallogin)
